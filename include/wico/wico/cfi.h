// Complementary Feature Interaction (the paper's section 3.2, Eq. 3-6).
//
// Bottom-up for top-down: the instance embeddings modulated by their scores (E * S, Eq. 5) are the
// queries of Mask2Former-style decoder layers (cross-attention to the pixel embeddings E_p, then
// self-attention among the sample's instances, then an FFN), giving enhanced embeddings E_hat and
// enhanced scores S_hat: softmax over the sample's valid instances of log S + a linear score of
// E_hat, that linear layer zero-initialised so that S_hat == S at the start (as decision 1 keeps
// P_bu_hat == P_bu).
//
// Top-down for bottom-up: every pixel gets the sum of the (projected) enhanced embeddings of the
// instances whose mask covers it (Eq. 3) and, per DESIGN decision 1, E_p_hat = E_p +
// fuse(concat(E_p, A)) with `fuse` a zero-initialised 1x1 layer, so that decode(E_p_hat) (Eq. 4,
// the backend's own classifier) starts out equal to P_bu.
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cstdint>
#include <vector>

#include "wico/topdown/mask2former/transformer_decoder.h"

namespace wico::model {

struct CfiOptions {
  std::int64_t instance_dim = 512;  // C of the top-down branch's E
  std::int64_t pixel_dim = 256;     // C of the bottom-up branch's E_p
  std::int64_t dim = 256;           // width of the interaction layers
  std::int64_t layers = 3, heads = 8, ffn_dim = 2048;
  void validate() const;
};

struct CfiOutput {
  at::Tensor embeddings;        // E_hat [B, N, dim]
  at::Tensor score_logits;      // [B, N], padding -inf
  at::Tensor scores;            // S_hat [B, N], softmax over valid instances, 0 on padding
  at::Tensor pixel_embeddings;  // E_p_hat [B, pixel_dim, h, w]
};

class ComplementaryFeatureInteractionImpl : public torch::nn::Module {
 public:
  explicit ComplementaryFeatureInteractionImpl(CfiOptions options);
  // embeddings E [B, N, instance_dim], scores S [B, N], valid [B, N] bool, masks M [B, N, H, W]
  // (0/1, any resolution: resized to E_p's by area), pixel_embeddings E_p [B, pixel_dim, h, w].
  CfiOutput forward(const at::Tensor& embeddings, const at::Tensor& scores,
                    const at::Tensor& valid, const at::Tensor& masks,
                    const at::Tensor& pixel_embeddings);
  const CfiOptions& options() const { return options_; }

 private:
  CfiOptions options_;
  torch::nn::Linear query_proj_{nullptr}, memory_proj_{nullptr}, score_head_{nullptr},
      assign_proj_{nullptr};
  std::vector<topdown::CrossAttentionLayer> cross_;
  std::vector<topdown::MultiheadAttention> self_;
  std::vector<torch::nn::LayerNorm> self_norm_;
  std::vector<topdown::FFNLayer> ffn_;
  torch::nn::LayerNorm norm_{nullptr};
  // fuse: [pixel_dim, 2 * pixel_dim] (a 1x1 convolution as a matrix), zero-initialised.
  at::Tensor fuse_weight_, fuse_bias_;
};
TORCH_MODULE(ComplementaryFeatureInteraction);

}  // namespace wico::model
