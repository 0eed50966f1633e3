#include "wico/topdown/top_down.h"

#include <ATen/ATen.h>

#include <chrono>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/core/stopwatch.h"
#include "wico/data/loader.h"

namespace wico::topdown {

namespace {

// IoU [B, N, M] of every pair of 0/1 masks a [B, N, P] and b [B, M, P] (an empty pair: 0).
at::Tensor pairwise_iou(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor inter = at::bmm(a, b.transpose(1, 2));
  const at::Tensor uni = a.sum(-1, /*keepdim=*/true) + b.sum(-1).unsqueeze(1) - inter;
  return inter / uni.clamp_min(1.0);
}

// For each sample, the candidate whose mask overlaps the target most (IoU at the input size).
at::Tensor best_overlapping(const at::Tensor& masks, const at::Tensor& valid,
                            const at::Tensor& targets) {
  const at::NoGradGuard no_grad;
  const at::Tensor m = (masks > 0.5).flatten(2).to(at::kFloat);  // [B, N, P]
  const at::Tensor t = targets.flatten(1).unsqueeze(1);          // [B, 1, P]
  return pairwise_iou(m, t).squeeze(-1).masked_fill(valid.logical_not(), -1.0).argmax(1);
}

// For each candidate mask [B, N, h, w], the query whose mask (logits [B, Q, h', w'], binarised at
// 0) overlaps it most, by IoU on the queries' grid: a ground-truth instance's query.
at::Tensor best_overlapping_queries(const at::Tensor& mask_logits, const at::Tensor& masks,
                                    const at::Tensor& valid) {
  const at::NoGradGuard no_grad;
  const std::int64_t h = mask_logits.size(2), w = mask_logits.size(3);
  const at::Tensor q = (mask_logits > 0).flatten(2).to(at::kFloat);  // [B, Q, P]
  const at::Tensor m =
      (at::adaptive_avg_pool2d(masks.to(at::kFloat), {h, w}) > 0.5).flatten(2).to(at::kFloat);
  return pairwise_iou(m, q).argmax(-1).masked_fill(valid.logical_not(), 0);
}

}  // namespace

InstanceCandidates ground_truth_candidates(const data::Batch& batch) {
  // Boxes as fractions of the input's width and height (not square with shortest_edge).
  const double w = static_cast<double>(batch.images.size(-1));
  const double h = static_cast<double>(batch.images.size(-2));
  InstanceCandidates c;
  c.masks = batch.candidate_masks.to(at::kFloat);
  c.boxes = batch.candidate_boxes / at::tensor({w, h, w, h}, batch.candidate_boxes.options());
  c.valid = batch.candidate_valid;
  c.classes = batch.candidate_classes.masked_fill(c.valid.logical_not(), 0);
  c.scores = c.valid.to(at::kFloat);
  return c;
}

at::Tensor top_down_result(const TopDownOutput& output) {
  const std::int64_t b = output.masks.size(0);
  const at::Tensor rows = at::arange(b, output.best.options());
  const at::Tensor mask = output.masks.index({rows, output.best});     // [B, S, S]
  const at::Tensor score = output.scores.index({rows, output.best});   // [B]
  return (mask * score.view({b, 1, 1})).unsqueeze(1);
}

TopDownBranch::TopDownBranch(const Config& config)
    : num_classes_(config.integer("top_down.num_classes")),
      top_k_(config.integer("top_down.top_k")),
      train_on_ground_truth_(config.text("top_down.train_candidates") == "ground_truth"),
      eval_on_ground_truth_(config.text("top_down.eval_candidates") == "ground_truth"),
      detach_features_(config.flag("top_down.detach_features")),
      choose_(config.text("top_down.choose")),
      extractor_losses_(config.text("top_down.train") != "matcher"),
      matcher_losses_(config.text("top_down.train") != "extractor") {
  extractor_ = register_module("extractor", build_extractor(config));
  matcher_ = register_module("matcher", build_matcher(config));
}

TopDownOutput TopDownBranch::forward(const data::Batch& batch, bool with_losses) {
  TopDownOutput out;
  const auto start = std::chrono::steady_clock::now();
  const bool on_ground_truth = is_training() ? train_on_ground_truth_ : eval_on_ground_truth_;
  // Stage 2 of the protocol (the matcher alone, on ground-truth candidates) needs the trunk only.
  const bool trunk_only =
      with_losses && !extractor_losses_ && on_ground_truth && !matcher_->uses_query_embeddings();
  // The deep supervision only where the extractor's losses read it.
  const bool extractor_learns = with_losses && extractor_losses_;
  const ExtractorOutput extracted =
      trunk_only         ? extractor_->trunk_features(batch.images)
      : extractor_learns ? extractor_->forward(batch.images)
                         : extractor_->predict(batch.images);
  const bool need_truth = with_losses || on_ground_truth;
  InstanceCandidates truth;
  if (need_truth) {
    truth = ground_truth_candidates(batch);
    if (truth.classes.numel() > 0) {
      const std::int64_t top = truth.classes.max().item<std::int64_t>();
      if (top >= num_classes_) {
        throw ConfigError("top_down.num_classes is " + std::to_string(num_classes_) +
                          " but the data has class index " + std::to_string(top) +
                          " (the category's position among instances.json's categories "
                          "sorted by id; COCO's 80 categories need 80)");
      }
    }
  }
  if (extractor_learns) {
    // The extractor learns every instance but COCO's crowd regions, as Mask2Former's instance
    // mapper drops iscrowd annotations; the matcher still sees them as candidates.
    InstanceCandidates instances = truth;
    if (batch.candidate_crowd.defined()) {
      instances.valid = truth.valid.logical_and(batch.candidate_crowd.logical_not());
    }
    out.losses = extractor_->loss(extracted, instances);
  }
  InstanceCandidates candidates =
      on_ground_truth ? truth
                      : extractor_->detect(extracted, top_k_, batch.images.size(-2),
                                           batch.images.size(-1));
  out.extractor_seconds = seconds_since(start);

  const auto matched_at = std::chrono::steady_clock::now();
  MatcherInput input;
  input.c4 = detach_features_ ? extracted.c4.detach() : extracted.c4;
  input.c5 = detach_features_ ? extracted.c5.detach() : extracted.c5;
  input.candidates = candidates;
  if (matcher_->uses_query_embeddings()) {
    const at::Tensor queries = candidates.queries.defined()
                                   ? candidates.queries
                                   : best_overlapping_queries(extracted.mask_logits,
                                                              candidates.masks, candidates.valid);
    const std::int64_t d = extracted.query_embeddings.size(2);
    at::Tensor embeddings = extracted.query_embeddings.gather(
        1, queries.unsqueeze(-1).expand({queries.size(0), queries.size(1), d}));
    input.candidate_embeddings = detach_features_ ? embeddings.detach() : embeddings;
  }
  input.token_ids = batch.token_ids;
  input.attention_mask = batch.attention_mask;
  if (with_losses) {
    input.negative_token_ids = batch.negative_token_ids;
    input.negative_attention_mask = batch.negative_attention_mask;
    input.negative_valid = batch.negative_valid;
    input.attribute_labels = batch.attribute_labels;
    input.attribute_weights = batch.attribute_weights;
  }
  const MatcherOutput matched = matcher_->forward(input);
  if (with_losses) {
    const at::Tensor target = on_ground_truth
                                  ? batch.target_index
                                  : best_overlapping(candidates.masks, candidates.valid,
                                                     batch.targets);
    if (matcher_losses_) {
      for (auto& [name, value] : matcher_->loss(input, matched, target)) out.losses[name] = value;
    }
    out.target = target;
  }
  out.matcher_seconds = seconds_since(matched_at);

  out.masks = on_ground_truth ? candidates.masks : (candidates.masks > 0.5).to(at::kFloat);
  out.embeddings = matched.embeddings;
  out.scores = matched.scores;
  out.valid = candidates.valid;
  out.best = matched.scores.detach().masked_fill(candidates.valid.logical_not(), -1.0).argmax(1);
  if (choose_ == "oracle") {
    out.best = best_overlapping(candidates.masks, candidates.valid, batch.targets);
  } else if (choose_ == "random") {
    // Uniform over each sample's valid candidates (the global generator: seeded by run.seed).
    const at::Tensor u = at::rand(candidates.valid.sizes(), candidates.masks.options());
    out.best = u.masked_fill(candidates.valid.logical_not(), -1.0).argmax(1);
  }
  return out;
}

TopDownModel::TopDownModel(const Config& config) {
  branch_ = register_module("branch", std::make_shared<TopDownBranch>(config));
}

nn::RisOutput TopDownModel::forward(const data::Batch& batch, bool with_losses) {
  TopDownOutput out = branch_->forward(batch, with_losses);
  nn::RisOutput result;
  const std::int64_t b = out.masks.size(0);
  const at::Tensor rows = at::arange(b, out.best.options());
  // The branch's answer is the chosen mask itself (thresholded at 0.5); Eq. 1's product with
  // the score is what WiCo fuses (top_down_result).
  result.probabilities["top_down"] = out.masks.index({rows, out.best}).unsqueeze(1);
  result.confidences["top_down"] = out.scores.index({rows, out.best}).detach();
  result.losses = std::move(out.losses);
  result.seconds["top_down"] = out.extractor_seconds + out.matcher_seconds;
  return result;
}

double TopDownModel::threshold(const std::string& branch) const {
  WICO_CHECK(branch == "top_down", "a top-down model has no branch '", branch, "'");
  return 0.5;
}

}  // namespace wico::topdown
