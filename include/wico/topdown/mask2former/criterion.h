// Mask2Former's training objective (facebookresearch/Mask2Former, mask2former/modeling/
// criterion.py SetCriterion and matcher.py HungarianMatcher; point sampling from detectron2's
// projects/PointRend point_features.py).
//
// Per prediction (the final one and every auxiliary one, each matched on its own) the queries are
// matched one-to-one to the image's ground-truth instances by the least total cost
//   class_weight * -p(class) + mask_weight * BCE + dice_weight * dice,
// the mask costs on num_points random points shared by all queries and targets. Then:
//   class: cross-entropy of every query against its matched class or no-object, the no-object
//          class weighted by no_object_weight (a weighted mean over all B * Q queries);
//   mask, dice: on num_points points per matched query, chosen by PointRend's importance sampling
//          (oversample_ratio * num_points uniform points, the importance_sample_ratio share of
//          them with the least |logit|, the rest uniform again), summed and divided by the number
//          of ground-truth masks in the batch (at least 1).
// Points are bilinear samples (grid_sample, align_corners false, zeros outside) at coordinates in
// [0, 1]^2 of each map, so predictions at H/4 and targets at the input size meet at the same
// places. Randomness comes from ATen's default generator (at::manual_seed fixes it).
//
// The original averages the number of masks over the distributed ranks (all_reduce / world size);
// the two-argument operator() uses this batch's count, the three-argument one takes the
// normaliser from the caller.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "wico/topdown/instances.h"
#include "wico/topdown/mask2former/transformer_decoder.h"

namespace wico::topdown {

// Paper values (the R50 COCO instance model).
struct CriterionOptions {
  std::int64_t num_classes = 80;
  double class_weight = 2.0, mask_weight = 5.0, dice_weight = 5.0, no_object_weight = 0.1;
  std::int64_t num_points = 12544;
  double oversample_ratio = 3.0, importance_sample_ratio = 0.75;
  // Throws wico::ConfigError naming the offending option.
  void validate() const;
};

// detectron2's point_sample: maps [N, C, h, w], coords [N, P, 2] (x, y in [0, 1]) -> [N, C, P].
at::Tensor point_sample(const at::Tensor& maps, const at::Tensor& coords);

// PointRend's get_uncertain_point_coords_with_randomness with calculate_uncertainty = -|logit|:
// logits [N, 1, h, w] -> coords [N, num_points, 2]; no gradient.
at::Tensor uncertain_point_coords(const at::Tensor& logits, std::int64_t num_points,
                                  double oversample_ratio, double importance_sample_ratio);

// The losses of matched pairs, logits and targets [M, P]: sum over pairs of
// 1 - (2 sum(sigmoid * t) + 1) / (sum(sigmoid) + sum(t) + 1), and of the mean per-point BCE, each
// divided by num_masks.
at::Tensor dice_loss(const at::Tensor& logits, const at::Tensor& targets, double num_masks);
at::Tensor sigmoid_ce_loss(const at::Tensor& logits, const at::Tensor& targets, double num_masks);

// The matcher's pairwise costs, logits [Q, P] and targets [N, P] -> [Q, N] (dice as above, BCE
// averaged over the points).
at::Tensor batch_dice_cost(const at::Tensor& logits, const at::Tensor& targets);
at::Tensor batch_sigmoid_ce_cost(const at::Tensor& logits, const at::Tensor& targets);

using MatchIndices = std::vector<std::pair<at::Tensor, at::Tensor>>;

// Hungarian matching per image: {pred index, target index} int64 [min(Q, n_b)] each, sorted by
// prediction, target indices into the N dimension of `targets` (padding, valid = false, is never
// matched). Class + mask BCE + dice costs weighted by the options' loss weights, the mask costs
// at num_points uniform random points shared by every query and target. No gradient.
MatchIndices hungarian_match(const at::Tensor& class_logits, const at::Tensor& mask_logits,
                             const InstanceCandidates& targets, const CriterionOptions& options);

// The unweighted class loss: cross-entropy of class_logits [B, Q, K+1] against the matched
// targets' classes (no-object K for unmatched queries), class weights 1 and no_object_weight,
// averaged with those weights.
at::Tensor class_loss(const at::Tensor& class_logits, const MatchIndices& indices,
                      const InstanceCandidates& targets, const CriterionOptions& options);

// The unweighted {sigmoid CE, dice} point losses of the matched masks, divided by num_masks;
// zeros (attached to mask_logits' graph) when nothing is matched.
std::pair<at::Tensor, at::Tensor> mask_losses(const at::Tensor& mask_logits,
                                              const MatchIndices& indices,
                                              const InstanceCandidates& targets,
                                              const CriterionOptions& options, double num_masks);

class SetCriterion {
 public:
  explicit SetCriterion(CriterionOptions options);
  // Weighted losses {"td_class", "td_mask", "td_dice"}, each summed over the final and the
  // auxiliary predictions (as the original's loss dict is summed), normalised by the number of
  // valid targets in the batch (at least 1).
  std::map<std::string, at::Tensor> operator()(const DecoderPredictions& predictions,
                                               const InstanceCandidates& targets) const;
  // The same with the mask normaliser given (e.g. averaged over distributed ranks; clamped to 1).
  std::map<std::string, at::Tensor> operator()(const DecoderPredictions& predictions,
                                               const InstanceCandidates& targets,
                                               double num_masks) const;
  const CriterionOptions& options() const { return options_; }

 private:
  CriterionOptions options_;
};

}  // namespace wico::topdown
