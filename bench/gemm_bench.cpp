// `wico bench gemm`: the float32 GEMM rate of this machine through our LibTorch, at one thread
// and at the configured thread count, beside Debian's python3-torch on the same sizes in the same
// run, and the same product through oneDNN (linear, 1x1 convolution). Later benchmarks use the
// best of them as the machine's peak for FLOP utilisation.
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <iostream>

#include "wico/core/benchmark.h"

namespace wico {

namespace {

double gemm_gflops(std::int64_t n, int threads, const BenchContext& ctx) {
  at::set_num_threads(threads);
  torch::NoGradGuard no_grad;
  const auto a = torch::randn({n, n});
  const auto b = torch::randn({n, n});
  auto c = torch::empty({n, n});
  const double seconds =
      median_seconds([&] { torch::mm_out(c, a, b); }, ctx.repeats, std::max(1, ctx.warmup));
  return 2.0 * static_cast<double>(n) * n * n / seconds / 1e9;
}

const char* kPythonGemm = R"PY(
import json, sys, time, torch
sizes, threads, repeats = SIZES, THREADS, REPEATS
out = {}
with torch.inference_mode():
    for n in sizes:
        for t in threads:
            torch.set_num_threads(t)
            a, b = torch.randn(n, n), torch.randn(n, n)
            c = torch.empty(n, n)
            torch.mm(a, b, out=c)
            times = []
            for _ in range(repeats):
                s = time.perf_counter(); torch.mm(a, b, out=c); times.append(time.perf_counter() - s)
            times.sort()
            out[f"{n}x{t}"] = 2.0 * n ** 3 / times[len(times) // 2] / 1e9
print(json.dumps({"torch": torch.__version__, "gflops": out}))
)PY";

}  // namespace

nlohmann::json bench_gemm(const BenchContext& ctx) {
  const std::vector<std::int64_t> sizes =
      ctx.quick ? std::vector<std::int64_t>{512} : std::vector<std::int64_t>{1024, 2048};
  std::vector<int> threads{1};
  if (ctx.runtime.threads > 1) threads.push_back(ctx.runtime.threads);

  auto list = [](const auto& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  };
  std::string script = kPythonGemm;
  auto replace = [&](const std::string& key, const std::string& value) {
    script.replace(script.find(key), key.size(), value);
  };
  replace("SIZES", list(sizes));
  replace("THREADS", list(threads));
  replace("REPEATS", std::to_string(ctx.repeats));
  const auto reference = run_python_reference(ctx.python, script);

  nlohmann::json result = {{"benchmark", "gemm"}, {"dtype", "float32"}, {"rows", nlohmann::json::array()}};
  std::cout << fmt::format("{:>6} {:>8} {:>16} {:>18} {:>8} {:>16} {:>16}\n", "n", "threads",
                           "wico GFLOP/s", "python GFLOP/s", "ratio", "oneDNN linear",
                           "oneDNN conv1x1");
  for (auto n : sizes) {
    for (int t : threads) {
      const double ours = gemm_gflops(n, t, ctx);
      double theirs = 0.0;
      const std::string key = std::to_string(n) + "x" + std::to_string(t);
      if (!reference.is_null()) theirs = reference["gflops"].value(key, 0.0);
      at::set_num_threads(t);
      const GemmRates onednn = gemm_rates(n);
      std::cout << fmt::format("{:>6} {:>8} {:>16.1f} {:>18} {:>8} {:>16.1f} {:>16.1f}\n", n, t,
                               ours, theirs > 0 ? fmt::format("{:.1f}", theirs) : "-",
                               theirs > 0 ? fmt::format("{:.2f}x", ours / theirs) : "-",
                               onednn.onednn_linear, onednn.onednn_conv1x1);
      result["rows"].push_back({{"n", n}, {"threads", t}, {"wico_gflops", ours},
                                {"python_gflops", theirs > 0 ? nlohmann::json(theirs) : nullptr},
                                {"onednn_linear_gflops", onednn.onednn_linear},
                                {"onednn_conv1x1_gflops", onednn.onednn_conv1x1}});
    }
  }
  at::set_num_threads(ctx.runtime.threads);
  const GemmRates peak = gemm_rates(2048);
  std::cout << fmt::format("peak at {} threads: {:.1f} GFLOP/s through {} (what the model "
                           "benchmarks' utilisation is measured against)\n",
                           ctx.runtime.threads, peak.best(), peak.best_name());
  result["peak_gflops"] = peak.best();
  result["peak_backend"] = peak.best_name();
  if (!reference.is_null()) result["python_torch"] = reference["torch"];
  return result;
}

}  // namespace wico
