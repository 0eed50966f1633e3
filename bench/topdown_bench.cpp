// `wico bench topdown`: the paper-size top-down branch (Mask2Former R50 + MAttNet,
// configs/topdown/mask2former_r50_mattnet.yaml) at 480x480, batch 1, inference mode, on its
// evaluation path (detections as candidates): median seconds of the extractor and the matcher,
// the process's peak resident memory, and the FLOP rate of the extractor's matrix products and
// convolutions (counted from the layer shapes) against the GEMM rate measured in the same run.
// The trunk runs with its frozen norms folded into the convolutions (fuse_frozen_norms).
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <iostream>

#include "wico/backbones/resnet.h"
#include "wico/core/benchmark.h"
#include "wico/core/config.h"
#include "wico/data/loader.h"
#include "wico/topdown/mask2former/mask2former.h"
#include "wico/topdown/top_down.h"

namespace wico {

namespace {

// 2 x multiply-adds of the pixel decoder and the transformer decoder (attention products and
// linear layers; bilinear sampling and norms not counted). full_resolution_steering: the masks
// that steer each block's attention predicted at the mask features' resolution, as the original
// computes them (the network's nominal work); false: at each level's size, as our inference path
// does (MaskedTransformerDecoderImpl::forward with auxiliary false).
double mask2former_head_flops(const topdown::Mask2FormerOptions& o, std::int64_t size,
                              bool full_resolution_steering = true) {
  const auto& pd = o.pixel_decoder;
  const auto& d = o.decoder;
  const double D = static_cast<double>(pd.conv_dim);
  double flops = 0, tokens = 0;
  std::vector<double> level_tokens;
  for (int l = 1; l < 4; ++l) {  // res3..res5
    const double side = std::ceil(static_cast<double>(size) / static_cast<double>(4 << l));
    const double t = side * side;
    level_tokens.push_back(t);
    tokens += t;
    flops += 2 * t * static_cast<double>(pd.in_channels[l]) * D;  // input projection
  }
  const double H = static_cast<double>(pd.num_heads), P = static_cast<double>(pd.num_points);
  const double sample_dims = H * 3 * P * 3;  // offsets (2) and weights (1) per head, level, point
  flops += static_cast<double>(pd.num_layers) *
           2 * tokens * (D * D * 2 + D * sample_dims + 2 * D * static_cast<double>(pd.ffn_dim));
  const double s4 = std::ceil(static_cast<double>(size) / 4) * std::ceil(static_cast<double>(size) / 4);
  flops += 2 * s4 * (static_cast<double>(pd.in_channels[0]) * D + 9 * D * D + D * D);  // FPN, mask features
  const double Q = static_cast<double>(d.num_queries), F = static_cast<double>(d.ffn_dim);
  for (std::int64_t i = 0; i < d.num_layers; ++i) {
    const double m = level_tokens[2 - static_cast<std::size_t>(i % 3)];  // coarsest first
    flops += 2 * (2 * Q * D * D + 2 * m * D * D + 2 * Q * m * D);  // cross-attention
    flops += 2 * (4 * Q * D * D + 2 * Q * Q * D);                  // self-attention
    flops += 2 * 2 * Q * D * F;                                    // FFN
  }
  // Prediction heads before the first layer and after each: mask MLP, class, mask products.
  flops += static_cast<double>(d.num_layers + 1) * 2 *
           (3 * Q * D * D + Q * D * static_cast<double>(d.num_classes + 1));
  for (std::int64_t i = 0; i <= d.num_layers; ++i) {
    const bool last = i == d.num_layers;
    const double pixels =
        full_resolution_steering || last ? s4 : level_tokens[2 - static_cast<std::size_t>(i % 3)];
    flops += 2 * Q * D * pixels;
  }
  return flops;
}

}  // namespace

nlohmann::json bench_topdown(const BenchContext& ctx) {
  const Config config = Config::load(ctx.quick ? "configs/tiny/topdown.yaml"
                                               : "configs/topdown/mask2former_r50_mattnet.yaml");
  at::set_num_threads(ctx.runtime.threads);
  // The GEMM rate before and after the forwards, their mean the reference: on a shared machine
  // whose speed drifts, one probe before would set the ratio by a moment the forwards never saw.
  const double gemm_before = gemm_gflops();
  torch::manual_seed(0);
  topdown::TopDownModel model(config);
  model.eval();
  auto* m2f = dynamic_cast<topdown::Mask2FormerExtractor*>(&model.branch().extractor());
  const std::int64_t folded = m2f ? m2f->backbone->fuse_frozen_norms() : 0;
  const double built = peak_resident_mb();
  const std::int64_t size = config.integer("data.input_size"), words = 20;
  data::Batch batch;
  batch.images = torch::randn({1, 3, size, size});
  batch.token_ids = torch::randint(1000, 5000, {1, words}, torch::kLong);
  batch.attention_mask = torch::ones({1, words}, torch::kLong);
  batch.info.resize(1);
  c10::InferenceMode guard;
  std::vector<double> extractor, matcher;
  for (int i = 0; i < ctx.warmup + ctx.repeats; ++i) {
    const topdown::TopDownOutput out = model.branch().forward(batch, false);
    if (i < ctx.warmup) continue;
    extractor.push_back(out.extractor_seconds);
    matcher.push_back(out.matcher_seconds);
  }
  const double te = median(extractor), tm = median(matcher);
  const double gemm_after = gemm_gflops();
  const double gemm_rate = (gemm_before + gemm_after) / 2;
  // The extractor's stages timed apart (same forwards' shapes, median of the repeats).
  std::vector<double> t_trunk, t_pixel, t_decoder, t_detect;
  if (m2f) {
    for (int i = 0; i < ctx.warmup + ctx.repeats; ++i) {
      auto start = std::chrono::steady_clock::now();
      auto lap = [&start] {
        const auto now = std::chrono::steady_clock::now();
        const double s = std::chrono::duration<double>(now - start).count();
        start = now;
        return s;
      };
      const auto trunk = m2f->backbone->forward(m2f->trunk_input(batch.images));
      const double a = lap();
      const auto pixels = m2f->pixel_decoder->forward(trunk);
      const double b = lap();
      const auto p = m2f->predictor->forward(pixels.multi_scale, pixels.mask_features,
                                             /*auxiliary=*/false);
      const double c = lap();
      (void)topdown::detect_instances(p.class_logits, p.mask_logits, config.integer("top_down.top_k"), size, size,
                                      m2f->options().instance_inference);
      const double d = lap();
      if (i < ctx.warmup) continue;
      t_trunk.push_back(a);
      t_pixel.push_back(b);
      t_decoder.push_back(c);
      t_detect.push_back(d);
    }
  }
  // WICO_BENCH_PROFILE=FILE: one more forward under LibTorch's profiler, as a Chrome trace
  // (scripts/profile_summary.py sums its operators' own time).
  if (const char* profile = std::getenv("WICO_BENCH_PROFILE"); profile && *profile) {
    {
      const torch::autograd::profiler::RecordProfile record(profile);
      (void)model.branch().forward(batch, false);
    }
    std::cout << "profile of one forward: " << profile << "\n";
  }
  const auto& o = m2f->options();
  const double trunk_flop = backbones::resnet_conv_flops(o.backbone, size, size);
  const double gflop = (trunk_flop + mask2former_head_flops(o, size)) / 1e9;
  const double run_gflop = (trunk_flop + mask2former_head_flops(o, size, false)) / 1e9;
  std::int64_t parameters = 0;
  for (const auto& p : model.parameters()) parameters += p.numel();
  const double peak = peak_resident_mb();
  std::string stages;
  if (!t_trunk.empty()) {
    stages = fmt::format(
        "    trunk              {:8.3f} s\n    pixel decoder      {:8.3f} s\n"
        "    transformer decoder{:8.3f} s\n    instance inference {:8.3f} s\n",
        median(t_trunk), median(t_pixel), median(t_decoder), median(t_detect));
  }
  std::cout << fmt::format(
      "top-down branch {}, {}x{}, batch 1, {} threads, median of {}; {:.1f}M parameters, {} "
      "frozen norms folded\n"
      "  extractor          {:8.3f} s  ({:.1f} GFLOP: {:.1f} GFLOP/s = {:.0f}% of the GEMM rate, "
      "{:.1f} GFLOP/s: {:.1f} before, {:.1f} after the forwards)\n"
      "                        ({:.1f} GFLOP of it run: {:.0f}% of the GEMM rate)\n"
      "{}"
      "  matcher            {:8.3f} s\n"
      "  resident memory    {:8.0f} MB after building, {:.0f} MB peak (+{:.0f} MB)\n",
      ctx.quick ? "(tiny)" : "Mask2Former R50 + MAttNet (paper size)", size, size,
      ctx.runtime.threads, ctx.repeats, static_cast<double>(parameters) / 1e6, folded, te, gflop,
      gflop / te, 100.0 * gflop / te / gemm_rate, gemm_rate, gemm_before, gemm_after, run_gflop,
      100.0 * run_gflop / te / gemm_rate, stages, tm, built, peak, peak - built);
  return {{"size", size},         {"extractor_seconds", te}, {"matcher_seconds", tm},
          {"gflop", gflop},       {"gflop_run", run_gflop},  {"gemm_gflops", gemm_rate},
          {"gemm_gflops_before", gemm_before}, {"gemm_gflops_after", gemm_after},
          {"resident_mb_built", built},
          {"resident_mb_peak", peak}, {"parameters", parameters}};
}

}  // namespace wico
