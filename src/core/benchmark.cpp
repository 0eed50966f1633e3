#include "wico/core/benchmark.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <csignal>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <array>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>

#include "wico/core/error.h"
#include "wico/core/stopwatch.h"

namespace wico {

void register_builtin_benchmarks(Registry<Benchmark>& registry);

Registry<Benchmark>& benchmark_registry() {
  static Registry<Benchmark> registry("benchmark", "wico bench NAME");
  static std::once_flag once;
  std::call_once(once, [] { register_builtin_benchmarks(registry); });
  return registry;
}

double median_seconds(const std::function<void()>& fn, int repeats, int warmup) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> times;
  for (int i = 0; i < std::max(1, repeats); ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(seconds_since(start));
  }
  return median(std::move(times));
}

double median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

double peak_resident_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

nlohmann::json run_against_script(const BenchContext& ctx, const std::filesystem::path& script,
                                  const std::filesystem::path& out_dir, std::int64_t size) {
  const std::string run = fmt::format(
      "import runpy, sys\nsys.argv = [{0}, {1}, {2}, '{3}', '{4}', '{5}', '{6}']\n"
      "runpy.run_path({0}, run_name='__main__')\n",
      nlohmann::json(script.string()).dump(), nlohmann::json(ctx.against).dump(),
      nlohmann::json(out_dir.string()).dump(), ctx.runtime.threads, ctx.repeats, ctx.warmup, size);
  return run_python_reference(ctx.python, run);
}

void profile_if_asked(const std::function<void()>& train_step, const std::function<void()>& forward) {
  const char* profile = std::getenv("WICO_BENCH_PROFILE");
  if (!profile || !*profile) return;
  {
    const torch::autograd::profiler::RecordProfile guard(profile);
    train_step();
  }
  const std::string forward_profile = std::string(profile) + ".forward.json";
  {
    const torch::autograd::profiler::RecordProfile guard(forward_profile);
    const c10::InferenceMode inference;
    forward();
  }
  std::cout << "profile of one training step: " << profile << ", of one forward: "
            << forward_profile << "\n";
}

std::string timing_script(std::string script, int threads, std::int64_t size, int warmup,
                          int repeats) {
  const std::pair<const char*, std::string> values[] = {
      {"THREADS", std::to_string(threads)},
      {"SIZE", std::to_string(size)},
      {"WARMUP", std::to_string(warmup)},
      {"REPEATS", std::to_string(repeats)}};
  for (const auto& [key, value] : values) {
    const std::string k = key;
    for (auto at = script.find(k); at != std::string::npos; at = script.find(k, at + value.size())) {
      script.replace(at, k.size(), value);
    }
  }
  return script;
}

nlohmann::json run_python_reference(const std::string& python, const std::string& script) {
  if (access(python.c_str(), X_OK) != 0) {
    spdlog::warn("reference interpreter '{}' not found: the Python comparison is skipped", python);
    return nullptr;
  }
  const auto file = std::filesystem::temp_directory_path() /
                    ("wico_bench_" + std::to_string(getpid()) + ".py");
  {
    std::ofstream out(file);
    out << script;
  }
  const std::string command = "'" + python + "' '" + file.string() + "' 2>&1";
  std::FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw Error("cannot start '" + python + "'");
  std::string output;
  std::array<char, 4096> buffer{};
  while (std::fgets(buffer.data(), buffer.size(), pipe)) output += buffer.data();
  const int status = pclose(pipe);
  std::filesystem::remove(file);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    spdlog::warn("the Python reference failed (is python3-torch installed?): the comparison is "
                 "skipped. Its output:\n{}", output);
    return nullptr;
  }
  std::istringstream lines(output);
  std::string line, last;
  while (std::getline(lines, line)) {
    if (!line.empty()) last = line;
  }
  try {
    return nlohmann::json::parse(last);
  } catch (const nlohmann::json::exception&) {
    throw Error("the Python reference printed no JSON result; its output:\n" + output);
  }
}

double GemmRates::best() const { return std::max({blas, onednn_linear, onednn_conv1x1}); }

std::string GemmRates::best_name() const {
  if (best() == blas) return "BLAS mm";
  return best() == onednn_linear ? "oneDNN linear" : "oneDNN 1x1 convolution";
}

GemmRates gemm_rates(std::int64_t n) {
  c10::InferenceMode guard;
  const double flop = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  GemmRates rates;
  const auto a = at::randn({n, n}), b = at::randn({n, n});
  auto c = at::empty({n, n});
  rates.blas = flop / median_seconds([&] { at::mm_out(c, a, b); }, 3, 1) / 1e9;
  if (at::hasMKLDNN()) {
    // The operands already in oneDNN's layout, as a model that kept them there would have them.
    const auto x = a.to_mkldnn(), w = b.to_mkldnn();
    rates.onednn_linear = flop / median_seconds([&] { at::mkldnn_linear(x, w, {}); }, 3, 1) / 1e9;
    const auto image = a.t().contiguous().view({1, n, n, 1});
    const auto kernel = b.view({n, n, 1, 1});
    rates.onednn_conv1x1 = flop / median_seconds([&] { at::conv2d(image, kernel); }, 3, 1) / 1e9;
  }
  return rates;
}

double gemm_gflops(std::int64_t n) { return gemm_rates(n).best(); }

ScratchDir::ScratchDir(const std::string& name)
    : path_(std::filesystem::temp_directory_path() /
            ("wico_bench_" + name + "_" + std::to_string(::getpid()))) {}

BusyProcesses::BusyProcesses(int count) {
  for (int i = 0; i < count; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      // Only arithmetic in the child: the parent's threads (OpenMP, loggers) do not exist here.
      volatile std::uint64_t x = 0;
      for (;;) x = x + 1;
    }
    if (pid < 0) throw Error("cannot start a busy process: fork failed");
    pids_.push_back(pid);
  }
}

BusyProcesses::~BusyProcesses() {
  for (const int pid : pids_) ::kill(pid, SIGKILL);
  for (const int pid : pids_) ::waitpid(pid, nullptr, 0);
}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace wico
