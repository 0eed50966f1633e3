// LAVT end to end against the original: scripts/make_lavt_ris_fixtures.py ran yz93/LAVT-RIS's
// own model (the `lavt` variant: Swin + PWAM + SimpleDecoding, a separate BERT) with random
// weights, saved the checkpoint as its train.py does ({'model', 'bert_model', 'optimizer',
// 'epoch', 'args', 'lr_scheduler'}) and its outputs. Ours loads that file through the
// `lavt_ris` name map, strictly, and must give the same BERT states, stage features, decoder
// features and logits (a square batch of 2 and a 58x46 image that pads every window).
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>
#include <torch/nn/module.h>

#include "../backbones/tensor_fixture.h"
#include "test_util.h"
#include "wico/bottomup/lavt/lavt.h"
#include "wico/core/runtime.h"
#include "wico/data/loader.h"
#include "wico/io/import.h"
#include "wico/io/name_map.h"
#include "wico/io/weights.h"
#include "wico/nn/winograd_conv.h"

namespace wico::bottomup {
namespace {

using test::max_abs_diff;
using test::TensorFixture;

const std::filesystem::path kDir = std::filesystem::path(WICO_TEST_DATA_DIR) / "lavt_ris";

const TensorFixture& fixture() {
  static const TensorFixture f(kDir / "lavt_ris_tiny");
  return f;
}

// The sizes the fixture's meta records.
LavtOptions fixture_options() {
  const auto& meta = fixture().meta();
  LavtOptions o;
  const auto& s = meta.at("swin");
  o.swin.embed_dim = s.at("embed_dim");
  o.swin.depths = s.at("depths").get<std::vector<std::int64_t>>();
  o.swin.num_heads = s.at("num_heads").get<std::vector<std::int64_t>>();
  o.swin.window_size = s.at("window_size");
  o.swin.mlp_ratio = s.at("mlp_ratio");
  o.swin.drop_path_rate = s.at("drop_path_rate");
  const auto& b = meta.at("bert");
  o.bert.vocab_size = b.at("vocab_size");
  o.bert.hidden_size = b.at("hidden_size");
  o.bert.num_layers = b.at("num_hidden_layers");
  o.bert.num_heads = b.at("num_attention_heads");
  o.bert.intermediate_size = b.at("intermediate_size");
  o.bert.max_positions = b.at("max_position_embeddings");
  o.bert.with_pooler = false;
  o.fusion_heads = meta.at("fusion_heads").get<std::vector<std::int64_t>>();
  o.bert_train_layers = o.bert.num_layers;  // the original's range(10) over 2 layers
  return o;
}

// Our model as the `bottom_up` RisModel holds it: the backend under `backend`.
struct Holder : torch::nn::Module {
  explicit Holder(LavtOptions options)
      : backend(register_module("backend", std::make_shared<LavtBackend>(std::move(options)))) {}
  std::shared_ptr<LavtBackend> backend;
};

double tolerance(const at::Tensor& expected) {
  return 1e-4 * std::max(1.0, expected.abs().max().item<double>());
}

// Loads the original's checkpoint and compares every stage with the original's outputs, with the
// decoder's 3x3 convolutions computed by `algorithm`.
void expect_matches_the_original(ConvAlgorithm algorithm) {
  const ConvAlgorithm saved = conv_algorithm();
  set_conv_algorithm(algorithm);
  const std::uint64_t winograd_before = nn::winograd_forward_count();
  Holder model(fixture_options());
  const io::WeightFile file = io::read_weights(kDir / "lavt_ris_tiny.pth");
  const io::ImportReport report =
      io::import_weights(model, file, io::name_map("lavt_ris"), io::ImportMode::kStrict);
  EXPECT_TRUE(report.clean()) << report.table();
  EXPECT_EQ(report.loaded_values, report.model_values) << report.table();
  EXPECT_NE(file.find_value("args.model"), nullptr);
  model.eval();
  const at::NoGradGuard no_grad;

  for (const std::string prefix : {"", "rect."}) {
    data::Batch batch;
    batch.images = fixture().get(prefix + "inputs.image");
    const std::int64_t B = batch.images.size(0);
    batch.token_ids = fixture().get("inputs.token_ids").narrow(0, 0, B).to(at::kLong);
    batch.attention_mask = fixture().get("inputs.attention_mask").narrow(0, 0, B).to(at::kLong);
    if (prefix.empty()) {
      const auto words = model.backend->bert()->forward(batch.token_ids, batch.attention_mask);
      const auto& expected = fixture().get("bert.last_hidden_state");
      EXPECT_LE(max_abs_diff(words, expected), tolerance(expected));
    }
    const auto features =
        model.backend->encode(batch.images, batch.token_ids, batch.attention_mask);
    for (std::size_t i = 0; i < features.size(); ++i) {
      const auto& expected = fixture().get(prefix + "backbone.stage" + std::to_string(i));
      EXPECT_LE(max_abs_diff(features[i], expected), tolerance(expected)) << prefix << "stage " << i;
    }
    const BottomUpOutput out = model.backend->forward(batch);
    if (prefix.empty()) {
      const auto& hidden = fixture().get("classifier.hidden");
      EXPECT_LE(max_abs_diff(out.pixel_embeddings, hidden), tolerance(hidden));
    }
    // The original's two logits; ours is their difference (softmax(l)[1] = sigmoid(l1 - l0)).
    const auto& two = fixture().get(prefix + "classifier.logits");
    const auto expected = two.narrow(1, 1, 1) - two.narrow(1, 0, 1);
    EXPECT_LE(max_abs_diff(out.logits, expected), tolerance(expected)) << prefix << "logits";
    // At the input size as the original returns it (bilinear, align_corners true).
    const auto& full = fixture().get(prefix + "output");
    const auto up = at::upsample_bilinear2d(out.logits, {full.size(2), full.size(3)}, true);
    const auto expected_full = full.narrow(1, 1, 1) - full.narrow(1, 0, 1);
    EXPECT_LE(max_abs_diff(up, expected_full), tolerance(expected_full)) << prefix << "output";
    EXPECT_GT(expected.abs().max().item<double>(), 0.1);  // not a trivially small output
  }
  // Forced Winograd takes all six of the decoder's 3x3 convolutions, twice over (square and
  // rectangular inputs).
  if (algorithm != ConvAlgorithm::kDirect) {
    EXPECT_EQ(nn::winograd_forward_count() - winograd_before, 12u);
  }
  set_conv_algorithm(saved);
}

TEST(LavtRis, ReleasedLayoutLoadsStrictlyAndMatchesTheOriginal) {
  expect_matches_the_original(ConvAlgorithm::kDirect);
}

TEST(LavtRis, MatchesTheOriginalWithWinogradDecoderConvolutions) {
  expect_matches_the_original(ConvAlgorithm::kWinograd);
}

TEST(LavtRis, MatchesTheOriginalWithOneDnnWinogradDecoderConvolutions) {
  if (!nn::onednn_winograd_available()) GTEST_SKIP() << "this build or CPU has no oneDNN Winograd";
  expect_matches_the_original(ConvAlgorithm::kOneDnnWinograd);
}

TEST(LavtRis, TrainingAfterAnInferenceModeForwardWorks) {
  // Evaluation runs under InferenceMode between training steps: nothing it leaves cached in the
  // model (Swin's shift masks) may be an inference tensor that autograd would have to save.
  Holder model(fixture_options());
  data::Batch batch;
  batch.images = fixture().get("inputs.image");
  batch.token_ids = fixture().get("inputs.token_ids").to(at::kLong);
  batch.attention_mask = fixture().get("inputs.attention_mask").to(at::kLong);
  model.eval();
  {
    c10::InferenceMode guard;
    model.backend->forward(batch);
  }
  model.train();
  const auto out = model.backend->forward(batch);
  const auto target = (at::rand({2, 1, 64, 64}) > 0.5).to(at::kFloat);
  const auto logits = at::upsample_bilinear2d(out.logits, {64, 64}, true);
  EXPECT_NO_THROW(model.backend->loss(logits, target).backward());
}

TEST(LavtRis, BertStaysInEvalModeWhileTrainingAsInTheOriginal) {
  LavtOptions o = fixture_options();
  Holder model(o);
  model.train();
  EXPECT_TRUE(model.backend->is_training());
  EXPECT_FALSE(model.backend->bert()->is_training());
  EXPECT_TRUE(model.backend->swin()->is_training());
  o.bert_mode = "train";
  Holder trained(o);
  trained.train();
  EXPECT_TRUE(trained.backend->bert()->is_training());
}

TEST(LavtRis, ResGateLinearsStartFromTruncatedNormalStd002) {
  at::manual_seed(1);
  LavtOptions o = fixture_options();
  o.swin.embed_dim = 64;  // enough weights for the statistics
  LavtBackend lavt(o);
  for (std::int64_t i = 0; i < 4; ++i) {
    for (const char* j : {"0", "2"}) {
      const auto w = lavt.named_parameters()["backbone.layers." + std::to_string(i) + ".res_gate." + j + ".weight"];
      EXPECT_NEAR(w.std().item<double>(), 0.02, 0.004) << i << "." << j;
      EXPECT_LE(w.abs().max().item<double>(), 2.0);
    }
  }
}

}  // namespace
}  // namespace wico::bottomup
