// Gaussian Scoring Integration (the paper's section 3.3): each branch's result gets a predicted
// performance distribution N(mu, sigma) (Eq. 7-8), a confidence sampled from it with the
// re-parameterisation trick in training (Eq. 9), and the two results are blended by their
// confidences (Eq. 12); the top-down result stays differentiable in its scores through a
// straight-through one-hot of argmax (Eq. 10-11).
//
// DESIGN decisions kept here: the heads predict mu and log(sigma) (3); evaluation uses mu unless
// sampling at evaluation is asked for (3); the regression target is each branch's IoU after
// binarising at tau, without gradient (4). Without the Gaussian (`si`, Table 2), a head predicts
// one value per branch and nothing is sampled.
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>

namespace wico::model {

// 3 fully connected layers (ReLU between) -> 2 outputs (mu, log sigma) or 1 (mu alone).
class ScoreHeadImpl : public torch::nn::Module {
 public:
  ScoreHeadImpl(std::int64_t in_dim, std::int64_t hidden_dim, bool gaussian);
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

// Eq. 10-11: sum_j m_j * lambda_j * s_j with lambda = one_hot(argmax s) + s - sg(s): the value is
// m_argmax * s_argmax, the gradient reaches every s_j. masks [B, N, H, W], scores [B, N] (0 on
// padding) -> [B, 1, H, W].
at::Tensor straight_through_top_down(const at::Tensor& masks, const at::Tensor& scores);

// Eq. 12: (P_td * IoU_td + P_bu * IoU_bu) / 2, the confidences [B] broadcast over [B, 1, H, W].
// The confidences are clamped to [0, 1]; the segmentation loss reaches them through the
// re-parameterised sample (the paper's reason for the trick), as well as the branches' maps.
at::Tensor blend(const at::Tensor& p_td, const at::Tensor& iou_td, const at::Tensor& p_bu,
                 const at::Tensor& iou_bu);

// Per-sample IoU [B] of `probability > threshold` against 0/1 targets [B, 1, H, W], no gradient
// (the regression target of GSI, DESIGN decision 4); empty against empty is 1.
at::Tensor binarised_iou(const at::Tensor& probability, const at::Tensor& targets,
                         double threshold);

}  // namespace wico::model
