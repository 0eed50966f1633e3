#include "wico/topdown/mask2former/criterion.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <string>

#include "wico/core/error.h"
#include "wico/nn/autocast.h"
#include "wico/topdown/assignment.h"

namespace wico::topdown {

namespace {

void require(bool condition, const std::string& message) {
  if (!condition) throw ConfigError("set criterion: " + message);
}

void check_targets(const InstanceCandidates& targets, std::int64_t batch) {
  WICO_CHECK(targets.masks.defined() && targets.masks.dim() == 4,
             "target masks must be [B, N, h, w]");
  WICO_CHECK(targets.masks.size(0) == batch, "targets hold ", targets.masks.size(0),
             " images, the predictions ", batch);
  const std::int64_t n = targets.masks.size(1);
  WICO_CHECK(targets.classes.defined() && targets.classes.sizes() == at::IntArrayRef({batch, n}),
             "target classes must be [", batch, ", ", n, "]");
  WICO_CHECK(targets.valid.defined() && targets.valid.sizes() == at::IntArrayRef({batch, n}),
             "target valid must be [", batch, ", ", n, "]");
}

// Indices of image b's real (valid) targets, int64 [n_b].
at::Tensor valid_targets(const InstanceCandidates& targets, std::int64_t b) {
  return targets.valid[b].to(at::kBool).nonzero().squeeze(1);
}

}  // namespace

void CriterionOptions::validate() const {
  require(num_classes > 0, "num_classes must be positive, got " + std::to_string(num_classes));
  require(class_weight >= 0 && mask_weight >= 0 && dice_weight >= 0,
          "the class, mask and dice weights must be >= 0");
  require(class_weight > 0 || mask_weight > 0 || dice_weight > 0,
          "the class, mask and dice weights cannot all be 0 (the matcher needs a cost)");
  require(no_object_weight >= 0,
          "no_object_weight must be >= 0, got " + std::to_string(no_object_weight));
  require(num_points > 0, "num_points must be positive, got " + std::to_string(num_points));
  require(oversample_ratio >= 1,
          "oversample_ratio must be >= 1, got " + std::to_string(oversample_ratio));
  require(
      importance_sample_ratio >= 0 && importance_sample_ratio <= 1,
      "importance_sample_ratio must be in [0, 1], got " + std::to_string(importance_sample_ratio));
}

// ---- points ------------------------------------------------------------------------------------

at::Tensor point_sample(const at::Tensor& maps, const at::Tensor& coords) {
  // grid_sample wants [-1, 1] and a [N, P, 1, 2] grid; its output [N, C, P, 1].
  const at::Tensor grid = (2.0 * coords - 1.0).unsqueeze(2).to(maps.scalar_type());
  return at::grid_sampler(maps, grid, /*bilinear*/ 0, /*zeros*/ 0, /*align_corners=*/false)
      .squeeze(3);
}

at::Tensor uncertain_point_coords(const at::Tensor& logits, std::int64_t num_points,
                                  double oversample_ratio, double importance_sample_ratio) {
  const at::NoGradGuard no_grad;
  const std::int64_t n = logits.size(0);
  const auto sampled = static_cast<std::int64_t>(num_points * oversample_ratio);
  const auto opts = logits.options().dtype(at::kFloat);
  at::Tensor coords = at::rand({n, sampled, 2}, opts);
  // Uncertainty of the sampled logits (not sampled uncertainties: between logits -1 and 1 the
  // interpolated logit 0 is the most uncertain).
  const at::Tensor uncertainty = -point_sample(logits, coords).select(1, 0).abs();  // [n, sampled]
  const auto num_uncertain = static_cast<std::int64_t>(importance_sample_ratio * num_points);
  const std::int64_t num_random = num_points - num_uncertain;
  const at::Tensor idx = std::get<1>(uncertainty.topk(num_uncertain, 1));
  coords = coords.gather(1, idx.unsqueeze(-1).expand({n, num_uncertain, 2}));
  if (num_random > 0) coords = at::cat({coords, at::rand({n, num_random, 2}, opts)}, 1);
  return coords;
}

// ---- losses and costs --------------------------------------------------------------------------

at::Tensor dice_loss(const at::Tensor& logits, const at::Tensor& targets, double num_masks) {
  const at::Tensor p = logits.sigmoid().flatten(1), t = targets.flatten(1);
  const at::Tensor numerator = 2 * (p * t).sum(-1);
  const at::Tensor denominator = p.sum(-1) + t.sum(-1);
  return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks;
}

at::Tensor sigmoid_ce_loss(const at::Tensor& logits, const at::Tensor& targets, double num_masks) {
  return at::binary_cross_entropy_with_logits(logits, targets, {}, {}, at::Reduction::None)
             .mean(1)
             .sum() /
         num_masks;
}

at::Tensor batch_dice_cost(const at::Tensor& logits, const at::Tensor& targets) {
  const at::Tensor p = logits.sigmoid().flatten(1);
  const at::Tensor numerator = 2 * at::matmul(p, targets.t());
  const at::Tensor denominator = p.sum(-1).unsqueeze(1) + targets.sum(-1).unsqueeze(0);
  return 1 - (numerator + 1) / (denominator + 1);
}

at::Tensor batch_sigmoid_ce_cost(const at::Tensor& logits, const at::Tensor& targets) {
  const auto none = at::Reduction::None;
  const at::Tensor pos =
      at::binary_cross_entropy_with_logits(logits, at::ones_like(logits), {}, {}, none);
  const at::Tensor neg =
      at::binary_cross_entropy_with_logits(logits, at::zeros_like(logits), {}, {}, none);
  return (at::matmul(pos, targets.t()) + at::matmul(neg, (1 - targets).t())) / logits.size(1);
}

// ---- matching ----------------------------------------------------------------------------------

MatchIndices hungarian_match(const at::Tensor& class_logits, const at::Tensor& mask_logits,
                             const InstanceCandidates& targets, const CriterionOptions& options) {
  const at::NoGradGuard no_grad;
  const wico::nn::AutocastDisabled float32;  // the original's costs: autocast(enabled=False)
  const std::int64_t batch = class_logits.size(0), queries = class_logits.size(1);
  WICO_CHECK(class_logits.size(2) == options.num_classes + 1, "class logits have ",
             class_logits.size(2),
             " classes, expected num_classes + 1 = ", options.num_classes + 1);
  WICO_CHECK(
      mask_logits.dim() == 4 && mask_logits.size(0) == batch && mask_logits.size(1) == queries,
      "mask logits must be [", batch, ", ", queries, ", h, w], got ", mask_logits.sizes());
  check_targets(targets, batch);
  const auto long_opts = class_logits.options().dtype(at::kLong);
  MatchIndices indices;
  for (std::int64_t b = 0; b < batch; ++b) {
    const at::Tensor real = valid_targets(targets, b);
    const std::int64_t n = real.numel();
    if (n == 0) {
      indices.emplace_back(at::empty({0}, long_opts), at::empty({0}, long_opts));
      continue;
    }
    const at::Tensor prob = class_logits[b].to(at::kFloat).softmax(-1);  // [Q, K+1]
    const at::Tensor cost_class = -prob.index_select(1, targets.classes[b].index_select(0, real));
    // One set of points for every query and target of the image.
    const at::Tensor coords = at::rand({1, options.num_points, 2}, prob.options());
    const at::Tensor target_masks = targets.masks[b].index_select(0, real).to(at::kFloat);
    const at::Tensor target_points =
        point_sample(target_masks.unsqueeze(1), coords.expand({n, -1, -1}).contiguous()).squeeze(1);
    const at::Tensor pred_points = point_sample(mask_logits[b].to(at::kFloat).unsqueeze(1),
                                                coords.expand({queries, -1, -1}).contiguous())
                                       .squeeze(1);
    const at::Tensor cost =
        options.mask_weight * batch_sigmoid_ce_cost(pred_points, target_points) +
        options.class_weight * cost_class +
        options.dice_weight * batch_dice_cost(pred_points, target_points);
    const Assignment pairs = linear_sum_assignment(cost);
    std::vector<std::int64_t> rows, cols;
    for (const auto& [r, c] : pairs) {
      rows.push_back(r);
      cols.push_back(c);
    }
    const auto cpu_long = at::TensorOptions().dtype(at::kLong);
    const at::Tensor pred_index = at::tensor(rows, cpu_long).to(long_opts.device());
    const at::Tensor local = at::tensor(cols, cpu_long).to(long_opts.device());
    indices.emplace_back(pred_index, real.index_select(0, local));
  }
  return indices;
}

// ---- criterion ---------------------------------------------------------------------------------

at::Tensor class_loss(const at::Tensor& class_logits, const MatchIndices& indices,
                      const InstanceCandidates& targets, const CriterionOptions& options) {
  const at::Tensor logits = class_logits.to(at::kFloat);
  const std::int64_t batch = logits.size(0), queries = logits.size(1);
  at::Tensor target_classes =
      at::full({batch, queries}, options.num_classes, logits.options().dtype(at::kLong));
  for (std::int64_t b = 0; b < batch; ++b) {
    const auto& [src, tgt] = indices[b];
    if (src.numel() == 0) continue;
    target_classes[b].index_copy_(0, src, targets.classes[b].index_select(0, tgt));
  }
  at::Tensor weight = at::ones({options.num_classes + 1}, logits.options());
  weight[options.num_classes].fill_(options.no_object_weight);
  return at::cross_entropy_loss(logits.transpose(1, 2), target_classes, weight);
}

std::pair<at::Tensor, at::Tensor> mask_losses(const at::Tensor& mask_logits,
                                              const MatchIndices& indices,
                                              const InstanceCandidates& targets,
                                              const CriterionOptions& options, double num_masks) {
  std::vector<at::Tensor> src_masks, target_masks;
  for (std::size_t b = 0; b < indices.size(); ++b) {
    const auto& [src, tgt] = indices[b];
    if (src.numel() == 0) continue;
    src_masks.push_back(mask_logits[b].index_select(0, src));
    target_masks.push_back(targets.masks[b].index_select(0, tgt));
  }
  if (src_masks.empty()) {
    // Nothing to supervise: zeros that still reach the graph (as the original's empty sums).
    const at::Tensor zero = mask_logits.sum() * 0.0;
    return {zero, zero.clone()};
  }
  const at::Tensor src = at::cat(src_masks).unsqueeze(1);  // [M, 1, h4, w4]
  at::Tensor coords, labels;
  {
    const at::NoGradGuard no_grad;
    coords = uncertain_point_coords(src.detach(), options.num_points, options.oversample_ratio,
                                    options.importance_sample_ratio);
    labels =
        point_sample(at::cat(target_masks).unsqueeze(1).to(src.scalar_type()), coords).squeeze(1);
  }
  const at::Tensor logits = point_sample(src, coords).squeeze(1);  // [M, P]
  return {sigmoid_ce_loss(logits, labels, num_masks), dice_loss(logits, labels, num_masks)};
}

SetCriterion::SetCriterion(CriterionOptions options) : options_(options) { options_.validate(); }

std::map<std::string, at::Tensor> SetCriterion::operator()(
    const DecoderPredictions& predictions, const InstanceCandidates& targets) const {
  check_targets(targets, predictions.class_logits.size(0));
  const double count = targets.valid.to(at::kBool).sum().item<double>();
  return (*this)(predictions, targets, count);
}

std::map<std::string, at::Tensor> SetCriterion::operator()(const DecoderPredictions& predictions,
                                                           const InstanceCandidates& targets,
                                                           double num_masks) const {
  num_masks = std::max(num_masks, 1.0);
  // The final prediction first, then the auxiliary ones in order (the original's order, which
  // fixes the sequence of random draws).
  std::vector<std::pair<at::Tensor, at::Tensor>> all{
      {predictions.class_logits, predictions.mask_logits}};
  all.insert(all.end(), predictions.auxiliary.begin(), predictions.auxiliary.end());
  at::Tensor ce, bce, dice;
  for (const auto& [class_logits, mask_logits] : all) {
    const MatchIndices indices = hungarian_match(class_logits, mask_logits, targets, options_);
    const at::Tensor c = class_loss(class_logits, indices, targets, options_);
    const auto [m, d] = mask_losses(mask_logits, indices, targets, options_, num_masks);
    ce = ce.defined() ? ce + c : c;
    bce = bce.defined() ? bce + m : m;
    dice = dice.defined() ? dice + d : d;
  }
  return {{"td_class", options_.class_weight * ce},
          {"td_mask", options_.mask_weight * bce},
          {"td_dice", options_.dice_weight * dice}};
}

}  // namespace wico::topdown
