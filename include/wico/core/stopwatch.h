// Wall-clock seconds since a steady_clock time point: the one timing helper of the trainer, the
// evaluator, the models' per-branch seconds and the benchmarks.
#pragma once
#include <c10/core/Device.h>

#include <chrono>

namespace wico {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Waits for the device's queued work so that a clock read after it counts that work (CUDA runs
// asynchronously); nothing to wait for on the CPU.
void synchronize_device(const c10::Device& device);

}  // namespace wico
