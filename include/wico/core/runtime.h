// Process-wide runtime settings, applied once at start-up from the config: thread count,
// device, seed, log level and progress style.
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace wico {

class Config;

struct RuntimeInfo {
  c10::Device device{c10::kCPU};
  int threads = 1;
};

// "cpu", "cuda", "cuda:N" or "auto" (CUDA when LibTorch sees a GPU, else CPU with one log line).
// Throws ConfigError for anything else, and for CUDA when this build or machine has none.
c10::Device resolve_device(const std::string& name);
// Checks the spelling only, for the schema (no device query): "" when acceptable.
std::string check_device_name(const std::string& name);

// The path of the running executable (/proc/self/exe), to start copies of it.
std::string own_executable();

// The number of cores this process may use (affinity aware).
int available_cores();

// Applies runtime.threads (0 = all cores), runtime.device and run.seed to LibTorch, and the log
// level and progress mode. Logs one line describing the result.
RuntimeInfo apply_runtime(const Config& config);

}  // namespace wico
