// The benchmarks `wico bench` knows: one line per benchmark.
#include "wico/core/benchmark.h"

namespace wico {

nlohmann::json bench_gemm(const BenchContext& ctx);
nlohmann::json bench_data(const BenchContext& ctx);
nlohmann::json bench_swin(const BenchContext& ctx);

void register_builtin_benchmarks(Registry<Benchmark>& registry) {
  registry.add("gemm", bench_gemm, "float32 GEMM rate (the machine's peak) vs python3-torch");
  registry.add("data", bench_data,
               "loader throughput (480x480 from JPEG) vs a tiny training step's sample rate");
  registry.add("swin", bench_swin,
               "Swin-B/12 forward at 480x480 vs python3-torchvision's, and vs the GEMM rate");
}

}  // namespace wico
