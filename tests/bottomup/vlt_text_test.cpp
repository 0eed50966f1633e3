// VLT's text branch against a numpy implementation of Keras 2.3.1's documented GRU
// (reset_after=False, sigmoid gates, [z | r | h] blocks, no masking), the summed bidirectional
// merge and the per-channel word attention (scripts/make_vlt_text_fixtures.py), with a padded
// sentence that the backward GRU reads pads first; the GRU cell by hand; dropout's one mask per
// sequence; the paper-size parameter counts of ../shared/specs/vlt.md section 10.
#include "wico/bottomup/vlt/text_encoder.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "backbones/tensor_fixture.h"
#include "test_util.h"

namespace wico::bottomup::vlt {
namespace {

using test::max_abs_diff;
using test::TensorFixture;

const TensorFixture& fixture() {
  static const TensorFixture f(std::filesystem::path(WICO_TEST_DATA_DIR) / "vlt_text" /
                               "vlt_text");
  return f;
}

TEST(VltText, MatchesKerasFormulasWithPaddedSentences) {
  const auto& meta = fixture().meta();
  VltTextEncoder encoder(meta.at("input_dim").get<std::int64_t>(),
                         meta.at("units").get<std::int64_t>(), 0.1);
  const auto unset = fixture().load_into(*encoder, "weights.");
  EXPECT_TRUE(unset.empty()) << *unset.begin();
  encoder->eval();  // no dropout
  const at::NoGradGuard no_grad;
  const at::Tensor x = fixture().get("input");
  EXPECT_LT(max_abs_diff(encoder->forward_gru->forward(x), fixture().get("forward_states")), 1e-5);
  const VltTextOutput out = encoder->forward(x);
  EXPECT_LT(max_abs_diff(out.words, fixture().get("words")), 1e-5);
  EXPECT_LT(max_abs_diff(out.sentence, fixture().get("sentence")), 1e-5);
  // The pads are states like any other: the padded sentence's last outputs are not zero.
  EXPECT_GT(out.words[1][6].abs().sum().item<double>(), 0.1);
}

// One step by hand from h = 0 with one unit: z = sig(x wz + bz), r irrelevant (h = 0),
// h~ = tanh(x wh + bh), h' = (1 - z) h~; the second step uses r.
TEST(VltText, GruCellByHand) {
  KerasGru gru(1, 1);
  {
    const at::NoGradGuard no_grad;
    gru->kernel.copy_(at::tensor({0.5f, -1.0f, 2.0f}).view({1, 3}));  // [z | r | h]
    gru->recurrent_kernel.copy_(at::tensor({0.3f, 0.7f, -0.4f}).view({1, 3}));
    gru->bias.copy_(at::tensor({0.1f, 0.2f, -0.3f}));
  }
  const at::NoGradGuard no_grad;
  const at::Tensor out = gru->forward(at::tensor({1.0f, -2.0f}).view({1, 2, 1}));
  const auto sig = [](double v) { return 1 / (1 + std::exp(-v)); };
  const double z1 = sig(0.5 + 0.1), h1 = (1 - z1) * std::tanh(2.0 - 0.3);
  const double z2 = sig(-1.0 + 0.1 + 0.3 * h1), r2 = sig(2.0 + 0.2 + 0.7 * h1);
  const double h2 = z2 * h1 + (1 - z2) * std::tanh(-4.0 - 0.3 + (r2 * h1) * -0.4);
  EXPECT_NEAR(out[0][0][0].item<double>(), h1, 1e-6);
  EXPECT_NEAR(out[0][1][0].item<double>(), h2, 1e-6);
  // Read backwards: the last step first, its outputs in the order produced.
  const at::Tensor back = gru->forward(at::tensor({-2.0f, 1.0f}).view({1, 2, 1}), true);
  EXPECT_NEAR(back[0][0][0].item<double>(), h1, 1e-6);
  EXPECT_NEAR(back[0][1][0].item<double>(), h2, 1e-6);
}

// Keras's GRU dropout: one Bernoulli mask on the input per sequence, the same at every step, in
// training only. With the same word at every step, every step sees the same masked input.
TEST(VltText, DropoutIsOneMaskPerSequence) {
  torch::manual_seed(4);
  KerasGru gru(64, 3, 0.5);
  gru->train();
  const at::Tensor x = at::ones({2, 4, 64});
  const at::NoGradGuard no_grad;
  // A GRU whose state does not feed back (zero recurrent kernel) and with z = 0 (bias -inf on
  // z): every step's output is tanh(masked x Wh + bh), identical across steps iff the mask is.
  gru->recurrent_kernel.zero_();
  gru->bias.narrow(0, 0, 3).fill_(-1e4);
  const at::Tensor out = gru->forward(x);
  for (std::int64_t t = 1; t < 4; ++t) {
    EXPECT_TRUE(at::allclose(out.select(1, t), out.select(1, 0))) << "step " << t;
  }
  gru->eval();
  const at::Tensor clean = gru->forward(x);
  EXPECT_FALSE(at::allclose(out, clean));  // the mask did something in training
}

// ../shared/specs/vlt.md section 10: Bi-GRU 2 x (300*3072 + 1024*3072 + 3072) = 8,140,800;
// word-attention Dense 1024 -> 1024 = 1,049,600.
TEST(VltText, PaperSizeParameterCounts) {
  VltTextEncoder encoder;
  std::int64_t gru = 0;
  for (const auto& p : encoder->forward_gru->parameters()) gru += p.numel();
  for (const auto& p : encoder->backward_gru->parameters()) gru += p.numel();
  EXPECT_EQ(gru, 8140800);
  std::int64_t dense = 0;
  for (const auto& p : encoder->attention->parameters()) dense += p.numel();
  EXPECT_EQ(dense, 1049600);
}

}  // namespace
}  // namespace wico::bottomup::vlt
