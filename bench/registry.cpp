// The benchmarks `wico bench` knows: one line per benchmark.
#include "wico/core/benchmark.h"

namespace wico {

nlohmann::json bench_gemm(const BenchContext& ctx);

void register_builtin_benchmarks(Registry<Benchmark>& registry) {
  registry.add("gemm", bench_gemm, "float32 GEMM rate (the machine's peak) vs python3-torch");
}

}  // namespace wico
