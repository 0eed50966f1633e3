// `wico bench lavt`: the paper-size LAVT forward (Swin-B/12 + PWAM + BERT-base + decoder) at
// 480x480, batch 1, inference mode: median time, the process's peak resident memory, and the FLOP
// rate of its matrix products and convolutions against the GEMM rate measured in the same run.
// With --against CHECKOUT: the original's own model (LAVT-RIS, bench/lavt_against.py) and ours
// with the same weights (read from the file the original wrote, through the lavt_ris map) on the
// same input and thread count, back to back: forward and one training step, and how far apart
// the outputs are.
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <torch/torch.h>


#include <iostream>

#include "wico/backbones/swin.h"
#include "wico/bottomup/lavt/lavt.h"
#include "wico/core/benchmark.h"
#include "wico/core/error.h"
#include "wico/core/stopwatch.h"
#include "wico/data/loader.h"
#include "wico/io/import.h"
#include "wico/io/weights.h"

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

struct Holder : torch::nn::Module {  // our LAVT as the bottom_up model holds it
  explicit Holder(bottomup::LavtOptions options)
      : backend(register_module("backend", std::make_shared<bottomup::LavtBackend>(options))) {}
  std::shared_ptr<bottomup::LavtBackend> backend;
};

nlohmann::json bench_lavt_against(const BenchContext& ctx, std::int64_t size) {
  const int threads = ctx.runtime.threads;
  const ScratchDir scratch("lavt_against");
  std::filesystem::create_directories(scratch.path());
  const std::filesystem::path script = std::filesystem::path(WICO_BENCH_DIR) / "lavt_against.py";
  if (!std::filesystem::exists(std::filesystem::path(ctx.against) / "lib" / "backbone.py")) {
    throw ConfigError("--against '" + ctx.against + "' is not a LAVT-RIS checkout (no lib/backbone.py)");
  }
  std::cout << "running LAVT-RIS's model from " << ctx.against << " (" << threads
            << " threads)...\n";
  const nlohmann::json original = run_against_script(ctx, script, scratch.path(), size);
  if (original.is_null()) return {{"against", nullptr}};

  at::set_num_threads(threads);
  Holder ours{bottomup::LavtOptions{}};  // paper size: Swin-B/12, BERT-base
  const io::WeightFile weights = io::read_weights(scratch.path() / "weights.pth");
  io::import_weights(ours, weights, io::name_map("lavt_ris"), io::ImportMode::kStrict);
  const io::WeightFile io_file = io::read_weights(scratch.path() / "io.pth");
  data::Batch batch;
  batch.images = io_file.find("image")->clone();
  batch.token_ids = io_file.find("ids")->clone();
  batch.attention_mask = io_file.find("mask")->clone();
  const at::Tensor target = io_file.find("target")->unsqueeze(1).to(at::kFloat);
  const at::Tensor& two = *io_file.find("output");
  const at::Tensor expected = two.narrow(1, 1, 1) - two.narrow(1, 0, 1);

  ours.eval();
  double difference = 0, scale = 0;
  double forward_s = 0;
  {
    c10::InferenceMode guard;
    auto forward = [&] {
      const auto out = ours.backend->forward(batch);
      return at::upsample_bilinear2d(out.logits, {size, size}, /*align_corners=*/true);
    };
    difference = (forward() - expected).abs().max().item<double>();
    scale = expected.abs().max().item<double>();
    forward_s = median_seconds([&] { forward(); }, ctx.repeats, ctx.warmup);
  }
  ours.train();
  auto train_step = [&] {
    ours.zero_grad();
    const auto out = ours.backend->forward(batch);
    const auto logits = at::upsample_bilinear2d(out.logits, {size, size}, true);
    ours.backend->loss(logits, target).backward();
  };
  const double train_s = median_seconds(train_step, std::max(1, ctx.repeats / 2), 1);
  profile_if_asked(train_step, [&] {
    ours.eval();
    (void)ours.backend->forward(batch);
  });
  const double their_forward = original["forward_s"].get<double>();
  const double their_train = original["train_step_s"].get<double>();
  std::cout << fmt::format(
      "LAVT paper size (Swin-B/12 + BERT-base), {}x{}, batch 1, 20 words, {} threads; the "
      "original's weights in both\n"
      "                     LAVT-RIS (python3-torch {})   ours      original / ours\n"
      "  forward            {:10.3f} s                  {:8.3f} s   {:6.2f}x\n"
      "  training step      {:10.3f} s                  {:8.3f} s   {:6.2f}x\n"
      "  max |logit difference| {:.2e} of max |logit| {:.2f} (foreground l1 - l0 at the input "
      "size, eval mode)\n",
      size, size, threads, original["torch"].get<std::string>(), their_forward, forward_s,
      their_forward / forward_s, their_train, train_s, their_train / train_s, difference, scale);
  return {{"size", size}, {"threads", threads},
          {"original", original}, {"forward_s", forward_s}, {"train_step_s", train_s},
          {"forward_speedup", their_forward / forward_s}, {"train_step_speedup", their_train / train_s},
          {"max_abs_logit_difference", difference}, {"max_abs_logit", scale}};
}

}  // namespace

nlohmann::json bench_lavt(const BenchContext& ctx) {
  if (!ctx.against.empty()) return bench_lavt_against(ctx, ctx.quick ? 224 : 480);
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
