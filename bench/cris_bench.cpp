// `wico bench cris`: the paper-size CRIS R50 forward (CLIP RN50 and text transformer + neck +
// 3-layer vision-language decoder + projector) at 416x416, batch 1, 17 words, inference mode:
// median time, the process's peak resident memory, and the FLOP rate of its matrix products and
// convolutions against the GEMM rate measured in the same run.
// With --against CHECKOUT: the original's own model (CRIS.pytorch, bench/cris_against.py) and
// ours with the same weights (read from the file the original wrote, through the cris map) on
// the same input and thread count, back to back: forward and one training step, and how far
// apart the logits are.
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <string>

#include "wico/bottomup/cris/cris_backend.h"
#include "wico/core/benchmark.h"
#include "wico/core/error.h"
#include "wico/data/loader.h"
#include "wico/io/import.h"
#include "wico/io/weights.h"

namespace wico {

namespace {

constexpr std::int64_t kClipStartOfText = 49406, kClipEndOfText = 49407;

// A CLIP sequence as CRIS tokenises it: SOT, `bpe_ids` BPE ids, EOT (the highest id: the
// sentence state is read there), then id-0 padding (masked in the decoder) to `words`.
at::Tensor clip_token_ids(std::int64_t words, std::int64_t bpe_ids) {
  at::Tensor ids = torch::zeros({1, words}, torch::kLong);
  ids.select(1, 0).fill_(kClipStartOfText);
  ids.narrow(1, 1, bpe_ids).copy_(torch::randint(1000, 40000, {1, bpe_ids}, torch::kLong));
  ids.select(1, bpe_ids + 1).fill_(kClipEndOfText);
  return ids;
}

// 2 x multiply-adds of CRIS's matrix products and convolutions (biases, norms and elementwise
// work left out), as torch.profiler counts the original's: aten::conv2d, mm, addmm, bmm and
// baddbmm of its eval forward sum to exactly this at 64, 96 and 128 pixels.
double cris_flops(const bottomup::CrisOptions& o, std::int64_t size, std::int64_t words) {
  auto conv = [](std::int64_t side, std::int64_t in, std::int64_t out, std::int64_t kernel) {
    return 2.0 * static_cast<double>(side * side) * static_cast<double>(in * out) *
           static_cast<double>(kernel * kernel);
  };
  const auto& v = o.visual;
  // CLIP's stem: three 3x3 convolutions at half the input side, then a 2x2 average pool.
  std::int64_t side = size / 2;
  double flops = conv(side, 3, v.width / 2, 3) + conv(side, v.width / 2, v.width / 2, 3) +
                 conv(side, v.width / 2, v.width, 3);
  side /= 2;
  // Bottlenecks: a stage's stride is an average pool after the 3x3, so conv3 and the
  // downsample's 1x1 (after its own pool) run at the reduced side.
  std::int64_t inplanes = v.width, planes = v.width;
  for (std::size_t stage = 0; stage < v.layers.size(); ++stage, planes *= 2) {
    for (std::int64_t block = 0; block < v.layers[stage]; ++block) {
      const std::int64_t stride = (stage > 0 && block == 0) ? 2 : 1;
      const std::int64_t out_side = side / stride;
      flops += conv(side, inplanes, planes, 1) + conv(side, planes, planes, 3) +
               conv(out_side, planes, 4 * planes, 1);
      if (stride > 1 || inplanes != 4 * planes) flops += conv(out_side, inplanes, 4 * planes, 1);
      inplanes = 4 * planes;
      side = out_side;
    }
  }
  // CRIS's dense attention pooling over every C5 position: q, k, v and c_proj, the two
  // attention products, the connect 1x1.
  const double tokens = static_cast<double>(side * side);
  const double c = static_cast<double>(v.embed_dim()), e = static_cast<double>(v.output_dim);
  flops += 3 * 2 * tokens * c * c + 2 * tokens * c * e + 2 * 2 * tokens * tokens * c +
           conv(side, v.embed_dim(), v.output_dim, 1);
  // Text transformer (in_proj, the two attention products, out_proj, the 4x MLP), then
  // text_projection of the end token's row only.
  const double L = static_cast<double>(words), w = static_cast<double>(o.text.width);
  flops += static_cast<double>(o.text.layers) *
           (2 * L * w * 3 * w + 2 * 2 * L * L * w + 2 * L * w * w + 2 * 2 * L * w * 4 * w);
  flops += 2 * w * static_cast<double>(o.text.embed_dim);
  // Neck: txt_proj on the sentence, then the convolutions at strides 32, 16 and 8.
  const std::int64_t s3 = size / 8, s4 = size / 16, s5 = size / 32;
  const std::int64_t o0 = o.fpn_out[0], o1 = o.fpn_out[1], o2 = o.fpn_out[2];
  const double word_dim = static_cast<double>(o.word_dim());
  flops += 2 * word_dim * static_cast<double>(o2) + conv(s5, v.output_dim, o2, 1) +
           conv(s4, v.c4_channels(), o1, 3) + conv(s4, o2 + o1, o1, 1) +
           conv(s3, v.c3_channels(), o0, 3) + conv(s4, o0 + o1, o1, 1) + conv(s5, o2, o1, 3) +
           2 * conv(s4, o1, o1, 3) + conv(s4, 3 * o1, o1, 1) + conv(s4, o1 + 2, o1, 3) +
           conv(s4, o1, o1, 3);
  // Decoder: self-attention over the stride-16 tokens, cross-attention to the words (keys and
  // values projected from the L words), the FFN.
  const double t = static_cast<double>(s4 * s4), d = static_cast<double>(o1);
  const double ffn = static_cast<double>(o.decoder_ffn);
  flops += static_cast<double>(o.decoder_layers) *
           (2 * t * d * 3 * d + 2 * 2 * t * t * d + 2 * t * d * d +
            2 * t * d * d + 2 * 2 * L * d * d + 2 * 2 * t * L * d + 2 * t * d * d +
            2 * 2 * t * d * ffn);
  // Projector: two 3x3 convolutions after each 2x upsampling, the 1x1, proj.txt on the sentence
  // and the sentence's dynamic k x k kernel on Z_v.
  const std::int64_t pc = o.projector_dim(), k = o.kernel_size;
  flops += conv(size / 8, 2 * pc, 2 * pc, 3) + conv(size / 4, 2 * pc, pc, 3) +
           conv(size / 4, pc, pc, 1) + 2 * word_dim * static_cast<double>(pc * k * k + 1) +
           conv(size / 4, pc, 1, k);
  return flops;
}

struct CrisHolder : torch::nn::Module {  // our CRIS as the bottom_up model holds it
  explicit CrisHolder(bottomup::CrisBackendOptions options)
      : backend(register_module("backend", std::make_shared<bottomup::CrisBackend>(options))) {}
  std::shared_ptr<bottomup::CrisBackend> backend;
};

nlohmann::json bench_cris_against(const BenchContext& ctx, std::int64_t size) {
  const int threads = ctx.runtime.threads;
  const ScratchDir scratch("cris_against");
  std::filesystem::create_directories(scratch.path());
  const std::filesystem::path script = std::filesystem::path(WICO_BENCH_DIR) / "cris_against.py";
  if (!std::filesystem::exists(std::filesystem::path(ctx.against) / "model" / "segmenter.py")) {
    throw ConfigError("--against '" + ctx.against +
                      "' is not a CRIS.pytorch checkout (no model/segmenter.py)");
  }
  std::cout << "running CRIS.pytorch's model from " << ctx.against << " (" << threads
            << " threads)...\n";
  const nlohmann::json original = run_against_script(ctx, script, scratch.path(), size);
  if (original.is_null()) return {{"against", nullptr}};

  at::set_num_threads(threads);
  const double gemm_rate = gemm_gflops();  // this run's reference for the FLOP utilisation
  const bottomup::CrisBackendOptions options{};  // R50 at paper size
  CrisHolder ours{options};
  const io::WeightFile weights = io::read_weights(scratch.path() / "weights.pth");
  io::import_weights(ours, weights, io::name_map("cris"), io::ImportMode::kStrict);
  const io::WeightFile io_file = io::read_weights(scratch.path() / "io.pth");
  // Two samples for the training step (txt_proj's BatchNorm1d cannot train on one), the first
  // alone for the forward.
  data::Batch train_batch;
  train_batch.images = io_file.find("image")->clone();
  train_batch.token_ids = io_file.find("ids")->clone();
  const at::Tensor target = io_file.find("target")->clone();
  data::Batch batch;
  batch.images = train_batch.images.narrow(0, 0, 1);
  batch.token_ids = train_batch.token_ids.narrow(0, 0, 1);
  const at::Tensor& expected = *io_file.find("logits");
  const std::int64_t words = batch.token_ids.size(1);

  ours.eval();
  double difference = 0, scale = 0;
  double forward_s = 0;
  {
    c10::InferenceMode guard;
    difference = (ours.backend->forward(batch).logits - expected).abs().max().item<double>();
    scale = expected.abs().max().item<double>();
    forward_s = median_seconds([&] { ours.backend->forward(batch); }, ctx.repeats, ctx.warmup);
  }
  ours.train();
  auto train_step = [&] {
    ours.zero_grad();
    const auto out = ours.backend->forward(train_batch);
    ours.backend->loss(out.logits, target).backward();
  };
  const double train_s = median_seconds(train_step, std::max(1, ctx.repeats / 2), 1);
  profile_if_asked(train_step, [&] {
    ours.eval();
    (void)ours.backend->forward(batch);
  });
  const double their_forward = original["forward_s"].get<double>();
  const double their_train = original["train_step_s"].get<double>();
  const double their_gflop = original["flops"].get<double>() / 1e9;
  const double gflop = cris_flops(options.net, size, words) / 1e9;
  std::cout << fmt::format(
      "CRIS R50 paper size (CLIP RN50 + neck + 3-layer decoder + projector), {}x{}, {} words, {} "
      "threads; forward at batch 1, training step at batch 2; the original's weights in both\n"
      "                     CRIS.pytorch (python3-torch {})   ours      original / ours\n"
      "  forward            {:10.3f} s                  {:8.3f} s   {:6.2f}x\n"
      "  training step      {:10.3f} s                  {:8.3f} s   {:6.2f}x\n"
      "  forward's work     {:10.1f} GFLOP              {:8.1f} GFLOP (torch.profiler; ours "
      "analytic)\n"
      "  forward's rate     {:10.1f} GFLOP/s            {:8.1f} GFLOP/s = {:.0f}% of the GEMM rate "
      "({:.1f} GFLOP/s)\n"
      "  max |logit difference| {:.2e} of max |logit| {:.2f} (the {}x{} logits, eval mode)\n",
      size, size, words, threads, original["torch"].get<std::string>(), their_forward, forward_s,
      their_forward / forward_s, their_train, train_s, their_train / train_s, their_gflop, gflop,
      gflop / their_forward, gflop / forward_s, 100.0 * gflop / forward_s / gemm_rate, gemm_rate,
      difference, scale, expected.size(-2), expected.size(-1));
  return {{"size", size}, {"threads", threads},
          {"original", original}, {"forward_s", forward_s}, {"train_step_s", train_s},
          {"forward_speedup", their_forward / forward_s}, {"train_step_speedup", their_train / train_s},
          {"gflop", gflop}, {"gemm_gflops", gemm_rate},
          {"max_abs_logit_difference", difference}, {"max_abs_logit", scale}};
}

}  // namespace

nlohmann::json bench_cris(const BenchContext& ctx) {
  const std::int64_t size = ctx.quick ? 224 : 416;
  if (!ctx.against.empty()) return bench_cris_against(ctx, size);
  const std::int64_t words = 17;  // word_len of the RefCOCO configs
  const int threads = ctx.runtime.threads;
  at::set_num_threads(threads);
  const double gemm_rate = gemm_gflops();
  torch::manual_seed(0);
  const bottomup::CrisBackendOptions options{};  // R50 at paper size
  bottomup::CrisBackend cris(options);
  cris.eval();
  const double built = peak_resident_mb();
  std::int64_t parameters = 0;
  for (const auto& p : cris.parameters()) parameters += p.numel();

  data::Batch batch;
  batch.images = torch::randn({1, 3, size, size});
  batch.token_ids = clip_token_ids(words, 8);
  c10::InferenceMode guard;
  const double seconds = median_seconds([&] { cris.forward(batch); }, ctx.repeats, ctx.warmup);
  const double peak = peak_resident_mb();
  const double gflop = cris_flops(options.net, size, words) / 1e9;
  std::cout << fmt::format(
      "CRIS R50 forward (paper size), {}x{}, batch 1, {} words, {} threads; {:.1f}M parameters\n"
      "  time               {:8.3f} s (median of {})\n"
      "  work               {:8.1f} GFLOP (matrix products and convolutions)\n"
      "  rate               {:8.1f} GFLOP/s = {:.0f}% of the GEMM rate ({:.1f} GFLOP/s)\n"
      "  resident memory    {:8.0f} MB after building, {:.0f} MB peak during the forward "
      "(+{:.0f} MB)\n",
      size, size, words, threads, static_cast<double>(parameters) / 1e6, seconds, ctx.repeats,
      gflop, gflop / seconds, 100.0 * gflop / seconds / gemm_rate, gemm_rate, built, peak,
      peak - built);
  return {{"size", size},
          {"words", words},
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
