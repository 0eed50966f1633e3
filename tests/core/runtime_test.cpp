#include "wico/core/runtime.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/core/logging.h"

namespace wico {
namespace {

TEST(Runtime, DeviceNamesAreChecked) {
  EXPECT_EQ(check_device_name("cpu"), "");
  EXPECT_EQ(check_device_name("cuda:3"), "");
  EXPECT_NE(check_device_name("gpu"), "");
  EXPECT_NE(check_device_name("cuda:"), "");
  EXPECT_THROW(resolve_device("tpu"), ConfigError);
}

TEST(Runtime, AutoFallsBackToCpuWithoutCuda) {
  const c10::Device device = resolve_device("auto");
  if (torch::cuda::is_available()) {
    EXPECT_TRUE(device.is_cuda());
  } else {
    EXPECT_TRUE(device.is_cpu());
    EXPECT_THROW(resolve_device("cuda:0"), ConfigError);
  }
  EXPECT_TRUE(resolve_device("cpu").is_cpu());
}

TEST(Runtime, ThreadCountIsAppliedExplicitly) {
  const int before = at::get_num_threads();
  const RuntimeInfo info = apply_runtime(Config::defaults({"runtime.threads=1", "log.level=warn"}));
  EXPECT_EQ(info.threads, 1);
  EXPECT_EQ(at::get_num_threads(), 1);
  const RuntimeInfo all = apply_runtime(Config::defaults({"log.level=warn"}));
  EXPECT_EQ(all.threads, available_cores());
  EXPECT_EQ(at::get_num_threads(), available_cores());
  at::set_num_threads(before);
}

}  // namespace
}  // namespace wico
