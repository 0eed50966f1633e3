// `wico bench vlt`: the paper-size VLT forward (Darknet-53 + 6 head CBLs, GloVe-width Bi-GRU, fusion,
// neck, QGM, 2 + 2 transformer, QBM, mask head to 208 x 208) at 416 x 416, batch 1, 15 words,
// inference mode: median time and the FLOP rate of its convolutions and matrix products against
// the GEMM rate measured in the same run; as built (NCHW), in channels-last, and channels-last
// with every CBL's batch norm folded into its convolution. Beside it the same Darknet-53 (+ head)
// written in Debian's python3-torch (nn.Conv2d / BatchNorm2d eps 1e-3 / LeakyReLU 0.1 /
// ZeroPad2d((1, 0, 1, 0)), NCHW and channels-last) against ours, same run, same threads.
// --quick: 224 x 224 for the Darknet comparison (the full network takes 416 only).
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <iostream>

#include "wico/bottomup/vlt/vlt.h"
#include "wico/core/benchmark.h"

namespace wico {

namespace {

const char* kPythonDarknet = R"PY(
import json, time, torch
from torch import nn
torch.set_num_threads(THREADS)
torch.manual_seed(0)
def cbl(i, o, k, s):
    layers = [nn.ZeroPad2d((1, 0, 1, 0))] if s == 2 else []
    layers += [nn.Conv2d(i, o, k, s, (k - 1) // 2 if s == 1 else 0, bias=False),
               nn.BatchNorm2d(o, eps=1e-3), nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers)
class Res(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(cbl(c, c // 2, 1, 1), cbl(c // 2, c, 3, 1))
    def forward(self, x):
        return x + self.body(x)
layers, c = [cbl(3, 32, 3, 1)], 32
for n in (1, 2, 8, 8, 4):
    layers.append(cbl(c, 2 * c, 3, 2)); c *= 2
    layers += [Res(c) for _ in range(n)]
for i in range(6):
    layers.append(cbl(c, c // 2, 1, 1) if i % 2 == 0 else cbl(c // 2, c, 3, 1))
model = nn.Sequential(*layers).eval()
def median(x):
    with torch.inference_mode():
        for _ in range(WARMUP):
            model(x)
        times = []
        for _ in range(REPEATS):
            s = time.perf_counter(); model(x); times.append(time.perf_counter() - s)
    times.sort()
    return times[len(times) // 2]
x = torch.randn(1, 3, SIZE, SIZE)
plain = median(x)
model = model.to(memory_format=torch.channels_last)
channels_last = median(x.contiguous(memory_format=torch.channels_last))
print(json.dumps({"torch": torch.__version__, "seconds": plain,
                  "channels_last_seconds": channels_last}))
)PY";

double conv_flops(std::int64_t side, std::int64_t in, std::int64_t out, std::int64_t kernel) {
  return 2.0 * static_cast<double>(side * side) * static_cast<double>(in * out) *
         static_cast<double>(kernel * kernel);
}

double darknet_flops(const backbones::DarknetOptions& o, std::int64_t size) {
  std::int64_t side = size;
  double flops = 0;
  for (const auto& c : backbones::darknet_layout(o)) {
    side /= c.stride;
    flops += conv_flops(side, c.in, c.out, c.kernel);
  }
  return flops;
}

// 2 x multiply-adds of VLT's convolutions and matrix products (norms, activations, the GRU's
// gates and softmaxes left out).
double vlt_flops(const bottomup::vlt::VltOptions& o, std::int64_t words) {
  const auto& dk = o.darknet;
  const std::int64_t S = o.input_size, s16 = S / 16, s32 = S / 32;
  const double J = static_cast<double>(o.fusion_width()), U = static_cast<double>(o.rnn_units);
  const double d = static_cast<double>(o.hidden), T = static_cast<double>(words);
  const double Nq = static_cast<double>(o.queries), P = static_cast<double>(o.positions());
  const double ffn = static_cast<double>(o.ffn), W = static_cast<double>(o.word_dim);
  const std::int64_t j = o.fusion_width(), c16 = dk.stage_channels(3), c8 = dk.stage_channels(2);
  double f = darknet_flops(dk, S);
  f += 2 * T * (2 * W * 3 * U + 2 * U * 3 * U) + T * 2 * U * U;  // Bi-GRU, word attention
  f += conv_flops(s32, j, j / 2, 1) + conv_flops(s32, j / 2, j, 3) + 2 * U * J;  // fusion
  f += conv_flops(s16, c16, c16, 1) + conv_flops(s16, j + c16, j / 2, 1) +
       conv_flops(s16, c8, c8, 1) + conv_flops(s16, j / 2 + c8, j / 2, 1) +
       conv_flops(s16, j / 2, j / 4, 1) + conv_flops(s16, j / 4, j / 2, 3) +
       conv_flops(s16, j, j / 2, 1) + conv_flops(s16, j + j / 2, o.tf_width, 1) +
       conv_flops(s16, o.tf_width, o.hidden, 1);  // neck
  const std::int64_t qc = j / 2 + 6;
  f += 3 * conv_flops(s16, qc, qc, 3) + conv_flops(s16, qc, o.queries, 1);
  f += Nq * 2 * P * d + T * 2 * U * d + Nq * 2 * d * d + 2 * T * 2 * d * d;  // QGM Dense
  f += 2 * Nq * 2 * d * d + 2 * T * 2 * d * d + 4 * Nq * T * d;              // QGM attention
  const double enc = 4 * P * 2 * d * d + 4 * P * P * d + 4 * P * d * ffn;
  const double dec = (4 * Nq * 2 * d * d + 4 * Nq * Nq * d) +
                     (2 * Nq * 2 * d * d + 2 * P * 2 * d * d + 4 * Nq * P * d) +
                     4 * Nq * d * ffn;
  f += static_cast<double>(o.encoder_layers) * enc + static_cast<double>(o.decoder_layers) * dec;
  f += Nq * (2 * 2 * d * d + 2 * 2 * d * d + 2 * d) + Nq * 2 * d * P;  // QBM, responses
  f += conv_flops(s16, o.queries, o.hidden, 3) + 2 * conv_flops(s16, o.hidden, o.hidden, 3);
  std::int64_t side = s16;
  for (std::int64_t stride = 8; stride >= o.output_stride; stride /= 2) {
    side *= 2;
    f += conv_flops(side, o.hidden, o.hidden, 3);
  }
  f += conv_flops(side, o.hidden, 1, 3);
  return f;
}

void to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

}  // namespace

nlohmann::json bench_vlt(const BenchContext& ctx) {
  const std::int64_t darknet_size = ctx.quick ? 224 : 416, words = 15;
  const int threads = ctx.runtime.threads;
  const int warmup = std::max(1, ctx.warmup);
  at::set_num_threads(threads);
  const double gemm_before = gemm_gflops();

  const auto reference = run_python_reference(
      ctx.python, timing_script(kPythonDarknet, threads, darknet_size, warmup, ctx.repeats));

  torch::manual_seed(0);
  auto time_it = [&](const std::function<void()>& fn) {
    c10::InferenceMode guard;
    return median_seconds(fn, ctx.repeats, warmup);
  };
  // The Darknet alone, as the Python side.
  const backbones::DarknetOptions dk_options{};
  backbones::Darknet darknet(dk_options);
  darknet->eval();
  const at::Tensor dk_image = torch::randn({1, 3, darknet_size, darknet_size});
  const at::Tensor dk_image_cl = dk_image.contiguous(at::MemoryFormat::ChannelsLast);
  const double dk_plain = time_it([&] { darknet->forward(dk_image); });
  to_channels_last(*darknet);
  backbones::fold_batch_norms(*darknet);
  const double dk_fused = time_it([&] { darknet->forward(dk_image_cl); });

  // The whole network at 416.
  const bottomup::vlt::VltOptions options{};
  bottomup::vlt::VltNet net(options);
  net->eval();
  const at::Tensor image = torch::randn({1, 3, options.input_size, options.input_size});
  const at::Tensor image_cl = image.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor vectors = torch::randn({1, words, options.word_dim});
  const double plain = time_it([&] { net->forward(image, vectors); });
  to_channels_last(*net);
  const double channels_last = time_it([&] { net->forward(image_cl, vectors); });
  backbones::fold_batch_norms(*net);
  const double fused = time_it([&] { net->forward(image_cl, vectors); });
  const double ours = std::min({plain, channels_last, fused});
  const double gemm_after = gemm_gflops();
  const double gemm_rate = 0.5 * (gemm_before + gemm_after);

  const double gflop = vlt_flops(options, words) / 1e9;
  const double dk_gflop = darknet_flops(dk_options, darknet_size) / 1e9;
  const double dk_ours = std::min(dk_plain, dk_fused);
  std::cout << fmt::format(
      "VLT forward (paper size), {0}x{0}, batch 1, {1} words, {2} threads; {3:.1f} GFLOP "
      "(convolutions and matrix products); GEMM rate {4:.1f} GFLOP/s (mean of {5:.1f} before, "
      "{6:.1f} after)\n",
      options.input_size, words, threads, gflop, gemm_rate, gemm_before, gemm_after);
  std::cout << fmt::format("{:>44} {:>10} {:>10} {:>10}\n", "", "seconds", "GFLOP/s", "of GEMM");
  auto row = [&](const std::string& label, double seconds, double work) {
    std::cout << fmt::format("{:>44} {:>10.3f} {:>10.1f} {:>9.0f}%\n", label, seconds,
                             work / seconds, 100.0 * work / seconds / gemm_rate);
  };
  row("VLT (NCHW)", plain, gflop);
  row("VLT (channels-last)", channels_last, gflop);
  row("VLT (channels-last, BN folded)", fused, gflop);
  std::cout << fmt::format("Darknet-53 + 6 head CBLs at {0}x{0}, {1:.1f} GFLOP\n", darknet_size,
                           dk_gflop);
  row("wico Darknet (NCHW)", dk_plain, dk_gflop);
  row("wico Darknet (channels-last, BN folded)", dk_fused, dk_gflop);
  const double theirs = reference.is_null() ? 0.0 : reference.value("seconds", 0.0);
  const double theirs_cl = reference.is_null() ? 0.0 : reference.value("channels_last_seconds", 0.0);
  if (theirs > 0) {
    row("python3-torch Darknet (NCHW)", theirs, dk_gflop);
    if (theirs_cl > 0) row("python3-torch Darknet (channels-last)", theirs_cl, dk_gflop);
    std::cout << fmt::format("Darknet speed-up over python3-torch: {:.2f}x", theirs / dk_ours);
    if (theirs_cl > 0) {
      std::cout << fmt::format(" ({:.2f}x over its channels-last)",
                               std::min(theirs, theirs_cl) > 0 ? theirs_cl / dk_ours : 0.0);
    }
    std::cout << "\n";
  } else {
    std::cout << "python3-torch: not available, no comparison\n";
  }
  nlohmann::json result = {
      {"benchmark", "vlt"},
      {"size", options.input_size},
      {"words", words},
      {"threads", threads},
      {"gflop", gflop},
      {"gemm_gflops", gemm_rate},
      {"seconds", ours},
      {"nchw_seconds", plain},
      {"channels_last_seconds", channels_last},
      {"fused_seconds", fused},
      {"gemm_fraction", gflop / ours / gemm_rate},
      {"darknet_size", darknet_size},
      {"darknet_gflop", dk_gflop},
      {"darknet_seconds", dk_ours},
      {"python_darknet_seconds", theirs > 0 ? nlohmann::json(theirs) : nullptr},
      {"python_darknet_channels_last_seconds",
       theirs_cl > 0 ? nlohmann::json(theirs_cl) : nullptr},
      {"darknet_speedup", theirs > 0 ? nlohmann::json(theirs / dk_ours) : nullptr}};
  if (!reference.is_null()) result["python_torch"] = reference["torch"];
  return result;
}

}  // namespace wico
