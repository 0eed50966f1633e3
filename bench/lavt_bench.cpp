// `wico bench lavt`: the paper-size LAVT forward (Swin-B/12 + PWAM + BERT-base + decoder) at
// 480x480, batch 1, inference mode: median time, the process's peak resident memory, and the FLOP
// rate of its matrix products and convolutions against the GEMM rate measured in the same run.
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <iostream>

#include "wico/backbones/swin.h"
#include "wico/bottomup/lavt/lavt.h"
#include "wico/core/benchmark.h"
#include "wico/data/loader.h"

namespace wico {

namespace {

// 2 x multiply-adds of LAVT's matrix products and convolutions beyond the Swin's own.
double lavt_extra_flops(const bottomup::LavtOptions& o, std::int64_t size, std::int64_t words) {
  const double L = static_cast<double>(words);
  const double H = static_cast<double>(o.bert.hidden_size);
  const double I = static_cast<double>(o.bert.intermediate_size);
  double flops = static_cast<double>(o.bert.num_layers) *
                 (2 * L * 4 * H * H + 2 * 2 * L * L * H + 2 * 2 * L * H * I);
  std::int64_t side = size / o.swin.patch_size;
  std::vector<double> tokens;
  for (std::int64_t i = 0; i < o.swin.num_stages(); ++i) {
    const double c = static_cast<double>(o.swin.stage_dim(i));
    const double hw = static_cast<double>(side * side);
    tokens.push_back(hw);
    // PWAM: four C x C projections on pixels, keys and values from words, two attention
    // products; the gate's two C x C layers.
    flops += 4 * 2 * hw * c * c + 2 * 2 * L * H * c + 2 * 2 * hw * L * c + 2 * 2 * hw * c * c;
    side = (side + 1) / 2;
  }
  const double h = static_cast<double>(o.swin.stage_dim(o.swin.num_stages() - 1)) / 2;  // 512
  const double c4 = 2 * h;
  // Decoder: 3x3 convolutions at stages 3, 2 and 1 (resolution of the skip), then the 1x1.
  flops += 2 * tokens[2] * 9 * ((c4 + c4 / 2) * h + h * h);
  flops += 2 * tokens[1] * 9 * ((h + c4 / 4) * h + h * h);
  flops += 2 * tokens[0] * 9 * ((h + c4 / 8) * h + h * h);
  flops += 2 * tokens[0] * h * 2;
  return flops;
}

}  // namespace

nlohmann::json bench_lavt(const BenchContext& ctx) {
  const std::int64_t size = ctx.quick ? 224 : 480;
  const std::int64_t words = 20;
  const int threads = ctx.runtime.threads;
  at::set_num_threads(threads);
  const double gemm_rate = gemm_gflops();
  torch::manual_seed(0);
  bottomup::LavtOptions options;  // paper size: Swin-B/12, BERT-base
  if (ctx.quick) options.swin = backbones::SwinOptions::tiny(7);
  bottomup::LavtBackend lavt(options);
  lavt.eval();
  const double built = peak_resident_mb();
  std::int64_t parameters = 0;
  for (const auto& p : lavt.parameters()) parameters += p.numel();

  data::Batch batch;
  batch.images = torch::randn({1, 3, size, size});
  batch.token_ids = torch::randint(1000, 5000, {1, words}, torch::kLong);
  batch.attention_mask = torch::ones({1, words}, torch::kLong);
  c10::InferenceMode guard;
  const double seconds = median_seconds([&] { lavt.forward(batch); }, ctx.repeats, ctx.warmup);
  const double peak = peak_resident_mb();
  const double gflop = (backbones::swin_matmul_flops(options.swin, size, size) +
                        lavt_extra_flops(options, size, words)) /
                       1e9;
  std::cout << fmt::format(
      "LAVT {} forward, {}x{}, batch 1, {} words, {} threads; {:.1f}M parameters\n"
      "  time               {:8.3f} s (median of {})\n"
      "  work               {:8.1f} GFLOP (matrix products and convolutions)\n"
      "  rate               {:8.1f} GFLOP/s = {:.0f}% of the GEMM rate ({:.1f} GFLOP/s)\n"
      "  resident memory    {:8.0f} MB after building, {:.0f} MB peak during the forward "
      "(+{:.0f} MB)\n",
      ctx.quick ? "Swin-T/7" : "Swin-B/12 + BERT-base (paper size)", size, size, words, threads,
      static_cast<double>(parameters) / 1e6, seconds, ctx.repeats, gflop, gflop / seconds,
      100.0 * gflop / seconds / gemm_rate, gemm_rate, built, peak,
      peak - built);
  return {{"size", size},
          {"threads", threads},
          {"parameters", parameters},
          {"seconds", seconds},
          {"gflop", gflop},
          {"gflops", gflop / seconds},
          {"gemm_gflops", gemm_rate},
          {"resident_mb_built", built},
          {"resident_mb_peak", peak}};
}

}  // namespace wico
