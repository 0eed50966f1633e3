#include "wico/eval/metrics.h"

#include <gtest/gtest.h>

#include <cmath>

#include <random>

#include "wico/core/error.h"
#include "wico/data/coco_mask.h"

namespace wico::eval {
namespace {

cv::Mat1b mask_from(const std::vector<int>& bits, int w) {
  cv::Mat1b m(static_cast<int>(bits.size()) / w, w);
  for (std::size_t i = 0; i < bits.size(); ++i) m(static_cast<int>(i) / w, static_cast<int>(i) % w) = bits[i];
  return m;
}

TEST(Metrics, OverlapCountsPixels) {
  const auto p = mask_from({1, 1, 0, 0, 1, 0}, 3);
  const auto t = mask_from({1, 0, 0, 1, 1, 1}, 3);
  const Overlap o = overlap(p, t);
  EXPECT_EQ(o.intersection, 2u);
  EXPECT_EQ(o.union_, 5u);
  EXPECT_THROW(overlap(p, mask_from({1, 0}, 2)), Error);
}

// The evaluator counts on runs; the counts must be the pixel counts exactly, or every figure moves.
TEST(Metrics, OverlapOnRunsEqualsOverlapOnPixels) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> side(1, 48);
  std::uniform_real_distribution<double> u(0, 1);
  auto random_mask = [&](int h, int w) {
    cv::Mat1b m = cv::Mat1b::zeros(h, w);
    const double kind = u(rng);
    if (kind < 0.15) return m;                                   // empty
    if (kind < 0.25) return cv::Mat1b(cv::Mat1b::ones(h, w));    // full
    if (kind < 0.6) {                                            // noise of any density
      const double p = u(rng);
      for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) m(y, x) = u(rng) < p;
      }
      return m;
    }
    for (int k = 0; k < 3; ++k) {                                // blobs
      const int x = int(u(rng) * w), y = int(u(rng) * h);
      m(cv::Rect(x, y, 1 + int(u(rng) * (w - x)), 1 + int(u(rng) * (h - y))) &
        cv::Rect(0, 0, w, h)) = 1;
    }
    return m;
  };
  int empty_pairs = 0;
  for (int trial = 0; trial < 500; ++trial) {
    const int h = trial % 10 == 0 ? 1 : side(rng), w = trial % 10 == 1 ? 1 : side(rng);
    const cv::Mat1b a = random_mask(h, w), b = random_mask(h, w);
    empty_pairs += cv::countNonZero(a) == 0 && cv::countNonZero(b) == 0;
    const Overlap pixels = overlap(a, b);
    const Overlap runs = overlap(data::rle_encode(a), data::rle_encode(b));
    ASSERT_EQ(runs.intersection, pixels.intersection) << "trial " << trial;
    ASSERT_EQ(runs.union_, pixels.union_) << "trial " << trial;
    // And therefore the same IoU, bit for bit, under every definition.
    for (auto c : {MetricCompat::kDefault, MetricCompat::kCris, MetricCompat::kVlt}) {
      ASSERT_EQ(sample_iou(runs, c), sample_iou(pixels, c));
    }
  }
  EXPECT_GT(empty_pairs, 0);  // the empty/empty case was met
  // Non-canonical counts (zero-length runs, as rle_merge may leave them) count the same.
  const data::Rle odd{3, 4, {0, 2, 0, 3, 4, 0, 3}};
  const data::Rle other = data::rle_encode(random_mask(3, 4));
  const Overlap runs = overlap(odd, other), pixels = overlap(data::rle_decode(odd),
                                                            data::rle_decode(other));
  EXPECT_EQ(runs.intersection, pixels.intersection);
  EXPECT_EQ(runs.union_, pixels.union_);
  EXPECT_THROW(overlap(odd, data::rle_encode(cv::Mat1b::zeros(4, 3))), Error);
}

TEST(Metrics, EachCompatDefinitionOnHandComputedCases) {
  const Overlap half{1, 2}, empty_empty{0, 0}, miss{0, 7};
  EXPECT_DOUBLE_EQ(sample_iou(half, MetricCompat::kDefault), 0.5);
  EXPECT_DOUBLE_EQ(sample_iou(half, MetricCompat::kLavt), 0.5);
  EXPECT_DOUBLE_EQ(sample_iou(half, MetricCompat::kCris), 1.0 / (2.0 + 1e-6));
  EXPECT_DOUBLE_EQ(sample_iou(half, MetricCompat::kVlt), (1.0 + 1e-10) / (2.0 + 1e-10));
  // Empty prediction and empty target.
  EXPECT_DOUBLE_EQ(sample_iou(empty_empty, MetricCompat::kDefault), 1.0);
  EXPECT_DOUBLE_EQ(sample_iou(empty_empty, MetricCompat::kLavt), 0.0);
  EXPECT_DOUBLE_EQ(sample_iou(empty_empty, MetricCompat::kCris), 0.0);
  EXPECT_DOUBLE_EQ(sample_iou(empty_empty, MetricCompat::kVlt), 1.0);
  // Empty prediction, non-empty target.
  for (auto c : {MetricCompat::kDefault, MetricCompat::kLavt, MetricCompat::kCris}) {
    EXPECT_DOUBLE_EQ(sample_iou(miss, c), 0.0);
  }
  EXPECT_NEAR(sample_iou(miss, MetricCompat::kVlt), 0.0, 1e-10);
}

TEST(Metrics, PrecisionIsStrictExceptForLavt) {
  EXPECT_FALSE(counts_at(0.5, 0.5, MetricCompat::kDefault));
  EXPECT_TRUE(counts_at(0.5, 0.5, MetricCompat::kLavt));
  EXPECT_FALSE(counts_at(0.5, 0.5, MetricCompat::kCris));
  EXPECT_TRUE(counts_at(0.51, 0.5, MetricCompat::kVlt));
}

TEST(Metrics, SummaryOfThreeSamples) {
  MetricAccumulator acc;
  acc.add({50, 100});   // 0.5
  acc.add({90, 100});   // 0.9
  acc.add({0, 800});    // 0.0
  const MetricSummary s = acc.summary();
  EXPECT_EQ(s.samples, 3);
  EXPECT_DOUBLE_EQ(s.miou, 1.4 / 3);
  EXPECT_DOUBLE_EQ(s.oiou, 140.0 / 1000.0);  // large unions weigh more in oIoU
  EXPECT_DOUBLE_EQ(s.precision[0], 1.0 / 3);  // only 0.9 > 0.5
  EXPECT_DOUBLE_EQ(s.precision[4], 0.0);      // 0.9 is not > 0.9
  MetricAccumulator lavt(MetricCompat::kLavt);
  lavt.add({50, 100});
  lavt.add({90, 100});
  EXPECT_DOUBLE_EQ(lavt.summary().precision[0], 1.0);
  EXPECT_DOUBLE_EQ(lavt.summary().precision[4], 0.5);  // 0.9 >= 0.9
  EXPECT_EQ(MetricAccumulator().summary().samples, 0);
}

TEST(Metrics, PearsonAndSpearmanByHand) {
  // y = 2x + 1: r = 1; reversed: -1.
  EXPECT_NEAR(pearson_correlation({1, 2, 3, 4}, {3, 5, 7, 9}), 1.0, 1e-12);
  EXPECT_NEAR(pearson_correlation({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0, 1e-12);
  // x = (1, 2, 3), y = (1, 3, 2): deviations (-1, 0, 1) and (-1, 1, 0): r = 1 / 2.
  EXPECT_NEAR(pearson_correlation({1, 2, 3}, {1, 3, 2}), 0.5, 1e-12);
  // Monotone but not linear: Spearman 1, Pearson below 1.
  EXPECT_NEAR(spearman_correlation({1, 2, 3, 4}, {1, 10, 100, 1000}), 1.0, 1e-12);
  EXPECT_LT(pearson_correlation({1, 2, 3, 4}, {1, 10, 100, 1000}), 0.9);
  // Ties share their mean rank: x ranks (1, 2.5, 2.5, 4), y ranks (1, 2, 3, 4):
  // deviations (-1.5, 0, 0, 1.5) and (-1.5, -0.5, 0.5, 1.5): r = 4.5 / sqrt(4.5 * 5).
  EXPECT_NEAR(spearman_correlation({0.1, 0.5, 0.5, 0.9}, {1, 2, 3, 4}), 4.5 / std::sqrt(4.5 * 5), 1e-12);
  EXPECT_TRUE(std::isnan(pearson_correlation({1, 1, 1}, {1, 2, 3})));  // constant: undefined
  EXPECT_TRUE(std::isnan(pearson_correlation({1}, {2})));
  EXPECT_THROW(pearson_correlation({1, 2}, {1}), Error);
}

TEST(Metrics, ErrorAnalysisRates) {
  const std::vector<double> a = {0.0, 0.04, 0.5, 0.79, 0.8, 0.95};
  EXPECT_DOUBLE_EQ(pn_rate(a), 2.0 / 6);
  EXPECT_DOUBLE_EQ(ip_rate(a), 2.0 / 6);  // 0.5 and 0.79
  const std::vector<double> b = {0.9, 0.0, 0.6, 0.2, 0.9, 0.1};
  // Exactly one above 0.5: samples 0 (b), 3 (a), 5 (a); 2: a = 0.5 is not > 0.5, b is: counts.
  EXPECT_DOUBLE_EQ(mutual_error_rate(a, b), 4.0 / 6);
  EXPECT_THROW(mutual_error_rate(a, {0.1}), Error);
  const auto h = iou_histogram({0.0, 0.05, 0.99, 1.0}, 10);
  EXPECT_EQ(h[0], 2);
  EXPECT_EQ(h[9], 2);
  EXPECT_THROW(parse_compat("mattnet"), ConfigError);
}

}  // namespace
}  // namespace wico::eval
