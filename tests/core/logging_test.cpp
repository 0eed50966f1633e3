#include "wico/core/logging.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "test_util.h"
#include "wico/core/error.h"

namespace wico {
namespace {

TEST(Logging, LinesReachTheRunLogFileAtTheConfiguredLevel) {
  test::TempDir dir;
  init_logging("info");
  add_log_file(dir.path() / "log.txt");
  spdlog::info("step {} loss {:.3f}", 7, 0.25);
  spdlog::debug("not at info level");
  spdlog::default_logger()->flush();
  const std::string text = test::read_file(dir.path() / "log.txt");
  EXPECT_THAT(text, ::testing::HasSubstr("[info] step 7 loss 0.250"));
  EXPECT_THAT(text, ::testing::Not(::testing::HasSubstr("not at info level")));
  init_logging("warn");  // back to the test binary's level, without the file
  EXPECT_THROW(init_logging("loud"), ConfigError);
}

}  // namespace
}  // namespace wico
