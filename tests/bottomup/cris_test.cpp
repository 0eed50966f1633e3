// CRIS's network against CRIS's own code (scripts/make_cris_fixtures.py: model/clip.py and
// model/layers.py composed as CRIS.forward, a narrow model with random weights, eval mode): the
// state dict loads by CRIS's names with nothing left over, and the neck, decoder, projector
// features and logits match to 1e-4 after the original's checkpoint loads strictly through the
// cris name map; the position tables, the per-sample dynamic kernel, the backend's decode and
// loss, and the option checks.
#include "wico/bottomup/cris/cris.h"
#include "wico/bottomup/cris/cris_backend.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <map>
#include <string>

#include "backbones/tensor_fixture.h"
#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/data/loader.h"
#include "wico/io/import.h"
#include "wico/io/name_map.h"
#include "wico/io/weights.h"
#include "wico/train/optim.h"

namespace wico::bottomup {
namespace {

using test::max_abs_diff;
using test::TensorFixture;

const TensorFixture& fixture() {
  static const TensorFixture f(std::filesystem::path(WICO_TEST_DATA_DIR) / "cris" / "cris");
  return f;
}

CrisOptions fixture_options() {
  const auto& m = fixture().meta();
  CrisOptions o;
  o.visual.layers = m["vision_layers"].get<std::vector<std::int64_t>>();
  o.visual.width = m["vision_width"].get<std::int64_t>();
  o.visual.output_dim = m["embed_dim"].get<std::int64_t>();
  o.visual.heads = o.visual.width * 32 / 64;
  o.visual.spacial_dim = m["image_resolution"].get<std::int64_t>() / 32;
  o.text.vocab_size = m["vocab_size"].get<std::int64_t>();
  o.text.context_length = m["context_length"].get<std::int64_t>();
  o.text.width = m["transformer_width"].get<std::int64_t>();
  o.text.heads = m["transformer_heads"].get<std::int64_t>();
  o.text.layers = m["transformer_layers"].get<std::int64_t>();
  o.text.embed_dim = m["embed_dim"].get<std::int64_t>();
  o.fpn_out = m["fpn_out"].get<std::vector<std::int64_t>>();
  o.decoder_layers = m["num_layers"].get<std::int64_t>();
  o.decoder_heads = m["num_head"].get<std::int64_t>();
  o.decoder_ffn = m["dim_ffn"].get<std::int64_t>();
  return o;
}

// The original's checkpoint (DDP names under 'state_dict', training state beside) through the
// cris name map into our backend, strictly: nothing missing, nothing unexpected.
std::shared_ptr<CrisBackend> fixture_backend() {
  CrisBackendOptions o;
  o.net = fixture_options();
  auto backend = std::make_shared<CrisBackend>(o);
  // The map names the backend's tensors under "backend." (the bottom_up model's prefix).
  torch::nn::Module holder;
  holder.register_module("backend", backend);
  const auto file =
      io::read_weights(std::filesystem::path(WICO_TEST_DATA_DIR) / "cris" / "cris_checkpoint.pth");
  const io::ImportReport report =
      io::import_weights(holder, file, io::name_map("cris"), io::ImportMode::kStrict);
  EXPECT_TRUE(report.clean()) << report.table();
  EXPECT_GT(report.matched.size(), 300u);
  backend->eval();
  return backend;
}

CrisNet fixture_model() { return fixture_backend()->net(); }

double relative(const at::Tensor& ours, const at::Tensor& theirs) {
  return max_abs_diff(ours, theirs) / theirs.abs().max().item<double>();
}

TEST(Cris, OutputsMatchTheOriginalsCode) {
  CrisNet net = fixture_model();
  const at::NoGradGuard no_grad;
  const at::Tensor images = fixture().get("images");
  const at::Tensor tokens = fixture().get("tokens").to(at::kLong);
  const auto vis = net->backbone->encode_image(images);
  const auto text = net->backbone->encode_text(tokens);
  EXPECT_LT(relative(net->neck->forward(vis, text.state), fixture().get("neck")), 1e-4);
  const CrisOutput out = net->forward(images, tokens);
  EXPECT_LT(relative(out.pixel_embeddings, fixture().get("projector_features")), 1e-4);
  EXPECT_LT(relative(out.logits, fixture().get("logits")), 1e-4);
  EXPECT_EQ(out.logits.sizes(), (std::vector<std::int64_t>{2, 1, 24, 24}));
}

// The padded sentence's logits do not depend on what its padding keys hold in the decoder:
// the padding mask really masks (a wrong mask would let them in through the cross-attention).
TEST(Cris, PaddingIsMaskedInTheCrossAttention) {
  CrisNet net = fixture_model();
  const at::NoGradGuard no_grad;
  const at::Tensor images = fixture().get("images");
  const at::Tensor tokens = fixture().get("tokens").to(at::kLong);
  const CrisOutput a = net->forward(images, tokens);
  // Perturb the word features' padded rows by changing the padding positions' embedding: the
  // text transformer is causal, so earlier positions (and the EOT state) are unaffected.
  // (Random, not a constant: every LayerNorm would remove a constant shift.)
  net->backbone->positional_embedding.narrow(0, 5, 4).add_(at::randn({4, 32}) * 3);
  const CrisOutput b = net->forward(images, tokens);
  EXPECT_LT(max_abs_diff(a.logits[0], b.logits[0]), 1e-5);  // sample 0 ends in 4 pads
  EXPECT_GT(max_abs_diff(a.logits[1], b.logits[1]), 1e-3);  // sample 1 has none
}

TEST(Cris, DynamicKernelIsEachSamplesOwn) {
  CrisNet net = fixture_model();
  const at::NoGradGuard no_grad;
  const at::Tensor z = at::randn({2, 16, 5, 4});
  const at::Tensor kernel = at::randn({2, 16 * 9 + 1});
  const at::Tensor out = net->apply_kernel(z, kernel);
  for (int i = 0; i < 2; ++i) {
    const at::Tensor w = kernel[i].narrow(0, 0, 144).view({1, 16, 3, 3});
    const at::Tensor expected = at::conv2d(z[i].unsqueeze(0), w, kernel[i].narrow(0, 144, 1), 1, 1);
    EXPECT_LT(max_abs_diff(out[i].unsqueeze(0), expected), 1e-5);
  }
  EXPECT_THROW(net->apply_kernel(z, at::randn({2, 10})), std::exception);
}

TEST(Cris, PositionTablesAreTheOriginals) {
  // 2-d, 8 channels at 2x3: x (column) in channels 0-3 as sin, cos at frequencies 1 and 1/100,
  // y (row) in 4-7.
  const at::Tensor p = cris_position_2d(8, 2, 3);
  ASSERT_EQ(p.sizes(), (std::vector<std::int64_t>{6, 8}));
  const int token = 1 * 3 + 2;  // row 1, column 2
  EXPECT_NEAR(p[token][0].item<double>(), std::sin(2.0), 1e-6);
  EXPECT_NEAR(p[token][1].item<double>(), std::cos(2.0), 1e-6);
  EXPECT_NEAR(p[token][2].item<double>(), std::sin(2.0 / 100), 1e-6);
  EXPECT_NEAR(p[token][4].item<double>(), std::sin(1.0), 1e-6);
  EXPECT_NEAR(p[token][7].item<double>(), std::cos(1.0 / 100), 1e-6);
  const at::Tensor q = cris_position_1d(4, 3);
  EXPECT_NEAR(q[2][0].item<double>(), std::sin(2.0), 1e-6);
  EXPECT_NEAR(q[2][3].item<double>(), std::cos(2.0 / 100), 1e-6);
}

// ../shared/specs/cris.md: 146,849,122 (R50) and 161,251,682 (R101) parameters, counted from the
// original's modules at RefCOCO's sizes.
TEST(Cris, PaperSizeParameterCountsAreTheOriginals) {
  for (const auto& [options, expected] :
       {std::pair{CrisOptions::r50(), std::int64_t{146849122}},
        std::pair{CrisOptions::r101(), std::int64_t{161251682}}}) {
    CrisNet net(options);
    std::int64_t n = 0;
    for (const auto& p : net->parameters()) n += p.numel();
    EXPECT_EQ(n, expected);
  }
}

// The paper config's optimiser groups are the original's (../shared/specs/cris.md section 6):
// "backbone" = backbone.* but the two position embeddings, 325 tensors and 103,964,513
// parameters at 0.1x (the token embedding and `connect` among them); "head" = neck, decoder,
// proj and the two position embeddings, 124 tensors and 42,884,609 at the full rate. Nothing
// frozen, no weight decay.
TEST(Cris, PaperConfigOptimizerGroupsAreTheOriginals) {
  const Config config = Config::load(WICO_SOURCE_DIR "/configs/bottomup/cris_r50_clip.yaml",
                                     {"cris.clip_pretrained=''"});
  torch::nn::Module model;  // as the bottom_up model holds it
  model.register_module("backend", std::make_shared<CrisBackend>(CrisBackendOptions::from_config(config)));
  const train::OptimizerSetup setup = train::build_optimizer(model, config);
  EXPECT_TRUE(setup.frozen.empty());
  std::int64_t backbone_tensors = 0, head_tensors = 0, backbone = 0, head = 0;
  std::map<std::string, std::int64_t> sizes;
  for (const auto& p : model.named_parameters()) sizes[p.key()] = p.value().numel();
  for (const auto& group : setup.groups) {
    EXPECT_DOUBLE_EQ(group.weight_decay, 0.0) << group.name;
    const bool slow = group.lr_multiplier == 0.1;
    for (const auto& name : group.parameters) {
      (slow ? backbone_tensors : head_tensors) += 1;
      (slow ? backbone : head) += sizes.at(name);
      if (name.find("token_embedding") != std::string::npos ||
          name.find("attnpool.connect") != std::string::npos) {
        EXPECT_TRUE(slow) << name;
      }
      if (name.find("positional_embedding") != std::string::npos) {
        EXPECT_FALSE(slow) << name;
      }
    }
  }
  EXPECT_EQ(backbone_tensors, 325);
  EXPECT_EQ(head_tensors, 124);
  EXPECT_EQ(backbone, 103964513);
  EXPECT_EQ(head, 42884609);
  EXPECT_EQ(config.integer("train.param_groups_from"), 1);  // the first epoch at the full rate
}

// decode(E_p) is the forward's own logits (the batch's sentence kernels); it refuses to run
// before a forward or on another batch size.
TEST(Cris, BackendDecodesWithTheBatchsKernels) {
  CrisBackendOptions o;
  o.net = fixture_options();
  CrisBackend fresh(o);
  EXPECT_THROW(fresh.decode(at::zeros({2, 16, 24, 24})), std::exception);
  auto backend = fixture_backend();
  data::Batch batch;
  batch.images = fixture().get("images");
  batch.token_ids = fixture().get("tokens").to(at::kLong);
  const at::NoGradGuard no_grad;
  const BottomUpOutput out = backend->forward(batch);
  EXPECT_EQ(backend->embedding_dim(), 16);
  EXPECT_EQ(out.pixel_embeddings.size(1), 16);
  EXPECT_LT(max_abs_diff(backend->decode(out.pixel_embeddings), out.logits), 1e-6);
  EXPECT_LT(relative(out.logits, fixture().get("logits")), 1e-4);
  EXPECT_THROW(backend->decode(out.pixel_embeddings.narrow(0, 0, 1)), std::exception);
}

// CRIS's loss: the targets resized nearest to the logits' size (input pixel 4i of a stride-4
// map), binary cross-entropy with logits, mean.
TEST(Cris, LossComparesAtTheLogitsSize) {
  CrisBackendOptions o;
  o.net = fixture_options();
  CrisBackend backend(o);
  at::Tensor targets = at::zeros({1, 1, 8, 8});
  targets[0][0][0][0] = 1;  // picked by nearest (row 0, column 0)
  targets[0][0][1][1] = 1;  // not picked: rows and columns 0 and 4 only
  targets[0][0][4][4] = 1;  // picked
  const at::Tensor logits = at::tensor({0.5f, -1.0f, 2.0f, 0.0f}).view({1, 1, 2, 2});
  const auto bce = [](double x, double y) {
    return -(y * std::log(1 / (1 + std::exp(-x))) + (1 - y) * std::log(1 - 1 / (1 + std::exp(-x))));
  };
  const double expected = (bce(0.5, 1) + bce(-1.0, 0) + bce(2.0, 0) + bce(0.0, 1)) / 4;
  EXPECT_NEAR(backend.loss(logits, targets).item<double>(), expected, 1e-6);
  // cris.loss bce_dice (the tiny config's): plus soft Dice on the same picked targets,
  // 1 - (2 * sum(p t) + 1) / (sum(p) + sum(t) + 1).
  o.loss = "bce_dice";
  CrisBackend with_dice(o);
  const auto sigmoid = [](double x) { return 1 / (1 + std::exp(-x)); };
  const double p_sum = sigmoid(0.5) + sigmoid(-1.0) + sigmoid(2.0) + sigmoid(0.0);
  const double dice = 1 - (2 * (sigmoid(0.5) + sigmoid(0.0)) + 1) / (p_sum + 2 + 1);
  EXPECT_NEAR(with_dice.loss(logits, targets).item<double>(), expected + dice, 1e-6);
}

// test.py's post-processing at the input size: the sigmoid at S/4, then bicubic with
// align_corners=True (values from torch 1.13's F.interpolate on the same logits), clamped to
// [0, 1] where bicubic overshoots; the threshold is 0.35.
TEST(Cris, ProbabilitiesAreTheSigmoidResizedBicubic) {
  CrisBackendOptions o;
  o.net = fixture_options();
  CrisBackend backend(o);
  EXPECT_DOUBLE_EQ(backend.threshold(), 0.35);
  const at::Tensor logits =
      at::tensor({0.5f, -1.0f, 0.3f, 2.0f, 0.0f, -2.5f, 1.0f, -0.5f, 0.25f}).view({1, 1, 3, 3});
  const at::Tensor p = backend.probabilities(logits, 6);
  ASSERT_EQ(p.sizes(), (at::IntArrayRef{1, 1, 6, 6}));
  const std::vector<std::array<double, 3>> expected = {  // row, column, F.interpolate's value
      {0, 0, 0.62245935}, {0, 1, 0.46329829}, {1, 2, 0.43389446}, {2, 5, 0.11692253},
      {3, 0, 0.87924361}, {4, 3, 0.38822645}, {5, 5, 0.56217653}};
  for (const auto& [y, x, v] : expected) {
    EXPECT_NEAR(p[0][0][static_cast<std::int64_t>(y)][static_cast<std::int64_t>(x)].item<double>(),
                v, 1e-6)
        << y << "," << x;
  }
  // A hard step overshoots to 1.105 / -0.105 under bicubic (F.interpolate): clamped.
  const at::Tensor step = at::tensor({-20.0f, -20.0f, 20.0f, 20.0f}).view({1, 1, 1, 4}).expand({1, 1, 4, 4});
  const at::Tensor q = backend.probabilities(step.contiguous(), 13);
  EXPECT_DOUBLE_EQ(q.max().item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(q.min().item<double>(), 0.0);
  // At the input size already: the sigmoid alone.
  EXPECT_TRUE(at::allclose(backend.probabilities(logits, 3), logits.sigmoid()));
}

TEST(Cris, OptionsAreChecked) {
  CrisOptions o = CrisOptions::r50();
  EXPECT_NO_THROW(o.validate());
  o.text.embed_dim = 512;  // word_dim != C5
  EXPECT_THROW(o.validate(), ConfigError);
  o = CrisOptions::r101();
  EXPECT_NO_THROW(o.validate());
  o.fpn_out = {256, 256, 1024};  // decoder width != text width
  EXPECT_THROW(o.validate(), ConfigError);
}

}  // namespace
}  // namespace wico::bottomup
