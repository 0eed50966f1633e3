#include "wico/wico/cfi.h"

#include <ATen/ATen.h>


#include "wico/core/error.h"

namespace wico::model {

void CfiOptions::validate() const {
  auto positive = [](std::int64_t v, const char* key) {
    if (v <= 0) throw ConfigError(std::string(key) + " must be positive (it is " + std::to_string(v) + ")");
  };
  positive(instance_dim, "the top-down embedding width");
  positive(pixel_dim, "the bottom-up embedding width");
  positive(dim, "wico.cfi_dim");
  positive(heads, "wico.cfi_heads");
  positive(ffn_dim, "wico.cfi_ffn");
  if (layers < 0) throw ConfigError("wico.cfi_layers must be >= 0");
  if (dim % heads != 0 || dim % 2 != 0) {
    throw ConfigError("wico.cfi_dim (" + std::to_string(dim) + ") must be even and a multiple of wico.cfi_heads (" +
                      std::to_string(heads) + ")");
  }
}

ComplementaryFeatureInteractionImpl::ComplementaryFeatureInteractionImpl(CfiOptions options)
    : options_(options) {
  options_.validate();
  const auto d = options_.dim;
  query_proj_ = register_module("query_proj", torch::nn::Linear(options_.instance_dim, d));
  memory_proj_ = register_module("memory_proj", torch::nn::Linear(options_.pixel_dim, d));
  torch::nn::ModuleList cross, self, self_norm, ffn;
  for (std::int64_t l = 0; l < options_.layers; ++l) {
    cross_.emplace_back(d, options_.heads, false);
    self_.emplace_back(d, options_.heads);
    self_norm_.emplace_back(torch::nn::LayerNormOptions({d}));
    ffn_.emplace_back(d, options_.ffn_dim, false);
    cross->push_back(cross_.back());
    self->push_back(self_.back());
    self_norm->push_back(self_norm_.back());
    ffn->push_back(ffn_.back());
  }
  register_module("cross", cross);
  register_module("self", self);
  register_module("self_norm", self_norm);
  register_module("ffn", ffn);
  norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  score_head_ = register_module("score_head", torch::nn::Linear(d, 1));
  {
    torch::NoGradGuard no_grad;
    score_head_->weight.zero_();
    score_head_->bias.zero_();
  }
  assign_proj_ = register_module("assign_proj", torch::nn::Linear(d, options_.pixel_dim));
  const auto p = options_.pixel_dim;
  fuse_weight_ = register_parameter("fuse_weight", at::zeros({p, 2 * p}));
  fuse_bias_ = register_parameter("fuse_bias", at::zeros({p}));
}

CfiOutput ComplementaryFeatureInteractionImpl::forward(const at::Tensor& embeddings,
                                                       const at::Tensor& scores,
                                                       const at::Tensor& valid,
                                                       const at::Tensor& masks,
                                                       const at::Tensor& pixel_embeddings) {
  const std::int64_t b = embeddings.size(0), n = embeddings.size(1);
  const std::int64_t c = pixel_embeddings.size(1), h = pixel_embeddings.size(2),
                     w = pixel_embeddings.size(3);
  const at::Tensor valid_f = valid.to(embeddings.dtype());
  // Eq. 5: queries are the score-modulated instance embeddings (padding zeroed).
  at::Tensor q = query_proj_->forward(embeddings * (scores * valid_f).unsqueeze(-1));
  const at::Tensor flat = pixel_embeddings.flatten(2).transpose(1, 2);  // [B, hw, C]
  const at::Tensor memory = memory_proj_->forward(flat);
  const at::Tensor pos = topdown::sine_position_embedding(h, w, options_.dim / 2, memory.options())
                            .flatten(1)
                            .transpose(0, 1)
                            .unsqueeze(0);  // [1, hw, dim]
  // Instances attend to the valid instances only (a sample with none attends to itself).
  at::Tensor blocked = valid.logical_not().unsqueeze(1).expand({b, n, n}).clone();
  blocked.logical_and_(at::eye(n, valid.options()).logical_not().unsqueeze(0));
  for (std::size_t l = 0; l < cross_.size(); ++l) {
    q = cross_[l]->forward(q, memory, {}, pos, {});
    q = self_norm_[l]->forward(q + self_[l]->forward(q, q, q, blocked));
    q = ffn_[l]->forward(q);
  }
  CfiOutput out;
  out.embeddings = norm_->forward(q);
  // S_hat's logits are log S plus a zero-initialised correction from E_hat: like E_p_hat, the
  // enhanced scores start equal to the matcher's, so fine-tuning starts from the trained branch.
  out.score_logits = (scores.clamp_min(1e-12).log() + score_head_->forward(out.embeddings).squeeze(-1))
                         .masked_fill(valid.logical_not(), -INFINITY);
  // A sample without valid instances would give NaN: its scores are all zero instead.
  const at::Tensor any = valid.any(1, true);
  out.scores = at::where(any, out.score_logits.masked_fill(any.logical_not(), 0).softmax(1),
                         at::zeros_like(out.score_logits));
  // Eq. 3: each pixel sums the embeddings of the instances covering it (area-resampled masks,
  // binarised, so overlapping instances add up as the indicator sum does).
  at::Tensor m = masks.to(embeddings.dtype());
  if (m.size(-2) != h || m.size(-1) != w) m = at::adaptive_avg_pool2d(m, {h, w});
  m = (m > 0.5).to(embeddings.dtype()) * valid_f.view({b, n, 1, 1});
  const at::Tensor assigned = assign_proj_->forward(out.embeddings);  // [B, N, C]
  const at::Tensor a = at::bmm(m.flatten(2).transpose(1, 2), assigned);  // [B, hw, C]
  const at::Tensor fused = at::linear(at::cat({flat, a}, -1), fuse_weight_, fuse_bias_);
  out.pixel_embeddings = pixel_embeddings + fused.transpose(1, 2).reshape({b, c, h, w});
  return out;
}

}  // namespace wico::model
