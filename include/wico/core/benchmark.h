// Benchmarks run by `wico bench NAME`: each measures our code and, in the same run, a reference
// (Debian's python3-torch, or the machine's GEMM rate) and reports ratios, never bare times.
#pragma once

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "wico/core/config.h"
#include "wico/core/registry.h"
#include "wico/core/runtime.h"

namespace wico {

struct BenchContext {
  const Config& config;
  RuntimeInfo runtime;
  int repeats = 5;              // timed runs; the median is reported
  int warmup = 1;               // untimed runs before them
  std::string python = "/usr/bin/python3";  // interpreter with Debian's python3-torch
  bool quick = false;           // smaller problem sizes, for smoke runs
  std::string against;          // an original's checkout to compare with (lavt: LAVT-RIS; cris: CRIS.pytorch)
  bool under_load = false;      // also measure next to processes that keep every core busy
};

// Returns the measured figures as JSON (also printed as a table by the benchmark itself).
using Benchmark = std::function<nlohmann::json(const BenchContext&)>;

Registry<Benchmark>& benchmark_registry();

// Median of `repeats` timings (seconds) of `fn`, after `warmup` untimed calls.
double median_seconds(const std::function<void()>& fn, int repeats, int warmup);
// The upper middle value of `values` (0 when empty).
double median(std::vector<double> values);
// This process's peak resident memory so far, in MB.
double peak_resident_mb();

// A scratch folder for a benchmark's data (<temp>/wico_bench_<name>_<pid>), removed when the
// object goes away, however the benchmark ends.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// `count` child processes that each keep one core busy until the object goes away (the
// competing load of `wico bench train --under-load` and of the core-sharing tests).
class BusyProcesses {
 public:
  explicit BusyProcesses(int count);
  ~BusyProcesses();
  BusyProcesses(const BusyProcesses&) = delete;
  BusyProcesses& operator=(const BusyProcesses&) = delete;

 private:
  std::vector<int> pids_;
};

// float32 GEMM rates (GFLOP/s) of an n x n product at the current thread count through each
// backend inside LibTorch: the BLAS (`mm`), oneDNN's linear and oneDNN's 1x1 convolution
// (0 where oneDNN is absent). Which is fastest depends on the machine (an AVX-512 Xeon: oneDNN
// 4.7x OpenBLAS; an AMD EPYC: about equal).
struct GemmRates {
  double blas = 0, onednn_linear = 0, onednn_conv1x1 = 0;
  double best() const;
  std::string best_name() const;
};
GemmRates gemm_rates(std::int64_t n = 2048);
// The best of gemm_rates: the peak a model's rate is compared with, measured in the same run.
double gemm_gflops(std::int64_t n = 2048);

// `wico bench NAME --against CHECKOUT`: runs `script` (an original's side, bench/<name>_against.py)
// as `script CHECKOUT OUT_DIR THREADS REPEATS WARMUP SIZE` with ctx's interpreter, threads and
// repeats; its JSON line, or null JSON when Python or its torch is missing.
nlohmann::json run_against_script(const BenchContext& ctx, const std::filesystem::path& script,
                                  const std::filesystem::path& out_dir, std::int64_t size);

// WICO_BENCH_PROFILE=FILE: one more `train_step` under LibTorch's profiler written to FILE and one
// more `forward` (run in InferenceMode; the caller sets eval mode) to FILE.forward.json, Chrome
// traces for the "where the time goes" figures (scripts/profile_summary.py); nothing when unset.
void profile_if_asked(const std::function<void()>& train_step, const std::function<void()>& forward);

// Runs `script` with `python` and parses its last stdout line as JSON. Returns null JSON (and
// logs why) when the interpreter or its torch is missing, so a comparison is skipped, not faked.
nlohmann::json run_python_reference(const std::string& python, const std::string& script);

// A timing script's template with THREADS, SIZE, WARMUP and REPEATS (every occurrence) replaced
// by the run's values, as `wico bench resnet` and `vlt` send them to run_python_reference.
std::string timing_script(std::string script, int threads, std::int64_t size, int warmup,
                          int repeats);

}  // namespace wico
