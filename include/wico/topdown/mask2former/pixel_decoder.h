// Mask2Former's pixel decoder (Cheng et al., CVPR 2022; facebookresearch/Mask2Former
// mask2former/modeling/pixel_decoder/msdeformattn.py, MSDeformAttnPixelDecoder): the coarsest
// `transformer_in_levels` backbone features (res3..res5) go through a 1x1 projection + GroupNorm
// and a deformable-attention transformer encoder (MSDeformAttn self-attention + ReLU FFN,
// post-norm, sine position embedding + a learnt level embedding); the finer features (res2) join
// FPN-style (lateral 1x1 + GN, + bilinear upsampling of the coarser output, 3x3 + GN + ReLU); a
// 1x1 convolution of the finest map gives the mask features.
//
// Parameter names are the original's state_dict names (under sem_seg_head.pixel_decoder. in a
// full Mask2Former checkpoint):
//   input_proj.{i}.0.{weight,bias}   1x1 conv [conv_dim, C, 1, 1] of level i, coarsest first
//   input_proj.{i}.1.{weight,bias}   its GroupNorm
//   transformer.level_embed          [levels, conv_dim]
//   transformer.encoder.layers.{k}.self_attn.{sampling_offsets,attention_weights,value_proj,
//                                  output_proj}.{weight,bias}
//   transformer.encoder.layers.{k}.{norm1,linear1,linear2,norm2}.{weight,bias}
//   mask_features.{weight,bias}      1x1 conv [mask_dim, conv_dim, 1, 1]
//   adapter_{j}.weight, adapter_{j}.norm.{weight,bias}   lateral 1x1 conv (no bias) + GN of the
//   layer_{j}.weight, layer_{j}.norm.{weight,bias}       j-th finest input, and its 3x3 output conv
// The position embedding has no parameters; dropout modules hold none either.
//
// No padding masks (the original builds all-false ones): every position is valid, the valid
// ratios are 1. 1x1 convolutions run as matrix products (same weights, conv layout): oneDNN's
// backward of small convolutions has given nondeterministic or NaN gradients on this CPU build
// under preemption.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "wico/topdown/mask2former/ms_deform_attn.h"

namespace wico::topdown {

struct PixelDecoderOptions {
  std::vector<std::int64_t> in_channels;               // channels of res2..res5 (finest first)
  std::vector<std::int64_t> in_strides{4, 8, 16, 32};  // each twice the previous
  std::int64_t conv_dim = 256, mask_dim = 256;
  std::int64_t num_layers = 6, num_heads = 8, num_points = 4, ffn_dim = 1024;
  double dropout = 0.0;
  std::int64_t num_groups = 32;  // GroupNorm groups
  // The coarsest this many inputs feed the encoder (Mask2Former's
  // DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES res3, res4, res5); the finer ones get FPN convs.
  std::int64_t transformer_in_levels = 3;
  void validate() const;  // throws wico::ConfigError with a clear message
};

struct PixelDecoderOutput {
  at::Tensor mask_features;             // [B, mask_dim, H/4, W/4]
  std::vector<at::Tensor> multi_scale;  // 3 levels [B, conv_dim, h, w], coarsest first
};

// The original's PositionEmbeddingSine(num_pos_feats, normalize=True, scale 2 pi) of an
// all-valid height x width map: [1, 2 * num_pos_feats, height, width] (y features first, then
// x; sin on even and cos on odd channels), float32; broadcasts over the batch.
at::Tensor position_embedding_sine(std::int64_t height, std::int64_t width,
                                   std::int64_t num_pos_feats, const c10::TensorOptions& options,
                                   double temperature = 10000.0);

// MSDeformAttnTransformerEncoderLayer: src + MSDeformAttn(src + pos, ...) -> LayerNorm, then
// src + linear2(relu(linear1(src))) -> LayerNorm (dropout after the attention, inside and after
// the FFN).
class MSDeformAttnEncoderLayerImpl : public torch::nn::Module {
 public:
  MSDeformAttnEncoderLayerImpl(std::int64_t d_model, std::int64_t d_ffn, double dropout,
                               std::int64_t n_levels, std::int64_t n_heads, std::int64_t n_points);
  // src [B, S, C], pos [B or 1, S, C], reference_points [B, S, L, 2] -> [B, S, C]
  at::Tensor forward(const at::Tensor& src, const at::Tensor& pos,
                     const at::Tensor& reference_points, const SpatialShapes& shapes,
                     const at::Tensor& padding_mask = {});

  MSDeformAttn self_attn{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear linear1{nullptr}, linear2{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(MSDeformAttnEncoderLayer);

// MSDeformAttnTransformerEncoder: the layers, each attending from every position of every level
// (its pixel centre as the reference point on all levels).
class MSDeformAttnEncoderImpl : public torch::nn::Module {
 public:
  MSDeformAttnEncoderImpl(std::int64_t num_layers, std::int64_t d_model, std::int64_t d_ffn,
                          double dropout, std::int64_t n_levels, std::int64_t n_heads,
                          std::int64_t n_points);
  at::Tensor forward(const at::Tensor& src, const SpatialShapes& shapes,
                     const at::Tensor& valid_ratios, const at::Tensor& pos,
                     const at::Tensor& padding_mask = {});
  // The original's get_reference_points: pixel centres ((x + 0.5) / W, (y + 0.5) / H) of every
  // level scaled by its valid ratios [B, L, 2] (w, h) -> [B, S, L, 2].
  static at::Tensor reference_points(const SpatialShapes& shapes, const at::Tensor& valid_ratios);

  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(MSDeformAttnEncoder);

// MSDeformAttnTransformerEncoderOnly: flattens the levels, adds the level embedding to the
// position embedding and runs the encoder.
class MSDeformAttnTransformerEncoderOnlyImpl : public torch::nn::Module {
 public:
  MSDeformAttnTransformerEncoderOnlyImpl(std::int64_t d_model, std::int64_t n_heads,
                                         std::int64_t num_layers, std::int64_t d_ffn,
                                         double dropout, std::int64_t n_levels,
                                         std::int64_t n_points);
  // srcs [B, C, h_l, w_l] and their position embeddings [B or 1, C, h_l, w_l], coarsest first
  // -> memory [B, sum h_l w_l, C]; `shapes` receives the (h_l, w_l).
  at::Tensor forward(const std::vector<at::Tensor>& srcs, const std::vector<at::Tensor>& pos,
                     SpatialShapes* shapes);
  // Xavier uniform for every matrix, MSDeformAttn's own init, level_embed N(0, 1).
  void reset_parameters();

  MSDeformAttnEncoder encoder{nullptr};
  at::Tensor level_embed;
};
TORCH_MODULE(MSDeformAttnTransformerEncoderOnly);

// detectron2's Conv2d(bias=False, norm=GroupNorm, activation=optional ReLU): the FPN adapter and
// output convolutions (weight, norm.weight, norm.bias).
class ConvNormImpl : public torch::nn::Module {
 public:
  ConvNormImpl(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t groups,
               bool relu);
  at::Tensor forward(const at::Tensor& x);

  at::Tensor weight;  // [out, in, kernel, kernel]
  torch::nn::GroupNorm norm{nullptr};

 private:
  bool relu_;
};
TORCH_MODULE(ConvNorm);

class MSDeformAttnPixelDecoderImpl : public torch::nn::Module {
 public:
  explicit MSDeformAttnPixelDecoderImpl(PixelDecoderOptions options);
  // features: res2..res5 [B, in_channels[i], H_i, W_i] (any sizes, e.g. ResNet's rounded-up
  // strides) -> mask features at res2's size and the multi-scale features.
  PixelDecoderOutput forward(const std::vector<at::Tensor>& features);

  const PixelDecoderOptions& options() const { return options_; }

  torch::nn::ModuleList input_proj{nullptr};  // Sequential(Conv2d 1x1, GroupNorm), coarsest first
  MSDeformAttnTransformerEncoderOnly transformer{nullptr};
  torch::nn::Conv2d mask_features{nullptr};
  // Top-down order (coarsest first, as the original's lists): adapter_j / layer_j reversed.
  std::vector<ConvNorm> lateral_convs, output_convs;

 private:
  PixelDecoderOptions options_;
};
TORCH_MODULE(MSDeformAttnPixelDecoder);

}  // namespace wico::topdown
