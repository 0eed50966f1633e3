// Mask2Former's set criterion, Hungarian matcher and instance inference: the point losses and
// costs on hand-computed cases, point sampling, matching against brute force and known
// permutations, the no-object weighting, normalisation and deep-supervision sums, images without
// instances, and detect_instances on hand-built logits.
#include "wico/topdown/mask2former/criterion.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "test_util.h"
#include "wico/core/error.h"
#include "wico/topdown/mask2former/inference.h"

namespace wico::topdown {
namespace {

double value(const at::Tensor& t) { return t.item<double>(); }

// Ground truth of one image per entry: masks [n, h, w] and classes; padded to the longest with
// valid = false (and zero masks).
InstanceCandidates make_targets(const std::vector<at::Tensor>& masks,
                                const std::vector<std::vector<std::int64_t>>& classes,
                                std::int64_t h, std::int64_t w) {
  std::int64_t n = 0;
  for (const auto& c : classes) n = std::max<std::int64_t>(n, c.size());
  const auto batch = static_cast<std::int64_t>(masks.size());
  InstanceCandidates t;
  t.masks = at::zeros({batch, n, h, w});
  t.classes = at::zeros({batch, n}, at::kLong);
  t.valid = at::zeros({batch, n}, at::kBool);
  for (std::int64_t b = 0; b < batch; ++b) {
    const auto k = static_cast<std::int64_t>(classes[b].size());
    if (k == 0) continue;
    t.masks[b].narrow(0, 0, k).copy_(masks[b]);
    t.classes[b].narrow(0, 0, k).copy_(at::tensor(classes[b], at::kLong));
    t.valid[b].narrow(0, 0, k).fill_(true);
  }
  t.boxes = boxes_of_masks(t.masks);
  t.scores = t.valid.to(at::kFloat);
  return t;
}

// Three distinct 16x16 masks: a left band, a top band, a bottom-right block.
at::Tensor three_masks() {
  at::Tensor m = at::zeros({3, 16, 16});
  m[0].narrow(1, 0, 5).fill_(1);
  m[1].narrow(0, 0, 4).fill_(1);
  m[2].narrow(0, 9, 7).narrow(1, 8, 8).fill_(1);
  return m;
}

CriterionOptions small_criterion() {
  CriterionOptions o;
  o.num_classes = 4;
  o.num_points = 256;
  return o;
}

// Logits [Q, h, w] that agree with `masks` (area-averaged to h x w, 8 (2 a - 1)) for the queries in
// `order` (query order[j] predicts target j) and class logits favouring that target's class;
// other queries predict no object with noise masks.
std::pair<at::Tensor, at::Tensor> perfect_predictions(const at::Tensor& masks,
                                                      const std::vector<std::int64_t>& classes,
                                                      const std::vector<std::int64_t>& order,
                                                      std::int64_t queries,
                                                      std::int64_t num_classes, std::int64_t h) {
  at::Tensor cls = at::zeros({queries, num_classes + 1});
  at::Tensor mask = at::randn({queries, h, h});
  cls.select(1, num_classes).fill_(6.0);
  const std::int64_t f = masks.size(-1) / h;
  const at::Tensor small = at::avg_pool2d(masks.unsqueeze(0), {f, f})[0];  // [n, h, h]
  for (std::size_t j = 0; j < order.size(); ++j) {
    cls[order[j]].zero_();
    cls[order[j]][classes[j]].fill_(6.0);
    mask[order[j]].copy_(8.0 * (2 * small[j] - 1));
  }
  return {cls, mask};
}

// ---- point losses and costs --------------------------------------------------------------------

TEST(SetCriterionLosses, DiceHandComputed) {
  const double l3 = std::log(3.0);
  const at::Tensor logits = at::tensor({0.0, 0.0, l3, -l3}).view({2, 2}).to(at::kFloat);
  const at::Tensor targets = at::tensor({1.0f, 0.0f, 1.0f, 1.0f}).view({2, 2});
  // Row 0: sigmoid 0.5, 0.5: 1 - (2 * 0.5 + 1) / (1 + 1 + 1) = 1/3. Row 1: 0.75, 0.25 against
  // 1, 1: 1 - (2 * 1 + 1) / (1 + 2 + 1) = 1/4. Sum / 2 masks.
  EXPECT_NEAR(value(dice_loss(logits, targets, 2.0)), (1.0 / 3 + 1.0 / 4) / 2, 1e-6);
  const at::Tensor cost = batch_dice_cost(logits, targets);
  ASSERT_EQ(cost.sizes(), (at::IntArrayRef{2, 2}));
  EXPECT_NEAR(value(cost[0][0]), 1.0 / 3, 1e-6);
  EXPECT_NEAR(value(cost[1][1]), 1.0 / 4, 1e-6);
  // Pred 0 (0.5, 0.5) vs target 1 (1, 1): 1 - (2 + 1) / (1 + 2 + 1) = 1/4.
  EXPECT_NEAR(value(cost[0][1]), 1.0 / 4, 1e-6);
  // Pred 1 (0.75, 0.25) vs target 0 (1, 0): 1 - (1.5 + 1) / (1 + 1 + 1) = 1/6.
  EXPECT_NEAR(value(cost[1][0]), 1.0 / 6, 1e-6);
}

TEST(SetCriterionLosses, SigmoidCrossEntropyHandComputed) {
  const double l3 = std::log(3.0), ln2 = std::log(2.0);
  const at::Tensor logits = at::tensor({0.0, l3}).view({1, 2}).to(at::kFloat);
  const at::Tensor targets = at::tensor({1.0f, 0.0f}).view({1, 2});
  // -log 0.5 and -log(1 - 0.75) = log 4: mean 1.5 log 2, divided by 3 masks.
  EXPECT_NEAR(value(sigmoid_ce_loss(logits, targets, 3.0)), 1.5 * ln2 / 3, 1e-6);
  const at::Tensor two = at::tensor({1.0f, 0.0f, 0.0f, 1.0f}).view({2, 2});
  const at::Tensor cost = batch_sigmoid_ce_cost(logits, two);
  ASSERT_EQ(cost.sizes(), (at::IntArrayRef{1, 2}));
  EXPECT_NEAR(value(cost[0][0]), 1.5 * ln2, 1e-6);
  // Against (0, 1): -log(1 - 0.5) and -log 0.75.
  EXPECT_NEAR(value(cost[0][1]), (ln2 - std::log(0.75)) / 2, 1e-6);
}

TEST(SetCriterionLosses, PointSampleIsBilinearAtPixelCentres) {
  const at::Tensor map = at::tensor({1.0f, 2.0f, 3.0f, 4.0f}).view({1, 1, 2, 2});
  // (x, y): the centre of pixel (0, 0), the middle of the map, the centre of pixel (row 0, col 1),
  // and a corner half outside (zeros padding: a quarter of pixel (0, 0)).
  const at::Tensor coords =
      at::tensor({0.25f, 0.25f, 0.5f, 0.5f, 0.75f, 0.25f, 0.0f, 0.0f}).view({1, 4, 2});
  const at::Tensor s = point_sample(map, coords);
  ASSERT_EQ(s.sizes(), (at::IntArrayRef{1, 1, 4}));
  EXPECT_NEAR(value(s[0][0][0]), 1.0, 1e-6);
  EXPECT_NEAR(value(s[0][0][1]), 2.5, 1e-6);
  EXPECT_NEAR(value(s[0][0][2]), 2.0, 1e-6);
  EXPECT_NEAR(value(s[0][0][3]), 0.25, 1e-6);
}

TEST(SetCriterionLosses, ImportanceSamplingPicksUncertainPoints) {
  at::manual_seed(5);
  // Logit 0 on the left half (columns 0, 1), 10 on the right: interpolated logits are exactly 0
  // for x <= 0.375 (up to column 1's centre).
  at::Tensor logits = at::full({2, 1, 4, 4}, 10.0f);
  logits.narrow(3, 0, 2).zero_();
  const at::Tensor coords = uncertain_point_coords(logits, 16, 10.0, 0.75);
  ASSERT_EQ(coords.sizes(), (at::IntArrayRef{2, 16, 2}));
  const at::Tensor sampled = point_sample(logits, coords).squeeze(1);  // [2, 16]
  // The first 12 (importance) points have the least |logit|: 0.
  EXPECT_TRUE(at::equal(sampled.narrow(1, 0, 12), at::zeros({2, 12})));
  EXPECT_TRUE((coords.narrow(1, 0, 12).select(2, 0) <= 0.375f).all().item<bool>());
  EXPECT_TRUE(((coords >= 0) & (coords < 1)).all().item<bool>());
  // The 4 random ones are uniform: over many draws they land right of 0.375 most of the time.
  const at::Tensor many = uncertain_point_coords(logits, 400, 3.0, 0.0);
  EXPECT_GT(value((many.select(2, 0) > 0.375f).to(at::kFloat).mean()), 0.5);
}

// ---- matching ----------------------------------------------------------------------------------

TEST(SetCriterionMatching, PermutationOfTheTargetsIsRecovered) {
  at::manual_seed(6);
  const auto opts = small_criterion();
  const std::vector<std::int64_t> classes = {2, 0, 2}, order = {4, 1, 3};
  const auto [cls, mask] = perfect_predictions(three_masks(), classes, order, 6, 4, 8);
  // Image 1: the same targets behind a padding entry at index 1 (valid false).
  at::Tensor padded = at::zeros({4, 16, 16});
  padded[0].copy_(three_masks()[0]);
  padded.narrow(0, 2, 2).copy_(three_masks().narrow(0, 1, 2));
  InstanceCandidates targets =
      make_targets({three_masks(), padded}, {classes, {2, 3, 0, 2}}, 16, 16);
  targets.valid[1][1].fill_(false);
  const auto indices =
      hungarian_match(at::stack({cls, cls}), at::stack({mask, mask}), targets, opts);
  ASSERT_EQ(indices.size(), 2u);
  // Sorted by prediction: queries 1, 3, 4 took targets 1, 2, 0.
  EXPECT_TRUE(at::equal(indices[0].first, at::tensor({1, 3, 4}, at::kLong)));
  EXPECT_TRUE(at::equal(indices[0].second, at::tensor({1, 2, 0}, at::kLong)));
  // The padded image: the same queries, target indices into the padded N (entry 1 skipped).
  EXPECT_TRUE(at::equal(indices[1].first, at::tensor({1, 3, 4}, at::kLong)));
  EXPECT_TRUE(at::equal(indices[1].second, at::tensor({2, 3, 0}, at::kLong)));
}

TEST(SetCriterionMatching, EqualsBruteForceOverAssignments) {
  CriterionOptions opts = small_criterion();
  opts.num_points = 64;
  for (int trial = 0; trial < 5; ++trial) {
    at::manual_seed(100 + trial);
    const std::int64_t q = 4, n = 3;
    const at::Tensor cls = at::randn({1, q, opts.num_classes + 1});
    const at::Tensor mask = 2 * at::randn({1, q, 6, 6});
    const at::Tensor gt = (at::rand({n, 12, 12}) > 0.5).to(at::kFloat);
    const InstanceCandidates targets = make_targets({gt}, {{0, 3, 3}}, 12, 12);
    at::manual_seed(7 + trial);
    const auto indices = hungarian_match(cls, mask, targets, opts);
    // The same points: the matcher's only draw for a single image.
    at::manual_seed(7 + trial);
    const at::Tensor coords = at::rand({1, opts.num_points, 2});
    const at::Tensor pp =
        point_sample(mask[0].unsqueeze(1), coords.expand({q, -1, -1}).contiguous()).squeeze(1);
    const at::Tensor tp =
        point_sample(gt.unsqueeze(1), coords.expand({n, -1, -1}).contiguous()).squeeze(1);
    const at::Tensor prob = cls[0].softmax(-1);
    std::vector<double> cost(static_cast<std::size_t>(q * n));
    for (std::int64_t i = 0; i < q; ++i) {
      for (std::int64_t j = 0; j < n; ++j) {
        const at::Tensor p = pp[i].sigmoid(), t = tp[j];
        const double ce = value(-(t * p.log() + (1 - t) * (1 - p).log()).mean());
        const double dice = 1 - value((2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1));
        const std::int64_t c = targets.classes[0][j].item<std::int64_t>();
        cost[i * n + j] =
            opts.mask_weight * ce + opts.dice_weight * dice - opts.class_weight * value(prob[i][c]);
      }
    }
    // Brute force: every injective map of the 3 targets to the 4 queries.
    double best = std::numeric_limits<double>::infinity();
    std::vector<std::int64_t> perm(q);
    std::iota(perm.begin(), perm.end(), 0);
    do {
      double total = 0;
      for (std::int64_t j = 0; j < n; ++j) total += cost[perm[j] * n + j];
      best = std::min(best, total);
    } while (std::next_permutation(perm.begin(), perm.end()));
    ASSERT_EQ(indices[0].first.numel(), n);
    double matched = 0;
    for (std::int64_t k = 0; k < n; ++k) {
      matched += cost[indices[0].first[k].item<std::int64_t>() * n +
                      indices[0].second[k].item<std::int64_t>()];
    }
    EXPECT_NEAR(matched, best, 1e-4) << "trial " << trial;
    EXPECT_EQ(std::get<0>(at::_unique(indices[0].first)).numel(), n);
    EXPECT_EQ(std::get<0>(at::_unique(indices[0].second)).numel(), n);
  }
}

// ---- the criterion -----------------------------------------------------------------------------

TEST(SetCriterionLoss, NoObjectWeightedCrossEntropy) {
  const auto opts = small_criterion();  // 4 classes + no object, weight 0.1
  at::manual_seed(8);
  const at::Tensor logits = at::randn({1, 3, 5});
  const InstanceCandidates targets = make_targets({at::ones({1, 4, 4})}, {{2}}, 4, 4);
  const MatchIndices indices = {{at::tensor({1}, at::kLong), at::tensor({0}, at::kLong)}};
  const at::Tensor logp = logits[0].log_softmax(-1);
  // Queries 0 and 2: no object (weight 0.1); query 1: class 2 (weight 1). Weighted mean.
  const double expected =
      -(0.1 * value(logp[0][4]) + value(logp[1][2]) + 0.1 * value(logp[2][4])) / 1.2;
  EXPECT_NEAR(value(class_loss(logits, indices, targets, opts)), expected, 1e-6);
}

// Constant logits 0 against a full target: BCE log 2 at any point (whatever the target), dice
// 1 - (P + 1) / (1.5 P + 1); each divided by the batch's 2 masks, weighted 5.
TEST(SetCriterionLoss, MaskLossesNormaliseByTheMaskCountAndWeigh) {
  const auto opts = small_criterion();
  DecoderPredictions pred;
  pred.class_logits = at::zeros({2, 1, 5}).requires_grad_();
  pred.mask_logits = at::zeros({2, 1, 4, 4}).requires_grad_();
  // Full targets; points within half a pixel of the border see the zero padding, so the dice
  // (which counts the target) is checked to the 1% of points that can fall there.
  const InstanceCandidates targets =
      make_targets({at::ones({1, 64, 64}), at::ones({1, 64, 64})}, {{1}, {3}}, 64, 64);
  const auto losses = SetCriterion(opts)(pred, targets);
  const double p = opts.num_points;
  EXPECT_NEAR(value(losses.at("td_mask")), 5.0 * 2 * std::log(2.0) / 2, 1e-5);
  EXPECT_NEAR(value(losses.at("td_dice")), 5.0 * 2 * (1 - (p + 1) / (1.5 * p + 1)) / 2, 0.05);
  // Uniform class logits: -log(1/5) for every query (both matched, weights 1).
  EXPECT_NEAR(value(losses.at("td_class")), 2.0 * std::log(5.0), 1e-5);
  // A given normaliser replaces the count.
  const auto four = SetCriterion(opts)(pred, targets, 4.0);
  EXPECT_NEAR(value(four.at("td_mask")), 5.0 * 2 * std::log(2.0) / 4, 1e-5);
}

TEST(SetCriterionLoss, SumsTheAuxiliaryPredictions) {
  at::manual_seed(9);
  const auto opts = small_criterion();
  const std::vector<std::int64_t> classes = {2, 0, 2};
  const auto [cls, mask] = perfect_predictions(three_masks(), classes, {0, 2, 5}, 6, 4, 8);
  DecoderPredictions pred;
  pred.class_logits = cls.unsqueeze(0);
  pred.mask_logits = mask.unsqueeze(0);
  const InstanceCandidates targets = make_targets({three_masks()}, {classes}, 16, 16);
  const auto single = SetCriterion(opts)(pred, targets);
  pred.auxiliary = {{pred.class_logits, pred.mask_logits}, {pred.class_logits, pred.mask_logits}};
  const auto triple = SetCriterion(opts)(pred, targets);
  EXPECT_NEAR(value(triple.at("td_class")), 3 * value(single.at("td_class")), 1e-5);
  // Mask losses sample other points each time: close to three times, not equal.
  EXPECT_NEAR(value(triple.at("td_mask")), 3 * value(single.at("td_mask")),
              0.2 * value(triple.at("td_mask")) + 1e-4);
  EXPECT_GT(value(triple.at("td_dice")), 2 * value(single.at("td_dice")));
}

TEST(SetCriterionLoss, DecreasesAsPredictionsMoveTowardTheTargets) {
  at::manual_seed(10);
  const auto opts = small_criterion();
  const std::vector<std::int64_t> classes = {1, 3, 0};
  const auto [good_cls, good_mask] =
      perfect_predictions(three_masks(), classes, {2, 0, 4}, 5, 4, 8);
  const at::Tensor bad_cls = at::randn({5, 5}), bad_mask = 3 * at::randn({5, 8, 8});
  const InstanceCandidates targets = make_targets({three_masks()}, {classes}, 16, 16);
  const SetCriterion criterion(opts);
  double previous = std::numeric_limits<double>::infinity();
  for (double t : {0.0, 0.25, 0.5, 0.75, 1.0}) {
    DecoderPredictions pred;
    pred.class_logits = ((1 - t) * bad_cls + t * good_cls).unsqueeze(0);
    pred.mask_logits = ((1 - t) * bad_mask + t * good_mask).unsqueeze(0);
    pred.auxiliary = {{pred.class_logits, pred.mask_logits}};
    at::manual_seed(11);
    const auto losses = criterion(pred, targets);
    const double total = value(losses.at("td_class") + losses.at("td_mask") + losses.at("td_dice"));
    EXPECT_LT(total, previous) << "t = " << t;
    previous = total;
  }
}

TEST(SetCriterionLoss, ImagesWithoutInstances) {
  at::manual_seed(12);
  const auto opts = small_criterion();
  DecoderPredictions pred;
  pred.class_logits = at::randn({2, 3, 5}).requires_grad_();
  pred.mask_logits = at::randn({2, 3, 4, 4}).requires_grad_();
  // No instance at all (N = 0): only the no-object class loss, whose weights cancel in the mean.
  const InstanceCandidates none =
      make_targets({at::zeros({0, 8, 8}), at::zeros({0, 8, 8})}, {{}, {}}, 8, 8);
  auto losses = SetCriterion(opts)(pred, none);
  const double expected = -value(pred.class_logits.log_softmax(-1).select(2, 4).mean());
  EXPECT_NEAR(value(losses.at("td_class")), opts.class_weight * expected, 1e-5);
  EXPECT_EQ(value(losses.at("td_mask")), 0.0);
  EXPECT_EQ(value(losses.at("td_dice")), 0.0);
  (losses.at("td_class") + losses.at("td_mask") + losses.at("td_dice")).backward();
  EXPECT_TRUE(pred.mask_logits.grad().defined());
  EXPECT_TRUE(at::isfinite(pred.class_logits.grad()).all().item<bool>());

  // One image with an instance, one without: finite, the empty image's queries all no-object.
  const InstanceCandidates mixed =
      make_targets({three_masks().narrow(0, 0, 1), at::zeros({0, 16, 16})}, {{1}, {}}, 16, 16);
  const auto indices = hungarian_match(pred.class_logits, pred.mask_logits, mixed, opts);
  EXPECT_EQ(indices[0].first.numel(), 1);
  EXPECT_EQ(indices[1].first.numel(), 0);
  losses = SetCriterion(opts)(pred, mixed);
  for (const auto& [name, loss] : losses) {
    EXPECT_TRUE(std::isfinite(value(loss))) << name;
    EXPECT_GT(value(loss), 0.0) << name;
  }
}

TEST(SetCriterionLoss, OptionsAreValidated) {
  CriterionOptions o;
  o.oversample_ratio = 0.5;
  EXPECT_THROW(SetCriterion{o}, ConfigError);
  o = CriterionOptions();
  o.importance_sample_ratio = 1.5;
  EXPECT_THROW(SetCriterion{o}, ConfigError);
  EXPECT_NO_THROW(SetCriterion{CriterionOptions()});
}

// ---- instance inference ------------------------------------------------------------------------

TEST(InstanceInference, OriginalKeepsTheTopQueryClassPairs) {
  // 2 queries, 3 classes + no object. Query 0 is likely class 0 and fairly likely class 2; query
  // 1 is likely class 1. Mask2Former's instance_inference ranks the 6 (query, class) pairs by
  // class probability: (0, 0) .586, (1, 1) .475, (0, 2) .355, so query 0 comes back twice.
  const at::Tensor cls =
      at::tensor({3.0f, 0.0f, 2.5f, 0.0f, 0.0f, 1.0f, 0.0f, 0.0f}).view({1, 2, 4});
  at::Tensor mask = at::full({1, 2, 4, 4}, 2.0f);  // query 0: sigmoid(2) everywhere
  mask[0][1].narrow(0, 0, 2).fill_(1.0f);           // query 1: top half 1, bottom half -5
  mask[0][1].narrow(0, 2, 2).fill_(-5.0f);
  const Detections d = detect_instances(cls, mask, 3, 4);  // the default: the original's
  const at::Tensor prob = cls[0].softmax(-1);
  const auto s = [](double x) { return 1 / (1 + std::exp(-x)); };
  EXPECT_TRUE(at::equal(d.query_index, at::tensor({0, 1, 0}, at::kLong).view({1, 3})));
  EXPECT_TRUE(at::equal(d.instances.classes, at::tensor({0, 1, 2}, at::kLong).view({1, 3})));
  EXPECT_NEAR(value(d.instances.scores[0][0]), value(prob[0][0]) * s(2), 1e-6);
  EXPECT_NEAR(value(d.instances.scores[0][1]), value(prob[1][1]) * s(1), 1e-6);
  EXPECT_NEAR(value(d.instances.scores[0][2]), value(prob[0][2]) * s(2), 1e-6);
  EXPECT_NEAR(value(prob[0][0]), 0.586, 1e-3);  // the hand-computed ranking above
  EXPECT_NEAR(value(prob[1][1]), 0.475, 1e-3);
  EXPECT_NEAR(value(prob[0][2]), 0.355, 1e-3);
  EXPECT_TRUE(at::equal(d.instances.masks[0][0], d.instances.masks[0][2]));
  EXPECT_TRUE(at::allclose(d.instances.boxes[0][1], at::tensor({0.0f, 0.0f, 1.0f, 0.5f})));
  // top_k is clamped to the Q x K pairs (the original's topk would fail past them).
  const Detections all = detect_instances(cls, mask, 100, 4);
  EXPECT_EQ(all.query_index.size(1), 6);
  EXPECT_EQ(all.instances.classes.size(1), 6);
  EXPECT_EQ(parse_instance_inference("per_query"), InstanceInference::kPerQuery);
  EXPECT_THROW(parse_instance_inference("per-query"), ConfigError);
}

// The fused CPU summary against the original's tensor formulas on random logits at a
// non-square output size, with an empty mask and a mask touching every border: scores
// (probs * (logits > 0)).sum / (count + 1e-6), boxes of logits > 0, probabilities the sigmoid.
TEST(InstanceInference, SummaryEqualsTheOriginalsFormulas) {
  const test::IntraOpThreads threads(2);
  torch::manual_seed(11);
  const std::int64_t q = 6, k = 3, h = 9, w = 7, height = 30, width = 22;
  const at::Tensor cls = at::randn({1, q, k + 1});
  at::Tensor mask = at::randn({1, q, h, w}) * 3 - 0.5;
  mask[0][2].fill_(-4.0f);  // empty
  mask[0][4].fill_(4.0f);   // every pixel
  for (const auto mode : {InstanceInference::kOriginal, InstanceInference::kPerQuery}) {
    const Detections d = detect_instances(cls, mask, 9, height, width, mode);
    const at::Tensor up = at::upsample_bilinear2d(mask[0].index_select(0, d.query_index[0])
                                                      .unsqueeze(0),
                                                  at::IntArrayRef({height, width}), false)[0];
    const at::Tensor binary = (up > 0).to(at::kFloat);
    const at::Tensor probs = up.sigmoid();
    const at::Tensor mask_score =
        (probs * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6);
    EXPECT_LT((d.instances.masks[0] - probs).abs().max().item<double>(), 1e-6);
    EXPECT_TRUE(at::equal(d.instances.boxes[0], boxes_of_masks(binary, 0.5)));
    const at::Tensor class_prob = cls[0].softmax(-1).narrow(-1, 0, k);
    const at::Tensor pair_prob =
        class_prob.index({d.query_index[0], d.instances.classes[0]});  // [picked]
    EXPECT_LT((d.instances.scores[0] - pair_prob * mask_score).abs().max().item<double>(), 1e-6);
  }
}

// The same at the paper's 4x resize and beyond the sigmoid's float range: the fused pass's own
// exp must saturate as torch's sigmoid does (logits of +-120), and rows wider than the vector
// width leave a tail.
TEST(InstanceInference, SummaryEqualsTheFormulasAtLargeLogitsAndWideRows) {
  const test::IntraOpThreads threads(2);
  torch::manual_seed(12);
  const std::int64_t q = 4, k = 2, h = 30, w = 31, height = 120, width = 125;
  const at::Tensor cls = at::randn({1, q, k + 1});
  at::Tensor mask = at::randn({1, q, h, w}) * 40;  // |logit| up to about 150
  mask[0][1] = at::linspace(-100, 100, h * w).view({h, w});
  const Detections d =
      detect_instances(cls, mask, q * k, height, width, InstanceInference::kOriginal);
  const at::Tensor up = at::upsample_bilinear2d(
      mask[0].index_select(0, d.query_index[0]).unsqueeze(0), at::IntArrayRef({height, width}),
      false)[0];
  const at::Tensor binary = (up > 0).to(at::kFloat);
  const at::Tensor probs = up.sigmoid();
  // Saturated pixels exactly as torch's sigmoid; elsewhere within the float resolution of a
  // blend of logits this large (ulp(150) = 1.5e-5 on the logit, the sum's order differing).
  const at::Tensor diff = (d.instances.masks[0] - probs).abs();
  const at::Tensor saturated = up.abs() > 20;
  ASSERT_GT(saturated.sum().item<std::int64_t>(), 1000);
  EXPECT_LT(diff.masked_select(saturated).max().item<double>(), 1e-7);
  EXPECT_LT(diff.max().item<double>(), 1e-4);
  EXPECT_TRUE(at::equal(d.instances.boxes[0], boxes_of_masks(binary, 0.5)));
  const at::Tensor mask_score =
      (probs * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6);
  const at::Tensor pair_prob = cls[0].softmax(-1).narrow(-1, 0, k).index(
      {d.query_index[0], d.instances.classes[0]});
  EXPECT_LT((d.instances.scores[0] - pair_prob * mask_score).abs().max().item<double>(), 1e-6);
}

TEST(InstanceInference, PerQueryPicksQueriesByClassTimesMaskScore) {
  // 3 queries, 2 classes + no object. Query 0: class 1 likely, a +-10 top-left 2x2 block on 4x4;
  // query 1: no object likely, mask all +10; query 2: class 0, mask sigmoid 0.75 everywhere.
  at::Tensor cls =
      at::tensor({0.0f, 3.0f, 0.0f, 0.0f, 0.5f, 4.0f, 2.0f, 0.0f, 0.0f}).view({1, 3, 3});
  at::Tensor mask = at::full({1, 3, 4, 4}, -10.0f);
  mask[0][0].narrow(0, 0, 2).narrow(1, 0, 2).fill_(10.0f);
  mask[0][1].fill_(10.0f);
  mask[0][2].fill_(static_cast<float>(std::log(3.0)));
  const Detections d = detect_instances(cls, mask, 2, 8, InstanceInference::kPerQuery);

  const at::Tensor prob = cls[0].softmax(-1);
  const auto s = [](double x) { return 1 / (1 + std::exp(-x)); };
  // Upsampled x2, query 0's block covers rows and columns 0-3: 9 logits 10, 6 logits 5 and one
  // 1.25 (10 (2 u_y u_x - 1) with the in-block weight u = 1, 1, 1, 0.75).
  const double mask0 = (9 * s(10) + 6 * s(5) + s(1.25)) / 16;
  const double score0 = value(prob[0][1]) * mask0, score2 = value(prob[2][0]) * 0.75;
  const double score1 = value(prob[1][1]) * s(10);  // its best foreground class is 1
  ASSERT_GT(score2, score1);
  ASSERT_GT(score0, score2);
  EXPECT_TRUE(at::equal(d.query_index, at::tensor({0, 2}, at::kLong).view({1, 2})));
  EXPECT_TRUE(at::equal(d.instances.classes, at::tensor({1, 0}, at::kLong).view({1, 2})));
  EXPECT_NEAR(value(d.instances.scores[0][0]), score0, 1e-5);
  EXPECT_NEAR(value(d.instances.scores[0][1]), score2, 1e-5);
  EXPECT_TRUE(d.instances.valid.all().item<bool>());
  ASSERT_EQ(d.instances.masks.sizes(), (at::IntArrayRef{1, 2, 8, 8}));
  EXPECT_TRUE(at::allclose(d.instances.masks[0][1], at::full({8, 8}, 0.75f)));
  EXPECT_NEAR(value(d.instances.masks[0][0][0][0]), s(10), 1e-6);
  EXPECT_NEAR(value(d.instances.masks[0][0][3][3]), s(1.25), 1e-6);
  EXPECT_TRUE(at::allclose(d.instances.boxes[0][0], at::tensor({0.0f, 0.0f, 0.5f, 0.5f})));
  EXPECT_TRUE(at::allclose(d.instances.boxes[0][1], at::tensor({0.0f, 0.0f, 1.0f, 1.0f})));
}

TEST(InstanceInference, EmptyMasksScoreZeroAndTopKIsClamped) {
  at::Tensor cls = at::zeros({2, 2, 3});
  cls[1][0][0].fill_(5.0f);
  at::Tensor mask = at::full({2, 2, 4, 4}, 2.0f);
  mask[1][0].fill_(-3.0f);  // the most confident query of image 1 has an empty mask
  const Detections d = detect_instances(cls, mask, 5, 4, InstanceInference::kPerQuery);
  ASSERT_EQ(d.query_index.sizes(), (at::IntArrayRef{2, 2}));
  EXPECT_EQ(d.query_index[1][0].item<std::int64_t>(), 1);
  EXPECT_EQ(d.query_index[1][1].item<std::int64_t>(), 0);
  EXPECT_EQ(value(d.instances.scores[1][1]), 0.0);
  EXPECT_TRUE(at::equal(d.instances.boxes[1][1], at::zeros({4})));
  EXPECT_FALSE(d.instances.masks.requires_grad());
}

}  // namespace
}  // namespace wico::topdown
