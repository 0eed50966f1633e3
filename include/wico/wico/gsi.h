// Gaussian Scoring Integration (the paper's section 3.3): each branch's result gets a predicted
// performance distribution N(mu, sigma) (Eq. 7-8), a confidence sampled from it with the
// re-parameterisation trick in training (Eq. 9), and the two results are blended by their
// confidences (Eq. 12); the top-down result stays differentiable in its scores through a
// straight-through one-hot of argmax (Eq. 10-11).
//
// DESIGN decisions kept here: the heads predict mu and log(sigma) (3); evaluation uses mu unless
// sampling at evaluation is asked for (3); the regression target is each branch's IoU after
// binarising at that branch's own threshold, without gradient (4). Without the Gaussian (`si`,
// Table 2), a head predicts one value per branch and nothing is sampled. Decision 8 (docs/design.md):
// Eq. 12 as printed is one of two blends; the normalised weighted mean is the default.
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <string>

namespace wico::model {

// 3 fully connected layers (ReLU between) -> 2 outputs (mu, log sigma) or 1 (mu alone).
// log sigma starts at `initial_log_sigma` for every input (its output row starts at zero, its
// bias at that value): a sigma near 1 at the start would clamp most samples to 0 or 1, where the
// blend passes no gradient.
class ScoreHeadImpl : public torch::nn::Module {
 public:
  ScoreHeadImpl(std::int64_t in_dim, std::int64_t hidden_dim, bool gaussian,
                double initial_log_sigma = -3.0);
  // features [B, in_dim] -> [B, 2] or [B, 1]
  at::Tensor forward(const at::Tensor& features);
  bool gaussian() const { return gaussian_; }

 private:
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr}, fc3_{nullptr};
  bool gaussian_;
};
TORCH_MODULE(ScoreHead);

struct BranchScore {
  at::Tensor mu;         // [B]
  at::Tensor log_sigma;  // [B]; undefined without the Gaussian
  at::Tensor sampled;    // [B] the confidence used in the blend (Eq. 9, or mu)
};

// Splits a head's output [B, 2] (or [B, 1]) into mu = sigmoid(out0) (an IoU lies in [0, 1]) and
// log sigma = out1, and draws the confidence: mu + exp(log_sigma) * eps when `sample` (eps from
// the global generator, so a seed fixes it), mu otherwise.
BranchScore score_branch(const at::Tensor& head_output, bool sample);

// What the top-down branch brings to a blend (`wico.td_map`): Eq. 11's m_argmax * s_argmax
// (kScore) or the binary mask m_argmax itself (kBinary: the paper's "binary segmentation result";
// on the same 0-1 scale as the bottom-up probabilities).
enum class TopDownMap { kScore, kBinary };
TopDownMap parse_top_down_map(const std::string& name);

// Eq. 10-11 with lambda = one_hot(argmax s) + s - sg(s). kScore: sum_j m_j * lambda_j * s_j, the
// value m_argmax * s_argmax; kBinary: sum_j m_j * lambda_j, the value m_argmax. Either way the
// gradient reaches every s_j. masks [B, N, H, W], scores [B, N] (0 on padding) -> [B, 1, H, W].
at::Tensor straight_through_top_down(const at::Tensor& masks, const at::Tensor& scores,
                                     TopDownMap map = TopDownMap::kScore);

// Statistics of a sample's candidate scores [B, N] (0 on padding) -> [B, 3]: the largest score,
// its margin over the second, and the entropy of the scores over the valid candidates; extra
// inputs of the top-down score head (`wico.td_score_stats`).
at::Tensor candidate_score_statistics(const at::Tensor& scores, const at::Tensor& valid);

// How the results are weighted (`wico.blend`):
//   kPaper       Eq. 12 as printed: (P_td * IoU_td + P_bu * IoU_bu) / 2, never above Average;
//   kNormalised  (P_td * IoU_td + P_bu * IoU_bu) / (IoU_td + IoU_bu): a weighted mean, equal to
//                Average when the confidences are equal (a tiny floor keeps 0 + 0 defined: Average).
enum class Blend { kPaper, kNormalised };
Blend parse_blend(const std::string& name);

// The confidences [B] are clamped to [0, 1] and broadcast over the maps [B, 1, H, W].
at::Tensor blend(const at::Tensor& p_td, const at::Tensor& iou_td, const at::Tensor& p_bu,
                 const at::Tensor& iou_bu, Blend kind = Blend::kPaper);

// Per-sample IoU [B] of `probability > threshold` against 0/1 targets [B, 1, H, W], no gradient
// (the regression target of GSI, DESIGN decision 4); empty against empty is 1.
at::Tensor binarised_iou(const at::Tensor& probability, const at::Tensor& targets,
                         double threshold);

}  // namespace wico::model
