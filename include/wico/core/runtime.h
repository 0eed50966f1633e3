// Process-wide runtime settings, applied once at start-up from the config: thread count,
// device, seed, log level and progress style.
#pragma once

#include <c10/core/Device.h>

#include <cstddef>
#include <string>

namespace wico {

class Config;

struct RuntimeInfo {
  c10::Device device{c10::kCPU};
  int threads = 1;
  std::size_t cpu_cache_bytes = 0;  // runtime.cpu_cache_mb resolved (wico/core/cpu_allocator.h)
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

// The machine's physical memory (0 when the system does not say).
std::size_t physical_memory_bytes();

// Which kernel computes 3x3 stride-1 float convolutions on the CPU (runtime.conv_algorithm;
// wico/nn/winograd_conv.h computes them):
//   kAuto:           where the output has at least 24x24 pixels, oneDNN's Winograd where this
//                    CPU has it (AVX-512), else ours where both channel counts are at least 128;
//                    else LibTorch's direct kernel (smaller maps and narrow layers do not pay for
//                    the tile transforms; wico/nn/winograd_conv.cpp has the measurements).
//   kDirect:         always LibTorch's own convolution (what the Python originals run).
//   kWinograd:       our Winograd F(4x4, 3x3) (tile transforms + BLAS products), any size.
//   kOneDnnWinograd: oneDNN's Winograd wherever it accepts the shape, else the direct kernel.
enum class ConvAlgorithm { kAuto, kDirect, kWinograd, kOneDnnWinograd };
ConvAlgorithm parse_conv_algorithm(const std::string& name);  // throws ConfigError
std::string conv_algorithm_name(ConvAlgorithm algorithm);
void set_conv_algorithm(ConvAlgorithm algorithm);  // process-wide
ConvAlgorithm conv_algorithm();

// Which library multiplies the inference-time Linear layers on the CPU (runtime.linear_backend;
// wico/nn/linear.h computes them; training always runs LibTorch's at::linear):
//   kAuto:   oneDNN's matmul where this CPU has AVX-512 and the build has oneDNN, else the BLAS
//            (measured: oneDNN 1.03-1.9x OpenBLAS on AVX-512, about equal on AVX2 machines).
//   kBlas:   LibTorch's at::linear (OpenBLAS), what the Python originals run.
//   kOneDnn: oneDNN's matmul wherever the build has it.
enum class LinearBackend { kAuto, kBlas, kOneDnn };
LinearBackend parse_linear_backend(const std::string& name);  // throws ConfigError
std::string linear_backend_name(LinearBackend backend);
void set_linear_backend(LinearBackend backend);  // process-wide
LinearBackend linear_backend();

// Applies runtime.threads (0 = all cores), runtime.device and run.seed to LibTorch, the log
// level and progress mode, runtime.conv_algorithm, runtime.linear_backend and runtime.cpu_cache_mb. Logs one line describing the result.
RuntimeInfo apply_runtime(const Config& config);

}  // namespace wico
