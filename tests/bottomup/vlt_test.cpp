// VLT as the original's Keras graph computes it: weights in Keras's h5 layout under the names a
// fresh Keras session gives the original's layers load strictly through the vlt_keras map, and
// the logits, pixel embeddings and query confidences equal a numpy implementation of the Keras
// layers' formulas (scripts/make_vlt_fixtures.py: Darknet, Bi-GRU, fusion, neck, QGM, keras-
// transformer, QBM, head) in inference and in the training phase; each Keras-specific piece by
// hand (sine positions, coordinates, causal attention, LayerNorm's 1e-14); the paper-size
// parameter counts of ../shared/specs/vlt.md section 10; the backend's words, loss and
// probabilities.
#include "wico/bottomup/vlt/vlt.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>

#include "backbones/tensor_fixture.h"
#include "test_util.h"
#include "wico/bottomup/vlt/vlt_backend.h"
#include "wico/core/error.h"
#include "wico/data/loader.h"
#include "wico/io/import.h"
#include "wico/io/name_map.h"
#include "wico/io/weights.h"

namespace wico::bottomup::vlt {
namespace {

namespace fs = std::filesystem;
using test::max_abs_diff;
using test::TensorFixture;

const fs::path kDir = fs::path(WICO_TEST_DATA_DIR) / "vlt";

const TensorFixture& fixture() {
  static const TensorFixture f(kDir / "vlt");
  return f;
}

VltOptions fixture_options(double dropout) {
  const auto& m = fixture().meta();
  VltOptions o;
  o.darknet.width = m.at("darknet_width");
  o.input_size = m.at("size");
  o.word_dim = m.at("word_dim");
  o.rnn_units = m.at("units");
  o.hidden = m.at("hidden");
  o.heads = m.at("heads");
  o.tf_width = m.at("tf_width");
  o.queries = m.at("queries");
  o.ffn = m.at("ffn");
  o.dropout = o.rnn_dropout = dropout;
  return o;
}

double relative_diff(const at::Tensor& ours, const at::Tensor& reference) {
  return max_abs_diff(ours, reference) / reference.abs().max().item<double>();
}

// The network under "backend", as the bottom-up model holds it (the map's target names).
struct Holder : torch::nn::Module {
  explicit Holder(VltNet n) : net(register_module("backend", std::move(n))) {}
  VltNet net;
};

#ifdef WICO_TEST_HAVE_HDF5

std::shared_ptr<Holder> loaded(double dropout) {
  auto holder = std::make_shared<Holder>(VltNet(fixture_options(dropout)));
  const io::WeightFile file = io::read_weights(kDir / "vlt_keras.h5");
  const io::ImportReport report =
      io::import_weights(*holder, file, io::name_map("vlt_keras"), io::ImportMode::kStrict);
  EXPECT_TRUE(report.clean()) << report.table();
  EXPECT_TRUE(report.unexpected.empty()) << report.table();
  EXPECT_EQ(report.matched.size(), file.tensors.size()) << report.table();
  return holder;
}

TEST(VltKeras, InferenceEqualsKerasFormulas) {
  auto holder = loaded(0.1);
  holder->eval();
  const at::NoGradGuard no_grad;
  const VltOutput out = holder->net->forward(fixture().get("images"), fixture().get("words"));
  EXPECT_LT(relative_diff(out.query_confidence, fixture().get("eval.confidence")), 1e-5);
  EXPECT_LT(relative_diff(out.pixel_embeddings, fixture().get("eval.pixel_embeddings")), 1e-5);
  EXPECT_LT(relative_diff(out.logits, fixture().get("eval.logits")), 1e-5);
  EXPECT_TRUE(at::allclose(holder->net->decode(out.pixel_embeddings), out.logits));
}

// Keras's training phase: every batch norm (frozen ones included) on the batch's statistics;
// dropout off on both sides so that the two are deterministic.
TEST(VltKeras, TrainingPhaseEqualsKerasFormulas) {
  auto holder = loaded(0.0);
  holder->train();
  const VltOutput out = holder->net->forward(fixture().get("images"), fixture().get("words"));
  EXPECT_LT(relative_diff(out.query_confidence, fixture().get("train.confidence")), 1e-4);
  EXPECT_LT(relative_diff(out.logits, fixture().get("train.logits")), 1e-4);
  // Frozen: Darknet-53 and head CBLs 1-4 (56 CBLs); head CBL 5 trains.
  EXPECT_FALSE(holder->net->backbone->cbl->ptr<backbones::ConvBnLeakyImpl>(55)
                   ->conv->weight.requires_grad());
  EXPECT_TRUE(holder->net->backbone->cbl->ptr<backbones::ConvBnLeakyImpl>(56)
                  ->conv->weight.requires_grad());
}

#endif

TEST(Vlt, SinePositionsInterleaveSinAndCos) {
  const at::Tensor pe = vlt_positions(30, 8);
  ASSERT_EQ(pe.sizes(), (at::IntArrayRef{30, 8}));
  for (int p : {0, 1, 7, 29}) {
    for (int i = 0; i < 4; ++i) {
      const double angle = p / std::pow(10000.0, 2.0 * i / 8.0);
      EXPECT_NEAR(pe[p][2 * i].item<double>(), std::sin(angle), 1e-5) << p << " " << i;
      EXPECT_NEAR(pe[p][2 * i + 1].item<double>(), std::cos(angle), 1e-5) << p << " " << i;
    }
  }
}

TEST(Vlt, CoordinatesAreThreeXThenThreeY) {
  const at::Tensor x = at::zeros({2, 1, 3, 5});
  const at::Tensor c = vlt_concat_coord(x);
  ASSERT_EQ(c.sizes(), (at::IntArrayRef{2, 7, 3, 5}));
  // x = 2j / (W - 1) - 1 along the width, y = 2i / (H - 1) - 1 along the height.
  for (int k = 1; k <= 3; ++k) {
    EXPECT_TRUE(at::allclose(c[1][k][2], at::tensor({-1.0f, -0.5f, 0.0f, 0.5f, 1.0f})));
    EXPECT_TRUE(at::allclose(c[0][k + 3].select(1, 4), at::tensor({-1.0f, 0.0f, 1.0f})));
  }
}

// With every projection the identity (weights I, biases 0), the causal attention's first query
// sees only the first key: its output is ReLU(v_0) whatever the later values; the last query
// mixes all of them. Without the mask the first query mixes everything too.
TEST(Vlt, DecoderSelfAttentionIsCausal) {
  KerasAttention a(4, 2);
  {
    const at::NoGradGuard no_grad;
    for (auto* l : {&a->query, &a->key, &a->value, &a->output}) {
      (*l)->weight.copy_(at::eye(4));
      (*l)->bias.zero_();
    }
  }
  at::Tensor x = at::rand({1, 3, 4}) + 0.1;
  const at::NoGradGuard no_grad;
  const at::Tensor causal = a->forward(x, x, x, true);
  EXPECT_TRUE(at::allclose(causal[0][0], x[0][0], 1e-5, 1e-6));
  at::Tensor changed = x.clone();
  changed[0][2] += 5.0;
  EXPECT_TRUE(at::allclose(a->forward(changed, changed, changed, true)[0][0], x[0][0], 1e-5, 1e-6));
  EXPECT_FALSE(at::allclose(a->forward(changed, changed, changed, false)[0][0], x[0][0], 1e-3));
}

// keras-layer-normalization's epsilon is K.epsilon()^2 = 1e-14: a row whose spread is 1e-4 is
// still normalised to unit variance (LibTorch's default 1e-5 would shrink it 300-fold).
TEST(Vlt, LayerNormEpsilonIsKerasSquaredEpsilon) {
  VltEncoderLayer layer(fixture_options(0.0));
  EXPECT_DOUBLE_EQ(layer->self_norm->options.eps(), 1e-14);
  EXPECT_DOUBLE_EQ(layer->ffn_norm->options.eps(), 1e-14);
  const at::Tensor row = at::tensor({1.0f, 1.0001f, 0.9999f, 1.0f});
  const at::NoGradGuard no_grad;
  const at::Tensor y = layer->self_norm->forward(row.repeat({4}).view({1, 16}));
  EXPECT_NEAR(y.pow(2).mean().item<double>(), 1.0, 2e-2);
}

std::int64_t count(torch::nn::Module& m, const std::vector<std::string>& prefixes,
                   bool buffers = false) {
  std::int64_t n = 0;
  const auto items = buffers ? m.named_buffers() : m.named_parameters();
  for (const auto& item : items) {
    if (buffers && item.key().find("running_") == std::string::npos) continue;
    for (const auto& p : prefixes) {
      if (item.key().rfind(p, 0) == 0) {
        n += item.value().numel();
        break;
      }
    }
  }
  return n;
}

// ../shared/specs/vlt.md section 10, module by module, and the Keras summary's trainable count.
TEST(VltPaperSize, ParameterCountsEqualTheSheet) {
  VltNet net(VltOptions{});
  std::vector<std::string> frozen, head14, head56;
  for (int i = 0; i < 52; ++i) frozen.push_back("backbone.cbl." + std::to_string(i) + ".");
  for (int i = 52; i < 56; ++i) head14.push_back("backbone.cbl." + std::to_string(i) + ".");
  for (int i = 56; i < 58; ++i) head56.push_back("backbone.cbl." + std::to_string(i) + ".");
  EXPECT_EQ(count(*net, frozen), 40584928);
  EXPECT_EQ(count(*net, frozen, true), 35712);
  EXPECT_EQ(count(*net, head14), 10491904);
  EXPECT_EQ(count(*net, head56), 5245952);
  EXPECT_EQ(count(*net, {"text.forward_gru.", "text.backward_gru."}), 8140800);
  EXPECT_EQ(count(*net, {"text.attention."}), 1049600);
  EXPECT_EQ(count(*net, {"fusion_"}), 6299648);
  EXPECT_EQ(count(*net, {"fusion_"}, true), 7168);
  const std::vector<std::string> neck{"mid_", "query_lateral.", "query_out.", "tf_"};
  EXPECT_EQ(count(*net, neck), 3808256);
  EXPECT_EQ(count(*net, neck, true), 7168);
  EXPECT_EQ(count(*net, {"query_convs.", "query_maps."}), 7256160);
  EXPECT_EQ(count(*net, {"query_convs."}, true), 3108);
  EXPECT_EQ(count(*net, {"query_vectors.", "word_features.", "query_in.", "key_in.", "value_in.",
                         "word_attention."}),
            896256);
  EXPECT_EQ(count(*net, {"encoder."}), 791552);
  EXPECT_EQ(count(*net, {"decoder."}), 1318912);
  EXPECT_EQ(count(*net, {"balance_"}), 263169);
  EXPECT_EQ(count(*net, {"responses.", "head.0."}), 211108);
  EXPECT_EQ(count(*net, {"head.1.", "head.2.", "head.3.", "head.4.", "head.5.", "head_out."}),
            2953985);
  EXPECT_EQ(count(*net, {""}), 89312230);
  EXPECT_EQ(count(*net, {""}, true), 65444);
  std::int64_t trainable = 0;
  for (const auto& p : net->parameters()) trainable += p.requires_grad() ? p.numel() : 0;
  EXPECT_EQ(trainable, 38235398);  // Keras summary: trainable params
}

// One forward at 416 and one training step, at paper size.
TEST(VltPaperSize, ForwardAt416AndOneTrainingStep) {
  test::IntraOpThreads threads(2);
  VltNet net(VltOptions{});
  net->train();
  const at::Tensor images = at::rand({2, 3, 416, 416});
  const at::Tensor words = at::randn({2, 15, 300});
  const VltOutput out = net->forward(images, words);
  ASSERT_EQ(out.logits.sizes(), (at::IntArrayRef{2, 1, 208, 208}));
  ASSERT_EQ(out.pixel_embeddings.sizes(), (at::IntArrayRef{2, 256, 208, 208}));
  ASSERT_EQ(out.query_confidence.sizes(), (at::IntArrayRef{2, 16}));
  const at::Tensor loss =
      at::binary_cross_entropy_with_logits(out.logits, at::zeros_like(out.logits));
  loss.backward();
  EXPECT_TRUE(net->head_out->weight.grad().defined());
  EXPECT_GT(net->text->forward_gru->kernel.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(net->backbone->cbl->ptr<backbones::ConvBnLeakyImpl>(57)
                ->conv->weight.grad().abs().sum().item<double>(),
            0.0);
  EXPECT_FALSE(net->backbone->cbl->ptr<backbones::ConvBnLeakyImpl>(0)->conv->weight.grad().defined());
}

TEST(Vlt, OptionsAreChecked) {
  VltOptions o;
  o.input_size = 400;
  EXPECT_THROW(o.validate(), ConfigError);
  o = VltOptions{};
  o.heads = 7;
  EXPECT_THROW(o.validate(), ConfigError);
  o = VltOptions{};
  o.output_stride = 3;
  EXPECT_THROW(o.validate(), ConfigError);
  VltNet net(fixture_options(0.0));
  EXPECT_THROW(net->forward(at::zeros({1, 3, 96, 96}), at::zeros({1, 4, 6})), Error);
}

// ---- the backend ----

VltBackendOptions glove_backend_options() {
  VltBackendOptions o;
  o.net = fixture_options(0.0);
  o.net.darknet.blocks = {1, 1, 1, 1, 1};
  o.net.darknet.frozen_cbls = 0;
  o.embedding = "glove";
  o.vectors_path = (fs::path(WICO_TEST_DATA_DIR) / "glove" / "tiny.txt").string();
  return o;
}

// Ids from the glove tokenizer are 1 + the word's row, 0 for pads and unknown words; the backend
// looks them up in the same file (tests/data/glove/tiny.txt: the 0.1 0.2 0.3, man -1 0.5 0.25).
TEST(VltBackend, GloveIdsBecomeTheFileVectorsAndZeros) {
  VltBackend backend(glove_backend_options());
  EXPECT_EQ(backend.options().net.word_dim, 3);
  const at::Tensor ids = at::tensor({1, 2, 0}, at::kLong).view({1, 3});
  const at::Tensor v = backend.word_vectors(ids);
  EXPECT_TRUE(at::allclose(v[0][0], at::tensor({0.1f, 0.2f, 0.3f})));
  EXPECT_TRUE(at::allclose(v[0][1], at::tensor({-1.0f, 0.5f, 0.25f})));
  EXPECT_TRUE(at::equal(v[0][2], at::zeros({3})));
  EXPECT_THROW(backend.word_vectors(at::tensor({99}, at::kLong).view({1, 1})), ConfigError);
  // No word vectors in the state dict: the file is an input, as the original's spaCy table.
  for (const auto& p : backend.named_parameters()) EXPECT_EQ(p.key().find("embedding"), std::string::npos);
}

// vlt.embedding trainable: an Embedding over the word tokenizer's ids, in the state dict and
// trained, where glove's vectors are neither.
TEST(VltBackend, TrainableEmbeddingLearnsWordVectors) {
  VltBackendOptions o = glove_backend_options();
  o.embedding = "trainable";
  o.vocab_size = 7;
  o.net.word_dim = 5;
  VltBackend backend(o);
  const at::Tensor ids = at::tensor({1, 6, 0}, at::kLong).view({1, 3});
  const at::Tensor v = backend.word_vectors(ids);
  ASSERT_EQ(v.sizes(), (at::IntArrayRef{1, 3, 5}));
  EXPECT_TRUE(v.requires_grad());
  bool found = false;
  for (const auto& p : backend.named_parameters()) found = found || p.key() == "embedding.weight";
  EXPECT_TRUE(found);
}

// K.sum(binary_crossentropy(from_logits)) / batch at S/2, the target taken there by nearest
// neighbour (the even pixels).
TEST(VltBackend, LossIsTheSumOverPixelsPerImage) {
  VltBackend backend(glove_backend_options());
  const at::Tensor logits = at::tensor({0.0f, 2.0f, -1.0f, 3.0f, 1.0f, 0.0f, 0.0f, -2.0f})
                                .view({2, 1, 2, 2});
  at::Tensor targets = at::zeros({2, 1, 4, 4});
  targets[0][0][0][2] = 1;  // even pixel (0, 2) -> (0, 1)
  targets[0][0][1][1] = 1;  // odd: dropped
  targets[1][0][2][0] = 1;  // -> (1, 0)
  auto bce = [](double x, double t) { return std::log1p(std::exp(x)) - t * x; };
  const double expected = (bce(0, 0) + bce(2, 1) + bce(-1, 0) + bce(3, 0) + bce(1, 0) +
                           bce(0, 0) + bce(0, 1) + bce(-2, 0)) / 2.0;
  EXPECT_NEAR(backend.loss(logits, targets).item<double>(), expected, 1e-5);
}

// The evaluator's order: the sigmoid at S/2, then a linear resize (half-pixel centres) to S.
TEST(VltBackend, ProbabilitiesAreTheSigmoidResizedLinearly) {
  VltBackend backend(glove_backend_options());
  const at::Tensor logits = at::tensor({-4.0f, 4.0f}).view({1, 1, 1, 2});
  const at::Tensor p = backend.probabilities(logits.expand({1, 1, 2, 2}).contiguous(), 4);
  const double lo = 1 / (1 + std::exp(4.0)), hi = 1 / (1 + std::exp(-4.0));
  // Output column 1 samples input x = 0.25: 0.75 lo + 0.25 hi (of the sigmoids, not the logits).
  EXPECT_NEAR(p[0][0][0][1].item<double>(), 0.75 * lo + 0.25 * hi, 1e-6);
  EXPECT_NEAR(p[0][0][3][0].item<double>(), lo, 1e-6);
  EXPECT_DOUBLE_EQ(backend.threshold(), 0.35);
}

}  // namespace
}  // namespace wico::bottomup::vlt
