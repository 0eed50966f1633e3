#include "wico/wico/gsi.h"

#include <ATen/ATen.h>

namespace wico::model {

ScoreHeadImpl::ScoreHeadImpl(std::int64_t in_dim, std::int64_t hidden_dim, bool gaussian)
    : gaussian_(gaussian) {
  fc1_ = register_module("fc1", torch::nn::Linear(in_dim, hidden_dim));
  fc2_ = register_module("fc2", torch::nn::Linear(hidden_dim, hidden_dim));
  fc3_ = register_module("fc3", torch::nn::Linear(hidden_dim, gaussian ? 2 : 1));
}

at::Tensor ScoreHeadImpl::forward(const at::Tensor& features) {
  return fc3_->forward(at::relu(fc2_->forward(at::relu(fc1_->forward(features)))));
}

BranchScore score_branch(const at::Tensor& head_output, bool sample) {
  BranchScore s;
  // An IoU lies in [0, 1]: mu is squashed into it (a negative confidence would flip the sign of
  // the blend's gradient to its branch).
  s.mu = head_output.select(1, 0).sigmoid();
  if (head_output.size(1) == 1) {
    s.sampled = s.mu;
    return s;
  }
  s.log_sigma = head_output.select(1, 1);
  s.sampled = sample ? s.mu + s.log_sigma.exp() * at::randn_like(s.mu) : s.mu;
  return s;
}

at::Tensor straight_through_top_down(const at::Tensor& masks, const at::Tensor& scores) {
  const at::Tensor hard = at::one_hot(scores.detach().argmax(1), scores.size(1)).to(scores.dtype());
  const at::Tensor lambda = hard + scores - scores.detach();
  return at::einsum("bnhw,bn->bhw", {masks, lambda * scores}).unsqueeze(1);
}

at::Tensor blend(const at::Tensor& p_td, const at::Tensor& iou_td, const at::Tensor& p_bu,
                 const at::Tensor& iou_bu) {
  const auto b = p_td.size(0);
  const at::Tensor w_td = iou_td.clamp(0.0, 1.0).view({b, 1, 1, 1});
  const at::Tensor w_bu = iou_bu.clamp(0.0, 1.0).view({b, 1, 1, 1});
  return (p_td * w_td + p_bu * w_bu) / 2;
}

at::Tensor binarised_iou(const at::Tensor& probability, const at::Tensor& targets,
                         double threshold) {
  const at::NoGradGuard no_grad;
  const at::Tensor p = (probability > threshold).flatten(1).to(at::kFloat);
  const at::Tensor t = (targets > 0.5).flatten(1).to(at::kFloat);
  const at::Tensor inter = (p * t).sum(1);
  const at::Tensor uni = p.sum(1) + t.sum(1) - inter;
  return at::where(uni > 0, inter / uni.clamp_min(1.0), at::ones_like(uni));
}

}  // namespace wico::model
