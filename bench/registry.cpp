// The benchmarks `wico bench` knows: one line per benchmark.
#include "wico/core/benchmark.h"

namespace wico {

nlohmann::json bench_gemm(const BenchContext& ctx);
nlohmann::json bench_conv(const BenchContext& ctx);
nlohmann::json bench_data(const BenchContext& ctx);
nlohmann::json bench_train(const BenchContext& ctx);
nlohmann::json bench_eval(const BenchContext& ctx);
nlohmann::json bench_swin(const BenchContext& ctx);
nlohmann::json bench_lavt(const BenchContext& ctx);
nlohmann::json bench_cris(const BenchContext& ctx);
nlohmann::json bench_vlt(const BenchContext& ctx);
nlohmann::json bench_wico(const BenchContext& ctx);
nlohmann::json bench_resnet(const BenchContext& ctx);
nlohmann::json bench_topdown(const BenchContext& ctx);
nlohmann::json bench_weights(const BenchContext& ctx);

void register_builtin_benchmarks(Registry<Benchmark>& registry) {
  registry.add("gemm", bench_gemm, "float32 GEMM rate (the machine's peak) vs python3-torch");
  registry.add("conv", bench_conv,
               "3x3 convolutions at paper-size shapes: LibTorch's direct kernel vs oneDNN's "
               "Winograd (runtime.conv_algorithm), forward and forward + backward");
  registry.add("data", bench_data,
               "loader throughput (480x480 from JPEG) vs a tiny training step's sample rate");
  registry.add("train", bench_train,
               "tiny LAVT training throughput: 1 process vs 2 processes over c10d, all-reduce share");
  registry.add("eval", bench_eval,
               "scoring predictions at COCO sizes (RLE) vs decoding to pixels and vs NumPy");
  registry.add("swin", bench_swin,
               "Swin-B/12 forward at 480x480 vs python3-torchvision's, and vs the GEMM rate");
  registry.add("lavt", bench_lavt,
               "paper-size LAVT forward at 480x480: time, peak memory, FLOP rate vs the GEMM rate");
  registry.add("cris", bench_cris,
               "paper-size CRIS R50 forward at 416x416: time, peak memory, FLOP rate vs the GEMM "
               "rate");
  registry.add("vlt", bench_vlt,
               "paper-size VLT forward at 416x416 vs the GEMM rate; its Darknet-53 vs the same "
               "network in python3-torch");
  registry.add("wico", bench_wico,
               "paper-size WiCo (LAVT + Mask2Former/MAttNet): CFI + GSI's cost vs the two branches");
  registry.add("resnet", bench_resnet,
               "ResNet-50 trunk forward at 480x480 vs python3-torchvision's, and vs the GEMM rate");
  registry.add("topdown", bench_topdown,
               "paper-size top-down branch (Mask2Former R50 + MAttNet) at 480x480: time, peak "
               "memory, FLOP rate vs the GEMM rate");
  registry.add("weights", bench_weights,
               "loading Swin-B + BERT-base from torch zip, legacy and safetensors files: seconds "
               "and peak memory vs the weights' size and vs python3-torch's torch.load");
}

}  // namespace wico
