#include "wico/wico/gsi.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_util.h"
#include "wico/core/error.h"
#include "wico/wico/integration.h"

namespace wico::model {
namespace {

using torch::indexing::Slice;

// One sample, three candidate masks of 2, 4 and 1 pixels on a 2x2 image.
torch::Tensor three_masks() {
  auto masks = torch::zeros({1, 3, 2, 2});
  masks.index_put_({0, 0, 0, Slice()}, 1.0);  // 2 pixels
  masks.index_put_({0, 1}, 1.0);              // 4 pixels
  masks.index_put_({0, 2, 1, 1}, 1.0);        // 1 pixel
  return masks;
}

TEST(Gsi, StraightThroughTopDownHasEq1sValueAndPassesGradientsToEveryScore) {
  const auto masks = three_masks();
  auto scores = torch::tensor({{0.2f, 0.5f, 0.3f}}, torch::requires_grad());
  const auto p = straight_through_top_down(masks, scores);
  EXPECT_TRUE(torch::allclose(p, 0.5f * masks.narrow(1, 1, 1)));  // m^argmax * s^argmax
  p.sum().backward();
  // d/ds_j sum(m_j * lambda_j * s_j) = |m_j| * (onehot_j + s_j): the straight-through term.
  const auto expected = torch::tensor({{2 * 0.2f, 4 * (1 + 0.5f), 1 * 0.3f}});
  EXPECT_TRUE(torch::allclose(scores.grad(), expected)) << scores.grad();
}

TEST(Gsi, ScoresAreSampledWithTheReparameterisationTrickUnderASeed) {
  const auto head = torch::tensor({{0.6f, std::log(0.1f)}, {-0.3f, std::log(0.2f)}});
  torch::manual_seed(7);
  const auto a = score_branch(head, true);
  torch::manual_seed(7);
  const auto eps = torch::randn({2});
  const auto mu = torch::tensor({0.6f, -0.3f}).sigmoid();  // an IoU in [0, 1]
  EXPECT_TRUE(torch::allclose(a.mu, mu));
  EXPECT_TRUE(torch::allclose(a.sampled, mu + torch::tensor({0.1f, 0.2f}) * eps));
  torch::manual_seed(7);
  EXPECT_TRUE(torch::equal(score_branch(head, true).sampled, a.sampled));
  const auto at_eval = score_branch(head, false);
  EXPECT_TRUE(torch::equal(at_eval.sampled, at_eval.mu));
  const auto si = score_branch(torch::tensor({{0.4f}, {0.9f}}), true);  // one value: no sampling
  EXPECT_FALSE(si.log_sigma.defined());
  EXPECT_TRUE(torch::allclose(si.sampled, torch::tensor({0.4f, 0.9f}).sigmoid()));
}

TEST(Gsi, SampledScoresCarryGradientsToMuAndSigma) {
  auto head = torch::tensor({{0.5f, -1.0f}}, torch::requires_grad());
  torch::manual_seed(3);
  const auto s = score_branch(head, true);
  s.sampled.sum().backward();
  torch::manual_seed(3);
  const float eps = torch::randn({1}).item<float>();
  const float sig = 1.0f / (1.0f + std::exp(-0.5f));
  EXPECT_FLOAT_EQ(head.grad()[0][0].item<float>(), sig * (1 - sig));
  EXPECT_NEAR(head.grad()[0][1].item<float>(), std::exp(-1.0f) * eps, 1e-6);
}

TEST(Gsi, BlendIsEq12WithConfidencesClampedToZeroOne) {
  const auto p_td = torch::full({2, 1, 1, 2}, 1.0f, torch::requires_grad());
  const auto p_bu = torch::full({2, 1, 1, 2}, 0.5f);
  auto iou_td = torch::tensor({0.8f, 0.2f}, torch::requires_grad());
  const auto out = blend(p_td, iou_td, p_bu, torch::tensor({-0.4f, 1.3f}));  // clamped to 0 and 1
  EXPECT_FLOAT_EQ(out[0][0][0][0].item<float>(), 0.8f / 2);
  EXPECT_FLOAT_EQ(out[1][0][0][1].item<float>(), (0.2f + 0.5f) / 2);
  out.sum().backward();
  // d/d IoU_td = sum of P_td / 2 over the sample's 2 pixels; d/d P_td = IoU_td / 2.
  EXPECT_TRUE(torch::allclose(iou_td.grad(), torch::tensor({1.0f, 1.0f})));
  EXPECT_FLOAT_EQ(p_td.grad()[0][0][0][0].item<float>(), 0.4f);
}

TEST(Gsi, BinaryTopDownMapIsTheChosenMaskAndStillPassesGradientsToEveryScore) {
  const auto masks = three_masks();
  auto scores = torch::tensor({{0.2f, 0.5f, 0.3f}}, torch::requires_grad());
  const auto p = straight_through_top_down(masks, scores, TopDownMap::kBinary);
  EXPECT_TRUE(torch::equal(p, masks.narrow(1, 1, 1)));  // m^argmax, on the 0-1 scale
  p.sum().backward();
  // d/ds_j sum(m_j * lambda_j) = |m_j|: the straight-through term alone.
  EXPECT_TRUE(torch::allclose(scores.grad(), torch::tensor({{2.0f, 4.0f, 1.0f}}))) << scores.grad();
  EXPECT_EQ(parse_top_down_map("score"), TopDownMap::kScore);
  const auto message = test::thrown_message<ConfigError>([] { parse_top_down_map("soft"); });
  EXPECT_NE(message.find("wico.td_map 'soft'"), std::string::npos) << message;
}

TEST(Gsi, NormalisedBlendIsAWeightedMeanAndAverageAtEqualConfidences) {
  const auto p_td = torch::tensor({1.0f, 0.0f, 1.0f}).view({3, 1, 1, 1});
  const auto p_bu = torch::tensor({0.2f, 0.9f, 0.6f}).view({3, 1, 1, 1});
  auto c_td = torch::tensor({0.8f, 0.5f, 0.0f}, torch::requires_grad());
  const auto c_bu = torch::tensor({0.2f, 0.5f, 0.0f});
  const auto out = blend(p_td, c_td, p_bu, c_bu, Blend::kNormalised);
  // (0.8 * 1 + 0.2 * 0.2) / 1.0; equal confidences: the mean; both 0: the mean (the floor).
  EXPECT_NEAR(out[0].item<float>(), 0.84f, 1e-4);
  EXPECT_NEAR(out[1].item<float>(), 0.45f, 1e-6);
  EXPECT_NEAR(out[2].item<float>(), 0.8f, 1e-6);
  // The paper's blend on the same inputs is never above their average (here half of it and less).
  const auto paper = blend(p_td, c_td, p_bu, c_bu, Blend::kPaper);
  EXPECT_NEAR(paper[0].item<float>(), (0.8f + 0.04f) / 2, 1e-6);
  EXPECT_NEAR(paper[1].item<float>(), 0.225f, 1e-6);
  EXPECT_FLOAT_EQ(paper[2].item<float>(), 0.0f);
  // d out_0 / d c_td = (P_td - P_bu) * c_bu / (c_td + c_bu)^2 = 0.8 * 0.2 = 0.16 (floor aside).
  out[0].sum().backward();
  EXPECT_NEAR(c_td.grad()[0].item<float>(), 0.16f, 1e-3);
  EXPECT_EQ(parse_blend("paper"), Blend::kPaper);
  const auto message = test::thrown_message<ConfigError>([] { parse_blend("mean"); });
  EXPECT_NE(message.find("wico.blend 'mean'"), std::string::npos) << message;
}

TEST(Gsi, CandidateScoreStatisticsByHand) {
  const auto scores = torch::tensor({{0.5f, 0.3f, 0.2f}, {0.9f, 0.1f, 0.0f}});
  const auto valid = torch::tensor({{true, true, true}, {true, true, false}});
  const auto s = candidate_score_statistics(scores, valid);
  const float h0 = -(0.5f * std::log(0.5f) + 0.3f * std::log(0.3f) + 0.2f * std::log(0.2f));
  const float h1 = -(0.9f * std::log(0.9f) + 0.1f * std::log(0.1f));
  EXPECT_TRUE(torch::allclose(s, torch::tensor({{0.5f, 0.2f, h0}, {0.9f, 0.8f, h1}}), 1e-5, 1e-6)) << s;
}

TEST(Gsi, LogSigmaStartsAtItsInitialValueForEveryInput) {
  torch::manual_seed(0);
  ScoreHead head(6, 8, true, -3.0);
  const auto out = head->forward(torch::randn({5, 6}));
  EXPECT_TRUE(torch::allclose(out.select(1, 1), torch::full({5}, -3.0f)));
  EXPECT_GT(out.select(1, 0).std().item<float>(), 0.0f);  // mu still depends on the input
}

TEST(Gsi, BinarisedIouIsTheTargetOfTheRegression) {
  auto p = torch::zeros({3, 1, 2, 2});
  auto t = torch::zeros({3, 1, 2, 2});
  p.index_put_({0, 0, 0}, 0.9f);  // top row predicted
  t.index_put_({0, 0, Slice(), 0}, 1.0f);  // left column true: I = 1, U = 3
  p.index_put_({1, 0, 1, 1}, 0.3f);  // below tau: empty against one true pixel
  t.index_put_({1, 0, 1, 1}, 1.0f);
  const auto iou = binarised_iou(p, t, 0.35);  // sample 2: empty against empty
  EXPECT_TRUE(torch::allclose(iou, torch::tensor({1.0f / 3, 0.0f, 1.0f})));
}

TEST(Integration, FixedRulesAndNames) {
  const auto a = torch::tensor({0.0f, 1.0f, 1.0f}).view({1, 1, 1, 3});
  const auto b = torch::tensor({0.6f, 0.2f, 0.9f}).view({1, 1, 1, 3});
  EXPECT_TRUE(torch::allclose(combine_fixed(Integration::kIntersection, a, b), torch::tensor({0.0f, 0.2f, 0.9f}).view({1, 1, 1, 3})));
  EXPECT_TRUE(torch::allclose(combine_fixed(Integration::kUnion, a, b), torch::tensor({0.6f, 1.0f, 1.0f}).view({1, 1, 1, 3})));
  EXPECT_TRUE(torch::allclose(combine_fixed(Integration::kAverage, a, b), torch::tensor({0.3f, 0.6f, 0.95f}).view({1, 1, 1, 3})));
  for (const char* name : {"intersection", "union", "average", "si", "gsi"}) {
    EXPECT_EQ(integration_name(parse_integration(name)), name);
  }
  const auto message = test::thrown_message<ConfigError>([] { parse_integration("mean"); });
  EXPECT_NE(message.find("wico.integration 'mean'"), std::string::npos) << message;
  EXPECT_TRUE(learns_confidences(Integration::kScore));
  EXPECT_FALSE(learns_confidences(Integration::kAverage));
}

}  // namespace
}  // namespace wico::model
