// Mask2Former's masked-attention transformer decoder (Cheng et al., CVPR 2022;
// facebookresearch/Mask2Former, mask2former/modeling/transformer_decoder/
// mask2former_transformer_decoder.py, MultiScaleMaskedTransformerDecoder).
//
// Learned queries (query_feat, with the learned positional query_embed added to queries and keys)
// run through num_layers blocks of cross-attention -> self-attention -> FFN, the block i attending
// to feature level i % num_feature_levels (coarsest first) plus its level embedding and a sine
// positional embedding (normalised, as DETR's PositionEmbeddingSine). Before every block the
// prediction heads (decoder_norm, class_embed, 3-layer mask_embed MLP dotted with mask_features)
// predict masks; the next block's cross-attention may only attend where that prediction,
// resized bilinearly to the level, has sigmoid >= 0.5 (a query whose mask blocks every key
// attends everywhere). The predictions before the last are deep supervision.
//
// Parameter names are the original's state_dict names (transformer_cross_attention_layers.i.
// multihead_attn.in_proj_weight, transformer_ffn_layers.i.linear1.weight, decoder_norm.weight,
// query_feat.weight, level_embed.weight, class_embed.weight, mask_embed.layers.2.bias, ...), so a
// checkpoint maps by name. input_proj.i (only when in_channels != hidden_dim or
// enforce_input_project) keeps the 1x1 convolution's [hidden, in, 1, 1] weight but is applied as
// a linear map: oneDNN's CPU backward of 1x1 convolutions has given nondeterministic gradients.
// Dropout is 0 in the original and absent here.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace wico::topdown {

// Paper values are the R50 COCO instance model's (DEC_LAYERS 10 in the yaml = 9 blocks here, the
// original subtracts the prediction on the bare learned queries).
struct TransformerDecoderOptions {
  std::int64_t in_channels = 256, hidden_dim = 256, num_queries = 100, num_heads = 8,
               ffn_dim = 2048, num_layers = 9, mask_dim = 256, num_classes = 80;
  std::int64_t num_feature_levels = 3;
  bool pre_norm = false;
  bool enforce_input_project = false;  // an input projection even when in_channels == hidden_dim
  // Throws wico::ConfigError naming the offending option.
  void validate() const;
};

struct DecoderPredictions {
  at::Tensor class_logits;      // [B, Q, K+1] (last: no object)
  at::Tensor mask_logits;       // [B, Q, h4, w4] (on mask_features' grid)
  at::Tensor query_embeddings;  // [B, Q, hidden] decoder_norm output of the last layer
  // Earlier predictions {class, mask}, first (on the bare learned queries) to last: num_layers.
  std::vector<std::pair<at::Tensor, at::Tensor>> auxiliary;
};

// torch.nn.MultiheadAttention (batch first here, no dropout, no bias_k/bias_v) with the same
// parameters: in_proj_weight [3E, E], in_proj_bias [3E], out_proj (Linear E -> E).
class MultiheadAttentionImpl : public torch::nn::Module {
 public:
  MultiheadAttentionImpl(std::int64_t embed_dim, std::int64_t num_heads);
  // query [B, Lq, E], key and value [B, Lk, E]; attn_mask bool [B, Lq, Lk] or [Lq, Lk], true =
  // blocked (a row blocked everywhere gives NaN, as torch's: the caller unblocks such rows), or
  // undefined -> [B, Lq, E].
  at::Tensor forward(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                     const at::Tensor& attn_mask = {});

  at::Tensor in_proj_weight, in_proj_bias;
  torch::nn::Linear out_proj{nullptr};

 private:
  std::int64_t num_heads_;
};
TORCH_MODULE(MultiheadAttention);

// tgt + attention(q = k = tgt + query_pos, v = tgt), then LayerNorm (post-norm), or the LayerNorm
// first and no final one (pre-norm).
class SelfAttentionLayerImpl : public torch::nn::Module {
 public:
  SelfAttentionLayerImpl(std::int64_t d_model, std::int64_t nhead, bool normalize_before);
  at::Tensor forward(const at::Tensor& tgt, const at::Tensor& query_pos);
  MultiheadAttention self_attn{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  bool normalize_before_;
};
TORCH_MODULE(SelfAttentionLayer);

// tgt + attention(q = tgt + query_pos, k = memory + pos, v = memory, memory_mask), norm as above;
// an undefined pos or query_pos adds nothing.
class CrossAttentionLayerImpl : public torch::nn::Module {
 public:
  CrossAttentionLayerImpl(std::int64_t d_model, std::int64_t nhead, bool normalize_before);
  at::Tensor forward(const at::Tensor& tgt, const at::Tensor& memory, const at::Tensor& memory_mask,
                     const at::Tensor& pos, const at::Tensor& query_pos);
  MultiheadAttention multihead_attn{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  bool normalize_before_;
};
TORCH_MODULE(CrossAttentionLayer);

// tgt + linear2(relu(linear1(tgt))), norm as above.
class FFNLayerImpl : public torch::nn::Module {
 public:
  FFNLayerImpl(std::int64_t d_model, std::int64_t dim_feedforward, bool normalize_before);
  at::Tensor forward(const at::Tensor& tgt);
  torch::nn::Linear linear1{nullptr}, linear2{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  bool normalize_before_;
};
TORCH_MODULE(FFNLayer);

// Linear layers with ReLU between them (the original's MLP: `layers.i`).
class MLPImpl : public torch::nn::Module {
 public:
  MLPImpl(std::int64_t input_dim, std::int64_t hidden_dim, std::int64_t output_dim,
          std::int64_t num_layers);
  at::Tensor forward(at::Tensor x);
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(MLP);

// A 1x1 convolution's parameters (weight [out, in, 1, 1], bias [out]) applied as a linear map
// over channels; c2_xavier_fill initialisation (kaiming_uniform a = 1, bias 0) as the original.
class PointwiseProjectionImpl : public torch::nn::Module {
 public:
  PointwiseProjectionImpl(std::int64_t in_channels, std::int64_t out_channels);
  at::Tensor forward(const at::Tensor& x);  // [B, in, h, w] -> [B, out, h, w]
  at::Tensor weight, bias;
};
TORCH_MODULE(PointwiseProjection);

// DETR's PositionEmbeddingSine(num_pos_feats, temperature 10000, normalize=True, scale 2 pi)
// without a padding mask: [2 * num_pos_feats, h, w] (y features, then x features).
at::Tensor sine_position_embedding(std::int64_t h, std::int64_t w, std::int64_t num_pos_feats,
                                   const at::TensorOptions& options);

// The attention mask the next block uses: mask_logits [B, Q, h4, w4] resized bilinearly
// (align_corners false) to h x w, true (blocked) where sigmoid < 0.5 -> bool [B, Q, h * w],
// detached. Rows blocked everywhere are left as they are (the decoder unblocks them).
at::Tensor attention_mask_from_prediction(const at::Tensor& mask_logits, std::int64_t h,
                                          std::int64_t w);

class MaskedTransformerDecoderImpl : public torch::nn::Module {
 public:
  explicit MaskedTransformerDecoderImpl(TransformerDecoderOptions options);

  // multi_scale: num_feature_levels maps [B, in_channels, h_l, w_l], coarsest first;
  // mask_features [B, mask_dim, H/4, W/4].
  //
  // auxiliary false (inference: nothing reads the deep supervision) leaves
  // DecoderPredictions::auxiliary empty and predicts the masks that only steer the next block's
  // attention at that block's level size directly, from mask_features resized to it: resizing
  // is linear per channel, so resize(embed . features) = embed . resize(features) and the
  // attention masks are the original's up to float rounding (a logit within about 1e-6 of 0 may
  // fall on the other side), for a tenth of the products at paper size (docs/design.md).
  DecoderPredictions forward(const std::vector<at::Tensor>& multi_scale,
                             const at::Tensor& mask_features, bool auxiliary = true);

  // decoder_norm, class_embed, mask_embed on queries [B, Q, hidden]:
  // {class logits, mask logits, normalised queries}.
  struct Heads {
    at::Tensor class_logits, mask_logits, queries;
  };
  Heads prediction_heads(const at::Tensor& output, const at::Tensor& mask_features);
  // The mask logits alone (decoder_norm, mask_embed and the product): the inference path's
  // attention masks, which need no class logits.
  at::Tensor mask_logits(const at::Tensor& output, const at::Tensor& mask_features);

  const TransformerDecoderOptions& options() const { return options_; }

  torch::nn::ModuleList transformer_self_attention_layers{nullptr};
  torch::nn::ModuleList transformer_cross_attention_layers{nullptr};
  torch::nn::ModuleList transformer_ffn_layers{nullptr};
  torch::nn::LayerNorm decoder_norm{nullptr};
  torch::nn::Embedding query_feat{nullptr}, query_embed{nullptr}, level_embed{nullptr};
  torch::nn::ModuleList input_proj{nullptr};  // empty when in_channels == hidden_dim
  torch::nn::Linear class_embed{nullptr};
  MLP mask_embed{nullptr};

 private:
  TransformerDecoderOptions options_;
};
TORCH_MODULE(MaskedTransformerDecoder);

}  // namespace wico::topdown
