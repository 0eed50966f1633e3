// CRIS's network against CRIS's own code (scripts/make_cris_fixtures.py: model/clip.py and
// model/layers.py composed as CRIS.forward, a narrow model with random weights, eval mode): the
// state dict loads by CRIS's names with nothing left over, and the neck, decoder, projector
// features and logits match to 1e-4; the position tables, the per-sample dynamic kernel and the
// option checks.
#include "wico/bottomup/cris/cris.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>

#include "backbones/tensor_fixture.h"
#include "wico/core/error.h"

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

CrisNet fixture_model() {
  CrisNet net(fixture_options());
  std::map<std::string, at::Tensor> state;
  for (const auto& item : net->named_parameters()) state.emplace(item.key(), item.value());
  for (const auto& item : net->named_buffers()) state.emplace(item.key(), item.value());
  const at::NoGradGuard no_grad;
  std::size_t loaded = 0;
  for (auto& [name, tensor] : state) {
    if (name.find("num_batches_tracked") != std::string::npos) continue;
    const at::Tensor& w = fixture().get("weights." + name);  // throws when the fixture lacks it
    EXPECT_EQ(tensor.sizes(), w.sizes()) << name;
    tensor.copy_(w);
    ++loaded;
  }
  EXPECT_GT(loaded, 250u);
  net->eval();
  return net;
}

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
