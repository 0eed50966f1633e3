#include "wico/wico/gsi.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "wico/core/error.h"

namespace wico::model {

ScoreHeadImpl::ScoreHeadImpl(std::int64_t in_dim, std::int64_t hidden_dim, bool gaussian,
                             double initial_log_sigma)
    : gaussian_(gaussian) {
  fc1_ = register_module("fc1", torch::nn::Linear(in_dim, hidden_dim));
  fc2_ = register_module("fc2", torch::nn::Linear(hidden_dim, hidden_dim));
  fc3_ = register_module("fc3", torch::nn::Linear(hidden_dim, gaussian ? 2 : 1));
  if (gaussian) {
    const at::NoGradGuard no_grad;
    fc3_->weight[1].zero_();
    fc3_->bias[1].fill_(initial_log_sigma);
  }
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

TopDownMap parse_top_down_map(const std::string& name) {
  if (name == "score") return TopDownMap::kScore;
  if (name == "binary") return TopDownMap::kBinary;
  throw ConfigError("wico.td_map '" + name + "' is not one of score, binary");
}

at::Tensor straight_through_top_down(const at::Tensor& masks, const at::Tensor& scores,
                                     TopDownMap map) {
  const at::Tensor hard = at::one_hot(scores.detach().argmax(1), scores.size(1)).to(scores.dtype());
  const at::Tensor lambda = hard + scores - scores.detach();
  const at::Tensor weights = map == TopDownMap::kScore ? lambda * scores : lambda;
  return at::einsum("bnhw,bn->bhw", {masks, weights}).unsqueeze(1);
}

at::Tensor candidate_score_statistics(const at::Tensor& scores, const at::Tensor& valid) {
  const at::Tensor s = scores.masked_fill(valid.logical_not(), 0.0);
  const auto top = s.topk(std::min<std::int64_t>(2, s.size(1)), 1);
  const at::Tensor first = std::get<0>(top).select(1, 0);
  const at::Tensor second = s.size(1) > 1 ? std::get<0>(top).select(1, 1) : at::zeros_like(first);
  const at::Tensor entropy = -(s * s.clamp_min(1e-12).log()).sum(1);
  return at::stack({first, first - second, entropy}, 1);
}

Blend parse_blend(const std::string& name) {
  if (name == "paper") return Blend::kPaper;
  if (name == "normalised") return Blend::kNormalised;
  throw ConfigError("wico.blend '" + name + "' is not one of paper, normalised");
}

at::Tensor blend(const at::Tensor& p_td, const at::Tensor& iou_td, const at::Tensor& p_bu,
                 const at::Tensor& iou_bu, Blend kind) {
  const auto b = p_td.size(0);
  const at::Tensor w_td = iou_td.clamp(0.0, 1.0).view({b, 1, 1, 1});
  const at::Tensor w_bu = iou_bu.clamp(0.0, 1.0).view({b, 1, 1, 1});
  if (kind == Blend::kPaper) return (p_td * w_td + p_bu * w_bu) / 2;
  constexpr double kFloor = 1e-4;  // 0 and 0 blend as Average, not as 0 / 0
  return (p_td * (w_td + kFloor) + p_bu * (w_bu + kFloor)) / (w_td + w_bu + 2 * kFloor);
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
