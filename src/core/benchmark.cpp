#include "wico/core/benchmark.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
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

double gemm_gflops(std::int64_t n) {
  c10::InferenceMode guard;
  const auto a = at::randn({n, n}), b = at::randn({n, n});
  auto c = at::empty({n, n});
  const double s = median_seconds([&] { at::mm_out(c, a, b); }, 3, 1);
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / s / 1e9;
}

ScratchDir::ScratchDir(const std::string& name)
    : path_(std::filesystem::temp_directory_path() /
            ("wico_bench_" + name + "_" + std::to_string(::getpid()))) {}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace wico
