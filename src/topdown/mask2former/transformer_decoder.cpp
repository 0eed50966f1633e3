#include "wico/topdown/mask2former/transformer_decoder.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>
#include <limits>
#include <string>

#include "wico/core/error.h"
#include "wico/nn/linear.h"

namespace wico::topdown {

namespace {

void require(bool condition, const std::string& message) {
  if (!condition) throw ConfigError("transformer decoder: " + message);
}

// The original's _reset_parameters of its attention and FFN layers: Xavier-uniform every
// parameter of two or more dimensions.
void xavier_matrices(torch::nn::Module& module) {
  const at::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    if (p.dim() > 1) torch::nn::init::xavier_uniform_(p);
  }
}

at::Tensor layer_norm(torch::nn::LayerNorm& norm, const at::Tensor& x) { return norm->forward(x); }

}  // namespace

void TransformerDecoderOptions::validate() const {
  require(in_channels > 0, "in_channels must be positive, got " + std::to_string(in_channels));
  require(hidden_dim > 0 && hidden_dim % 2 == 0,
          "hidden_dim must be positive and even (the sine position embedding splits it between "
          "y and x), got " +
              std::to_string(hidden_dim));
  require(num_heads > 0 && hidden_dim % num_heads == 0,
          "num_heads must be positive and divide hidden_dim " + std::to_string(hidden_dim) +
              ", got " + std::to_string(num_heads));
  require(num_queries > 0, "num_queries must be positive, got " + std::to_string(num_queries));
  require(ffn_dim > 0, "ffn_dim must be positive, got " + std::to_string(ffn_dim));
  require(num_layers >= 0, "num_layers must be >= 0, got " + std::to_string(num_layers));
  require(mask_dim > 0, "mask_dim must be positive, got " + std::to_string(mask_dim));
  require(num_classes > 0, "num_classes must be positive, got " + std::to_string(num_classes));
  require(num_feature_levels > 0,
          "num_feature_levels must be positive, got " + std::to_string(num_feature_levels));
}

// ---- attention layers --------------------------------------------------------------------------

MultiheadAttentionImpl::MultiheadAttentionImpl(std::int64_t embed_dim, std::int64_t num_heads)
    : num_heads_(num_heads) {
  in_proj_weight = register_parameter("in_proj_weight", at::empty({3 * embed_dim, embed_dim}));
  in_proj_bias = register_parameter("in_proj_bias", at::zeros({3 * embed_dim}));
  out_proj = register_module("out_proj", torch::nn::Linear(embed_dim, embed_dim));
  const at::NoGradGuard no_grad;
  torch::nn::init::xavier_uniform_(in_proj_weight);
  out_proj->bias.zero_();
}

at::Tensor MultiheadAttentionImpl::forward(const at::Tensor& query, const at::Tensor& key,
                                           const at::Tensor& value, const at::Tensor& attn_mask) {
  const std::int64_t b = query.size(0), lq = query.size(1), lk = key.size(1);
  const std::int64_t e = query.size(2), d = e / num_heads_;
  const auto w = in_proj_weight.chunk(3), bias = in_proj_bias.chunk(3);
  const auto heads = [&](const at::Tensor& x, std::int64_t len) {
    return x.view({b, len, num_heads_, d}).transpose(1, 2);  // [B, H, L, d]
  };
  // torch divides q by sqrt(head_dim) before the product.
  const at::Tensor q = heads(nn::linear(query, w[0], bias[0]), lq) / std::sqrt(double(d));
  const at::Tensor k = heads(nn::linear(key, w[1], bias[1]), lk);
  const at::Tensor v = heads(nn::linear(value, w[2], bias[2]), lk);
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1));  // [B, H, Lq, Lk]
  if (attn_mask.defined()) {
    const at::Tensor mask = attn_mask.dim() == 3 ? attn_mask.unsqueeze(1) : attn_mask;
    scores = scores.masked_fill(mask, -std::numeric_limits<double>::infinity());
  }
  const at::Tensor out = at::matmul(scores.softmax(-1), v).transpose(1, 2).reshape({b, lq, e});
  return nn::linear(out, out_proj);
}

SelfAttentionLayerImpl::SelfAttentionLayerImpl(std::int64_t d_model, std::int64_t nhead,
                                               bool normalize_before)
    : normalize_before_(normalize_before) {
  self_attn = register_module("self_attn", MultiheadAttention(d_model, nhead));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  xavier_matrices(*this);
}

at::Tensor SelfAttentionLayerImpl::forward(const at::Tensor& tgt, const at::Tensor& query_pos) {
  if (normalize_before_) {
    const at::Tensor t = layer_norm(norm, tgt);
    const at::Tensor qk = t + query_pos;
    return tgt + self_attn->forward(qk, qk, t);
  }
  const at::Tensor qk = tgt + query_pos;
  return layer_norm(norm, tgt + self_attn->forward(qk, qk, tgt));
}

CrossAttentionLayerImpl::CrossAttentionLayerImpl(std::int64_t d_model, std::int64_t nhead,
                                                 bool normalize_before)
    : normalize_before_(normalize_before) {
  multihead_attn = register_module("multihead_attn", MultiheadAttention(d_model, nhead));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  xavier_matrices(*this);
}

at::Tensor CrossAttentionLayerImpl::forward(const at::Tensor& tgt, const at::Tensor& memory,
                                            const at::Tensor& memory_mask, const at::Tensor& pos,
                                            const at::Tensor& query_pos) {
  // Undefined positions add nothing (CFI's queries have none).
  const at::Tensor key = pos.defined() ? memory + pos : memory;
  auto with_pos = [&](const at::Tensor& t) { return query_pos.defined() ? t + query_pos : t; };
  if (normalize_before_) {
    const at::Tensor t = layer_norm(norm, tgt);
    return tgt + multihead_attn->forward(with_pos(t), key, memory, memory_mask);
  }
  return layer_norm(norm, tgt + multihead_attn->forward(with_pos(tgt), key, memory, memory_mask));
}

FFNLayerImpl::FFNLayerImpl(std::int64_t d_model, std::int64_t dim_feedforward,
                           bool normalize_before)
    : normalize_before_(normalize_before) {
  linear1 = register_module("linear1", torch::nn::Linear(d_model, dim_feedforward));
  linear2 = register_module("linear2", torch::nn::Linear(dim_feedforward, d_model));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  xavier_matrices(*this);
}

at::Tensor FFNLayerImpl::forward(const at::Tensor& tgt) {
  if (normalize_before_) {
    return tgt + nn::linear(at::relu(nn::linear(layer_norm(norm, tgt), linear1)), linear2);
  }
  return layer_norm(norm, tgt + nn::linear(at::relu(nn::linear(tgt, linear1)), linear2));
}

MLPImpl::MLPImpl(std::int64_t input_dim, std::int64_t hidden_dim, std::int64_t output_dim,
                 std::int64_t num_layers) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < num_layers; ++i) {
    layers->push_back(torch::nn::Linear(i == 0 ? input_dim : hidden_dim,
                                        i + 1 == num_layers ? output_dim : hidden_dim));
  }
}

at::Tensor MLPImpl::forward(at::Tensor x) {
  const std::size_t n = layers->size();
  for (std::size_t i = 0; i < n; ++i) {
    const auto* layer = layers->ptr<torch::nn::LinearImpl>(i).get();
    x = nn::linear(x, layer->weight, layer->bias);
    if (i + 1 < n) x = at::relu(x);
  }
  return x;
}

PointwiseProjectionImpl::PointwiseProjectionImpl(std::int64_t in_channels,
                                                 std::int64_t out_channels) {
  weight = register_parameter("weight", at::empty({out_channels, in_channels, 1, 1}));
  bias = register_parameter("bias", at::zeros({out_channels}));
  const at::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, /*a=*/1.0);
}

at::Tensor PointwiseProjectionImpl::forward(const at::Tensor& x) {
  // Channels last, a matrix product, channels first again: a 1x1 convolution without oneDNN.
  return nn::linear(x.permute({0, 2, 3, 1}), weight.flatten(1), bias).permute({0, 3, 1, 2});
}

// ---- position embedding and attention masks ----------------------------------------------------

at::Tensor sine_position_embedding(std::int64_t h, std::int64_t w, std::int64_t num_pos_feats,
                                   const at::TensorOptions& options) {
  // The original's arithmetic in float32, op for op (cumsum of the unpadded mask = 1..n).
  const auto f32 = options.dtype(at::kFloat);
  constexpr double kEps = 1e-6, kScale = 2 * M_PI;
  at::Tensor y_embed = at::ones({1, h, w}, f32).cumsum(1, at::kFloat);
  at::Tensor x_embed = at::ones({1, h, w}, f32).cumsum(2, at::kFloat);
  y_embed = y_embed / (y_embed.narrow(1, h - 1, 1) + kEps) * kScale;
  x_embed = x_embed / (x_embed.narrow(2, w - 1, 1) + kEps) * kScale;
  at::Tensor dim_t = at::arange(num_pos_feats, f32);
  dim_t = at::pow(10000.0, 2 * at::div(dim_t, 2, "floor") / num_pos_feats);  // dim_t // 2
  const auto interleave = [](const at::Tensor& p) {
    using at::indexing::Slice;
    return at::stack({p.index({"...", Slice(0, at::indexing::None, 2)}).sin(),
                      p.index({"...", Slice(1, at::indexing::None, 2)}).cos()},
                     4)
        .flatten(3);
  };
  const at::Tensor pos_x = interleave(x_embed.unsqueeze(-1) / dim_t);
  const at::Tensor pos_y = interleave(y_embed.unsqueeze(-1) / dim_t);
  return at::cat({pos_y, pos_x}, 3).permute({0, 3, 1, 2})[0].to(options.dtype().toScalarType());
}

at::Tensor attention_mask_from_prediction(const at::Tensor& mask_logits, std::int64_t h,
                                          std::int64_t w) {
  const at::NoGradGuard no_grad;
  const at::Tensor resized =
      at::upsample_bilinear2d(mask_logits, at::IntArrayRef({h, w}), /*align_corners=*/false);
  return resized.sigmoid().flatten(2) < 0.5;
}

// ---- the decoder -------------------------------------------------------------------------------

MaskedTransformerDecoderImpl::MaskedTransformerDecoderImpl(TransformerDecoderOptions options)
    : options_(options) {
  options_.validate();
  const auto& o = options_;
  transformer_self_attention_layers =
      register_module("transformer_self_attention_layers", torch::nn::ModuleList());
  transformer_cross_attention_layers =
      register_module("transformer_cross_attention_layers", torch::nn::ModuleList());
  transformer_ffn_layers = register_module("transformer_ffn_layers", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < o.num_layers; ++i) {
    transformer_self_attention_layers->push_back(
        SelfAttentionLayer(o.hidden_dim, o.num_heads, o.pre_norm));
    transformer_cross_attention_layers->push_back(
        CrossAttentionLayer(o.hidden_dim, o.num_heads, o.pre_norm));
    transformer_ffn_layers->push_back(FFNLayer(o.hidden_dim, o.ffn_dim, o.pre_norm));
  }
  decoder_norm = register_module("decoder_norm",
                                 torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.hidden_dim})));
  query_feat = register_module("query_feat", torch::nn::Embedding(o.num_queries, o.hidden_dim));
  query_embed = register_module("query_embed", torch::nn::Embedding(o.num_queries, o.hidden_dim));
  level_embed =
      register_module("level_embed", torch::nn::Embedding(o.num_feature_levels, o.hidden_dim));
  input_proj = register_module("input_proj", torch::nn::ModuleList());
  if (o.in_channels != o.hidden_dim || o.enforce_input_project) {
    for (std::int64_t i = 0; i < o.num_feature_levels; ++i) {
      input_proj->push_back(PointwiseProjection(o.in_channels, o.hidden_dim));
    }
  }
  class_embed = register_module("class_embed", torch::nn::Linear(o.hidden_dim, o.num_classes + 1));
  mask_embed = register_module("mask_embed", MLP(o.hidden_dim, o.hidden_dim, o.mask_dim, 3));
}

namespace {

// einsum("bqc,bchw->bqhw", embed, mask_features) as one batched product. One image: a plain
// matrix product (the BLAS runs it 1.4x faster than a batch of one at Q = 100); with
// channels-last features (the inference layout) their [HW, C] rows are a Linear layer's weight,
// which goes to the inference backend (wico/nn/linear.h).
at::Tensor masks_from_embeddings(const at::Tensor& embed, const at::Tensor& mask_features) {
  const auto b = mask_features.size(0), c = mask_features.size(1), h = mask_features.size(2),
             w = mask_features.size(3);
  at::Tensor logits;
  if (b == 1 && !mask_features.is_contiguous() &&
      mask_features.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    logits =
        nn::linear(embed[0], mask_features[0].permute({1, 2, 0}).reshape({h * w, c})).unsqueeze(0);
  } else {
    const at::Tensor features = mask_features.flatten(2);  // [B, C, HW]
    logits = b == 1 ? at::mm(embed[0], features[0]).unsqueeze(0) : at::matmul(embed, features);
  }
  return logits.view({b, embed.size(1), h, w});
}

}  // namespace

MaskedTransformerDecoderImpl::Heads MaskedTransformerDecoderImpl::prediction_heads(
    const at::Tensor& output, const at::Tensor& mask_features) {
  Heads heads;
  heads.queries = decoder_norm->forward(output);
  heads.class_logits = nn::linear(heads.queries, class_embed);
  heads.mask_logits = masks_from_embeddings(mask_embed->forward(heads.queries), mask_features);
  return heads;
}

at::Tensor MaskedTransformerDecoderImpl::mask_logits(const at::Tensor& output,
                                                     const at::Tensor& mask_features) {
  return masks_from_embeddings(mask_embed->forward(decoder_norm->forward(output)), mask_features);
}

DecoderPredictions MaskedTransformerDecoderImpl::forward(const std::vector<at::Tensor>& multi_scale,
                                                         const at::Tensor& mask_features,
                                                         bool auxiliary) {
  const auto& o = options_;
  if (static_cast<std::int64_t>(multi_scale.size()) != o.num_feature_levels) {
    throw Error("transformer decoder: expected " + std::to_string(o.num_feature_levels) +
                " feature levels, got " + std::to_string(multi_scale.size()));
  }
  WICO_CHECK(mask_features.dim() == 4 && mask_features.size(1) == o.mask_dim,
             "mask_features must be [B, ", o.mask_dim, ", h, w], got ", mask_features.sizes());
  const std::int64_t b = mask_features.size(0);
  std::vector<at::Tensor> src, pos;  // [B, hw, hidden]
  std::vector<std::pair<std::int64_t, std::int64_t>> sizes;
  for (std::int64_t l = 0; l < o.num_feature_levels; ++l) {
    const at::Tensor& x = multi_scale[l];
    WICO_CHECK(x.dim() == 4 && x.size(0) == b && x.size(1) == o.in_channels, "level ", l,
               " must be [", b, ", ", o.in_channels, ", h, w], got ", x.sizes());
    const std::int64_t h = x.size(2), w = x.size(3);
    sizes.emplace_back(h, w);
    pos.push_back(sine_position_embedding(h, w, o.hidden_dim / 2, x.options())
                      .flatten(1)
                      .t()
                      .unsqueeze(0));  // [1, hw, hidden], the same for every image
    const at::Tensor projected =
        input_proj->is_empty() ? x : input_proj->ptr<PointwiseProjectionImpl>(l)->forward(x);
    src.push_back(projected.flatten(2).transpose(1, 2) + level_embed->weight[l]);
  }

  const at::Tensor query_pos = query_embed->weight.unsqueeze(0).expand({b, -1, -1});
  at::Tensor output = query_feat->weight.unsqueeze(0).expand({b, -1, -1});

  DecoderPredictions out;
  // The next block's attention mask from the queries so far: in the original (and whenever the
  // deep supervision is wanted) from the full-resolution prediction, resized; otherwise
  // predicted at the level's size from mask_features resized once per level.
  std::vector<at::Tensor> level_features;
  if (!auxiliary) {
    const at::NoGradGuard no_grad;
    for (const auto& [h, w] : sizes) {
      level_features.push_back(at::upsample_bilinear2d(mask_features, at::IntArrayRef({h, w}),
                                                       /*align_corners=*/false));
    }
  }
  Heads heads;
  auto attention_mask_for = [&](const at::Tensor& queries, std::int64_t level) {
    if (auxiliary) {
      heads = prediction_heads(queries, mask_features);
      out.auxiliary.emplace_back(heads.class_logits, heads.mask_logits);
      return attention_mask_from_prediction(heads.mask_logits, sizes[level].first,
                                            sizes[level].second);
    }
    const at::NoGradGuard no_grad;
    return mask_logits(queries, level_features[level]).sigmoid().flatten(2) < 0.5;
  };
  at::Tensor attn_mask = attention_mask_for(output, 0);
  for (std::int64_t i = 0; i < o.num_layers; ++i) {
    const std::int64_t level = i % o.num_feature_levels;
    // A query whose previous mask covers no key of this level attends to all of them.
    attn_mask = attn_mask.logical_and(attn_mask.all(-1, /*keepdim=*/true).logical_not());
    output = transformer_cross_attention_layers->ptr<CrossAttentionLayerImpl>(i)->forward(
        output, src[level], attn_mask, pos[level], query_pos);
    output = transformer_self_attention_layers->ptr<SelfAttentionLayerImpl>(i)->forward(output,
                                                                                        query_pos);
    output = transformer_ffn_layers->ptr<FFNLayerImpl>(i)->forward(output);
    if (i + 1 < o.num_layers) attn_mask = attention_mask_for(output, (i + 1) % o.num_feature_levels);
  }
  heads = prediction_heads(output, mask_features);
  out.class_logits = heads.class_logits;
  out.mask_logits = heads.mask_logits;
  out.query_embeddings = heads.queries;
  return out;
}

}  // namespace wico::topdown
