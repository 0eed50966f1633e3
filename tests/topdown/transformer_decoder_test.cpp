// Mask2Former's masked-attention transformer decoder: parity with a reference of the original
// built on torch's nn.MultiheadAttention (scripts/make_m2f_decoder_fixtures.py: post-norm with
// cycling levels, pre-norm with input projections; masks block keys and whole rows), shapes,
// masking semantics, the sine position embedding, gradients, options.
#include "wico/topdown/mask2former/transformer_decoder.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "backbones/tensor_fixture.h"
#include "test_util.h"
#include "wico/core/error.h"

namespace wico::topdown {
namespace {

using test::max_abs_diff;
using test::TensorFixture;

const TensorFixture& fixture() {
  static const TensorFixture f(std::filesystem::path(WICO_TEST_DATA_DIR) / "m2f_decoder" /
                               "m2f_decoder");
  return f;
}

TransformerDecoderOptions small_options() {
  TransformerDecoderOptions o;
  o.in_channels = 16;
  o.hidden_dim = 16;
  o.num_queries = 5;
  o.num_heads = 2;
  o.ffn_dim = 24;
  o.num_layers = 4;
  o.mask_dim = 8;
  o.num_classes = 3;
  return o;
}

std::vector<at::Tensor> small_levels(std::int64_t batch, std::int64_t channels) {
  return {at::randn({batch, channels, 2, 3}), at::randn({batch, channels, 4, 5}),
          at::randn({batch, channels, 7, 6})};
}

void check_parity(const std::string& label, bool auxiliary = true) {
  const auto& meta = fixture().meta().at(label);
  TransformerDecoderOptions o;
  o.in_channels = meta.at("in_channels");
  o.hidden_dim = meta.at("hidden_dim");
  o.num_queries = meta.at("num_queries");
  o.num_heads = meta.at("num_heads");
  o.ffn_dim = meta.at("ffn_dim");
  o.num_layers = meta.at("num_layers");
  o.mask_dim = meta.at("mask_dim");
  o.num_classes = meta.at("num_classes");
  o.pre_norm = meta.at("pre_norm");
  // The fixture must exercise the masking: keys blocked at every block, some rows blocked fully.
  std::int64_t full_rows = 0;
  for (const auto& f : meta.at("blocked_fraction")) EXPECT_GT(f.get<double>(), 0.1);
  for (const auto& n : meta.at("fully_blocked_rows")) full_rows += n.get<std::int64_t>();
  EXPECT_GT(full_rows, 0);

  MaskedTransformerDecoder decoder(o);
  decoder->eval();
  const auto unset = fixture().load_into(*decoder, label + ".weights.");
  EXPECT_TRUE(unset.empty()) << "not in the fixture: " << *unset.begin();
  std::vector<at::Tensor> levels;
  for (int i = 0; i < 3; ++i)
    levels.push_back(fixture().get(label + ".input." + std::to_string(i)));
  const at::NoGradGuard no_grad;
  const DecoderPredictions out =
      decoder->forward(levels, fixture().get(label + ".mask_features"), auxiliary);

  constexpr double kTolerance = 1e-4;
  ASSERT_EQ(static_cast<std::int64_t>(out.auxiliary.size()), auxiliary ? o.num_layers : 0);
  for (std::int64_t i = auxiliary ? 0 : o.num_layers; i <= o.num_layers; ++i) {
    const bool last = i == o.num_layers;
    const at::Tensor& cls = last ? out.class_logits : out.auxiliary[i].first;
    const at::Tensor& mask = last ? out.mask_logits : out.auxiliary[i].second;
    EXPECT_LT(max_abs_diff(cls, fixture().get(label + ".class." + std::to_string(i))), kTolerance)
        << "prediction " << i;
    EXPECT_LT(max_abs_diff(mask, fixture().get(label + ".mask." + std::to_string(i))), kTolerance)
        << "prediction " << i;
  }
  EXPECT_LT(max_abs_diff(out.query_embeddings, fixture().get(label + ".queries")), kTolerance);
}

// Post-norm, in_channels == hidden (no input projection), 4 blocks: the levels cycle.
TEST(MaskedDecoderParity, PostNorm) { check_parity("post"); }
// Pre-norm with 1x1 input projections.
TEST(MaskedDecoderParity, PreNormWithInputProjection) { check_parity("pre"); }
// Inference without the deep supervision: the attention masks predicted at each level's size
// from resized mask features give the original's final prediction (a wrong level size, resize
// or order would change which keys are blocked, and the fixture blocks keys at every block).
TEST(MaskedDecoderParity, PostNormWithoutAuxiliaryPredictions) { check_parity("post", false); }
TEST(MaskedDecoderParity, PreNormWithoutAuxiliaryPredictions) { check_parity("pre", false); }

TEST(MaskedDecoder, ShapesAndAuxiliaryCount) {
  at::manual_seed(1);
  auto o = small_options();
  o.in_channels = 12;  // with input projections
  MaskedTransformerDecoder decoder(o);
  const DecoderPredictions out = decoder->forward(small_levels(2, 12), at::randn({2, 8, 9, 11}));
  EXPECT_EQ(out.class_logits.sizes(), (at::IntArrayRef{2, 5, 4}));
  EXPECT_EQ(out.mask_logits.sizes(), (at::IntArrayRef{2, 5, 9, 11}));
  EXPECT_EQ(out.query_embeddings.sizes(), (at::IntArrayRef{2, 5, 16}));
  ASSERT_EQ(out.auxiliary.size(), 4u);
  for (const auto& [c, m] : out.auxiliary) {
    EXPECT_EQ(c.sizes(), out.class_logits.sizes());
    EXPECT_EQ(m.sizes(), out.mask_logits.sizes());
  }
  // The first auxiliary prediction is on the bare learned queries: the same for every image.
  EXPECT_TRUE(at::allclose(out.auxiliary[0].first[0], out.auxiliary[0].first[1]));
  EXPECT_FALSE(at::allclose(out.class_logits[0], out.class_logits[1]));
}

// The R50 COCO instance model's decoder: the original's 175 tensors, 14,479,441 parameters
// (counted on the fixture script's reference with the same settings), and a forward at paper
// width on small maps.
TEST(MaskedDecoder, PaperSize) {
  MaskedTransformerDecoder decoder{TransformerDecoderOptions()};
  std::int64_t count = 0;
  for (const auto& p : decoder->parameters()) count += p.numel();
  EXPECT_EQ(decoder->parameters().size(), 175u);
  EXPECT_EQ(count, 14479441);
  const at::NoGradGuard no_grad;
  const DecoderPredictions out = decoder->forward(
      {at::randn({1, 256, 2, 2}), at::randn({1, 256, 4, 4}), at::randn({1, 256, 8, 8})},
      at::randn({1, 256, 16, 16}));
  EXPECT_EQ(out.class_logits.sizes(), (at::IntArrayRef{1, 100, 81}));
  EXPECT_EQ(out.mask_logits.sizes(), (at::IntArrayRef{1, 100, 16, 16}));
  EXPECT_EQ(out.auxiliary.size(), 9u);
  EXPECT_TRUE(at::isfinite(out.mask_logits).all().item<bool>());
}

TEST(MaskedDecoder, StateDictNamesAreTheOriginals) {
  auto o = small_options();
  o.in_channels = 12;
  MaskedTransformerDecoder decoder(o);
  const auto params = decoder->named_parameters();
  for (const char* name :
       {"transformer_cross_attention_layers.3.multihead_attn.in_proj_weight",
        "transformer_self_attention_layers.0.self_attn.out_proj.bias",
        "transformer_ffn_layers.2.linear1.weight", "transformer_ffn_layers.2.norm.bias",
        "decoder_norm.weight", "query_feat.weight", "query_embed.weight", "level_embed.weight",
        "input_proj.2.weight", "class_embed.weight", "mask_embed.layers.2.bias"}) {
    EXPECT_NE(params.find(name), nullptr) << name;
  }
  EXPECT_EQ(params["input_proj.0.weight"].sizes(), (at::IntArrayRef{16, 12, 1, 1}));
  EXPECT_EQ(params["transformer_cross_attention_layers.0.multihead_attn.in_proj_weight"].sizes(),
            (at::IntArrayRef{48, 16}));
  MaskedTransformerDecoder same(small_options());
  EXPECT_EQ(same->named_parameters().find("input_proj.0.weight"), nullptr);
}

// Keys a row blocks do not count: the output equals attention over the unblocked keys alone and
// does not move when the blocked keys' values change.
TEST(MaskedDecoder, AttentionMaskBlocksKeys) {
  at::manual_seed(2);
  MultiheadAttention attn(8, 2);
  const at::Tensor q = at::randn({1, 2, 8}), k = at::randn({1, 5, 8}), v = at::randn({1, 5, 8});
  at::Tensor mask = at::zeros({1, 2, 5}, at::kBool);
  mask[0][0].narrow(0, 0, 3).fill_(true);  // row 0 sees keys 3 and 4 only
  const at::NoGradGuard no_grad;
  const at::Tensor masked = attn->forward(q, k, v, mask);
  const at::Tensor subset = attn->forward(q.narrow(1, 0, 1), k.narrow(1, 3, 2), v.narrow(1, 3, 2));
  EXPECT_LT(max_abs_diff(masked[0][0], subset[0][0]), 1e-6);
  const at::Tensor unmasked = attn->forward(q, k, v);
  EXPECT_GT(max_abs_diff(masked[0][0], unmasked[0][0]), 1e-3);
  EXPECT_LT(max_abs_diff(masked[0][1], unmasked[0][1]), 1e-6);  // row 1 blocks nothing
  at::Tensor v2 = v.clone();
  v2[0].narrow(0, 0, 3).add_(5.0);
  at::Tensor k2 = k.clone();
  k2[0].narrow(0, 0, 3).mul_(-3.0);
  const at::Tensor moved = attn->forward(q, k2, v2, mask);
  EXPECT_LT(max_abs_diff(moved[0][0], masked[0][0]), 1e-6);
  EXPECT_GT(max_abs_diff(moved[0][1], masked[0][1]), 1e-3);
}

TEST(MaskedDecoder, AttentionMaskFromPrediction) {
  // 2x2 logits resized to 4x4 (align_corners false): the left column band is -1, the right +1.
  const at::Tensor logits = at::tensor({-1.0f, 1.0f, -1.0f, 1.0f}).view({1, 1, 2, 2});
  const at::Tensor mask = attention_mask_from_prediction(logits, 4, 4).view({4, 4});
  // Columns 0, 1 interpolate to -1 and -0.5 (blocked); 2, 3 to 0.5 and 1 (open).
  const at::Tensor expected_row = at::tensor({1, 1, 0, 0}).to(at::kBool);
  for (int r = 0; r < 4; ++r) EXPECT_TRUE(at::equal(mask[r], expected_row)) << r;
  EXPECT_FALSE(attention_mask_from_prediction(logits.requires_grad_(), 2, 2).requires_grad());
}

// A query whose mask blocks every key attends to all of them: the decoder's classes and queries
// are the same when every mask is negative everywhere (all rows fully blocked, then unblocked) as
// when every mask is positive (nothing blocked); masks that block part of the keys differ.
TEST(MaskedDecoder, FullyBlockedRowBehavesAsUnblocked) {
  at::manual_seed(3);
  MaskedTransformerDecoder decoder(small_options());
  const auto levels = small_levels(1, 16);
  auto& last = *decoder->mask_embed->layers->ptr<torch::nn::LinearImpl>(2);
  const auto run = [&](double bias, const at::Tensor& features) {
    {
      const at::NoGradGuard no_grad;
      last.weight.zero_();
      last.bias.fill_(bias);  // mask logit = bias * sum of the mask features' channels
    }
    return decoder->forward(levels, features);
  };
  const at::Tensor ones = at::ones({1, 8, 8, 8});
  const DecoderPredictions blocked = run(-1.0, ones), open = run(1.0, ones);
  EXPECT_TRUE(at::all(blocked.mask_logits < 0).item<bool>());
  EXPECT_TRUE(at::all(open.mask_logits > 0).item<bool>());
  EXPECT_LT(max_abs_diff(blocked.class_logits, open.class_logits), 1e-5);
  EXPECT_LT(max_abs_diff(blocked.query_embeddings, open.query_embeddings), 1e-5);
  at::Tensor half = ones.clone();
  half.narrow(3, 0, 4).fill_(-1.0);  // left half negative: part of the keys blocked
  const DecoderPredictions partial = run(1.0, half);
  EXPECT_GT(max_abs_diff(partial.class_logits, open.class_logits), 1e-3);
}

TEST(MaskedDecoder, SinePositionEmbedding) {
  const std::int64_t h = 3, w = 4, f = 4;
  const at::Tensor pos = sine_position_embedding(h, w, f, at::TensorOptions());
  ASSERT_EQ(pos.sizes(), (at::IntArrayRef{2 * f, h, w}));
  const double two_pi = 2 * M_PI;
  for (std::int64_t y = 0; y < h; ++y) {
    for (std::int64_t x = 0; x < w; ++x) {
      const double ey = (y + 1) / (h + 1e-6) * two_pi, ex = (x + 1) / (w + 1e-6) * two_pi;
      for (std::int64_t i = 0; i < f; ++i) {
        const double t = std::pow(10000.0, 2.0 * (i / 2) / f);
        const double vy = i % 2 == 0 ? std::sin(ey / t) : std::cos(ey / t);
        const double vx = i % 2 == 0 ? std::sin(ex / t) : std::cos(ex / t);
        EXPECT_NEAR(pos[i][y][x].item<double>(), vy, 1e-5) << i << " " << y << " " << x;
        EXPECT_NEAR(pos[f + i][y][x].item<double>(), vx, 1e-5) << i << " " << y << " " << x;
      }
    }
  }
}

TEST(MaskedDecoder, GradientsReachEveryParameter) {
  at::manual_seed(4);
  auto o = small_options();
  o.in_channels = 12;
  o.num_layers = 3;
  MaskedTransformerDecoder decoder(o);
  const DecoderPredictions out = decoder->forward(small_levels(2, 12), at::randn({2, 8, 6, 7}));
  at::Tensor loss = out.class_logits.square().sum() + out.mask_logits.square().sum();
  for (const auto& [c, m] : out.auxiliary) loss = loss + c.square().sum() + m.square().sum();
  loss.backward();
  for (const auto& item : decoder->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_TRUE(at::isfinite(item.value().grad()).all().item<bool>()) << item.key();
    EXPECT_GT(item.value().grad().abs().max().item<double>(), 0.0) << item.key();
  }
}

TEST(MaskedDecoder, ValidateNamesTheOption) {
  auto o = small_options();
  o.num_heads = 3;
  EXPECT_NE(test::thrown_message<ConfigError>([&] { o.validate(); }).find("num_heads"),
            std::string::npos);
  o = small_options();
  o.hidden_dim = 15;
  o.num_heads = 1;
  EXPECT_NE(test::thrown_message<ConfigError>([&] { o.validate(); }).find("hidden_dim"),
            std::string::npos);
  o = small_options();
  o.num_feature_levels = 0;
  EXPECT_NE(test::thrown_message<ConfigError>([&] {
              MaskedTransformerDecoder d(o);
            }).find("num_feature_levels"),
            std::string::npos);
  EXPECT_NO_THROW(TransformerDecoderOptions().validate());
  MaskedTransformerDecoder decoder(small_options());
  EXPECT_THROW(decoder->forward({at::randn({1, 16, 2, 2})}, at::randn({1, 8, 4, 4})), Error);
}

}  // namespace
}  // namespace wico::topdown
