#include "wico/core/runtime.h"

#include <climits>

#include <unistd.h>

#include <ATen/Parallel.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <atomic>
#include <regex>
#include <thread>

#include "wico/core/config.h"
#include "wico/core/core_share.h"
#include "wico/core/cpu_allocator.h"
#include "wico/core/error.h"
#include "wico/core/logging.h"
#include "wico/core/progress.h"
#include "wico/core/stopwatch.h"

namespace wico {

std::string check_device_name(const std::string& name) {
  static const std::regex pattern("auto|cpu|cuda(:[0-9]+)?");
  return std::regex_match(name, pattern) ? "" : "auto, cpu, cuda or cuda:N";
}

c10::Device resolve_device(const std::string& name) {
  const std::string problem = check_device_name(name);
  if (!problem.empty()) {
    throw ConfigError("runtime.device '" + name + "' is not one of " + problem);
  }
  if (name == "cpu") return c10::Device(c10::kCPU);
  const bool cuda = torch::cuda::is_available();
  if (name == "auto") {
    if (cuda) return c10::Device(c10::kCUDA, 0);
    spdlog::info("runtime.device auto: no CUDA device visible to this LibTorch build, using CPU");
    return c10::Device(c10::kCPU);
  }
  if (!cuda) {
    throw ConfigError("runtime.device '" + name +
                      "': this LibTorch build or machine has no CUDA device (build against a "
                      "CUDA LibTorch with -DTorch_DIR=..., see README)");
  }
  c10::Device device(name);
  const auto count = static_cast<int>(torch::cuda::device_count());
  if (device.has_index() && device.index() >= count) {
    throw ConfigError("runtime.device '" + name + "': only " + std::to_string(count) +
                      " CUDA device(s) visible");
  }
  if (!device.has_index()) device.set_index(0);
  return device;
}

std::string own_executable() {
  char buffer[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  if (n <= 0) throw Error("cannot find this executable (/proc/self/exe)");
  return std::string(buffer, static_cast<std::size_t>(n));
}

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

namespace {
std::atomic<ConvAlgorithm> g_conv_algorithm{ConvAlgorithm::kAuto};
}  // namespace

ConvAlgorithm parse_conv_algorithm(const std::string& name) {
  if (name == "auto") return ConvAlgorithm::kAuto;
  if (name == "direct") return ConvAlgorithm::kDirect;
  if (name == "winograd") return ConvAlgorithm::kWinograd;
  if (name == "onednn_winograd") return ConvAlgorithm::kOneDnnWinograd;
  throw ConfigError(
      "runtime.conv_algorithm: expected auto, direct, winograd or onednn_winograd, got '" + name +
      "'");
}

std::string conv_algorithm_name(ConvAlgorithm algorithm) {
  switch (algorithm) {
    case ConvAlgorithm::kDirect: return "direct";
    case ConvAlgorithm::kWinograd: return "winograd";
    case ConvAlgorithm::kOneDnnWinograd: return "onednn_winograd";
    case ConvAlgorithm::kAuto: break;
  }
  return "auto";
}

void set_conv_algorithm(ConvAlgorithm algorithm) { g_conv_algorithm = algorithm; }
ConvAlgorithm conv_algorithm() { return g_conv_algorithm; }

namespace {
std::atomic<LinearBackend> g_linear_backend{LinearBackend::kAuto};
}  // namespace

LinearBackend parse_linear_backend(const std::string& name) {
  if (name == "auto") return LinearBackend::kAuto;
  if (name == "blas") return LinearBackend::kBlas;
  if (name == "onednn") return LinearBackend::kOneDnn;
  throw ConfigError("runtime.linear_backend: expected auto, blas or onednn, got '" + name + "'");
}

std::string linear_backend_name(LinearBackend backend) {
  switch (backend) {
    case LinearBackend::kBlas: return "blas";
    case LinearBackend::kOneDnn: return "onednn";
    case LinearBackend::kAuto: break;
  }
  return "auto";
}

void set_linear_backend(LinearBackend backend) { g_linear_backend = backend; }
LinearBackend linear_backend() { return g_linear_backend; }

std::size_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page)
                               : 0;
}

RuntimeInfo apply_runtime(const Config& config) {
  init_logging(config.text("log.level"));
  set_default_progress_mode(parse_progress_mode(config.text("log.progress")));
  RuntimeInfo info;
  const auto requested = config.integer("runtime.threads");
  info.threads = requested > 0 ? static_cast<int>(requested) : available_cores();
  // LibTorch's intra-op pool and OpenMP (which OpenBLAS and oneDNN use) default to one thread on
  // some machines; set the count explicitly.
  at::set_num_threads(info.threads);
  configure_core_share(info.threads, config.flag("runtime.share_cores"));
  info.device = resolve_device(config.text("runtime.device"));
  set_conv_algorithm(parse_conv_algorithm(config.text("runtime.conv_algorithm")));
  set_linear_backend(parse_linear_backend(config.text("runtime.linear_backend")));
  const std::int64_t cache_mb = config.integer("runtime.cpu_cache_mb");
  info.cpu_cache_bytes = cache_mb >= 0 ? static_cast<std::size_t>(cache_mb) << 20
                                       : physical_memory_bytes() / 4;
  set_cpu_tensor_cache(info.cpu_cache_bytes);
  torch::manual_seed(static_cast<std::uint64_t>(config.integer("run.seed")));
  spdlog::info("runtime: device {}, {} thread(s), seed {}, 3x3 convolutions {}, inference "
               "Linear layers {}, CPU tensor cache {} MB",
               info.device.str(), info.threads, config.integer("run.seed"),
               conv_algorithm_name(conv_algorithm()),
               linear_backend_name(linear_backend()), info.cpu_cache_bytes >> 20);
  return info;
}

}  // namespace wico

namespace wico {

void synchronize_device(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace wico
