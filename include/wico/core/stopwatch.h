// Wall-clock seconds since a steady_clock time point: the one timing helper of the trainer, the
// evaluator, the models' per-branch seconds and the benchmarks.
#pragma once
#include <chrono>

namespace wico {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace wico
