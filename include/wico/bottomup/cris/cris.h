// CRIS (Wang et al., CVPR 2022; DerrickWang005/CRIS.pytorch model/segmenter.py and
// model/layers.py; ../shared/specs/cris.md sections 3-5): CLIP's ResNet and text transformer
// (backbones/clip.h), a sentence-gated neck fusing C3, C4 and C5 into one stride-16 map with
// coordinate channels, a vision-language decoder (pre-norm self- and cross-attention with a norm
// on each attention output, an FFN with an inner LayerNorm, fixed sine positions, padding mask on
// token id 0), and the projector: the map upsampled to stride 4 (Z_v, the pixel embeddings) and
// convolved with a 3x3 kernel and bias computed from the sentence, one per sample (the
// text-to-pixel contrast).
//
// Parameter names are CRIS's (backbone.*, neck.f1_v_proj.0.weight, neck.coordconv.0.conv1.1
// .running_mean, decoder.layers.0.multihead_attn.in_proj_weight, decoder.layers.0.ffn.3.weight,
// proj.vis.4.bias, proj.txt.weight, ...), so a CRIS checkpoint loads with `module.` stripped.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "wico/backbones/clip.h"
#include "wico/nn/batch_norm.h"

namespace wico::bottomup {

struct CrisOptions {
  backbones::ClipVisualOptions visual = backbones::ClipVisualOptions::rn50();
  backbones::ClipTextOptions text;             // text.embed_dim = word_dim
  std::vector<std::int64_t> fpn_out{256, 512, 1024};  // fpn_out[1] = vis_dim = decoder d_model
  std::int64_t decoder_layers = 3, decoder_heads = 8, decoder_ffn = 2048;
  double dropout = 0.1;
  std::int64_t kernel_size = 3;  // the dynamic kernel's side

  static CrisOptions r50();   // word_dim 1024, C5 1024
  static CrisOptions r101();  // word_dim 512, C5 512
  std::int64_t word_dim() const { return text.embed_dim; }
  std::int64_t vis_dim() const { return fpn_out[1]; }
  std::int64_t projector_dim() const { return fpn_out[1] / 2; }  // C of Z_v
  void validate() const;  // ConfigError naming the bad value
};

// conv_layer / linear_layer: Conv2d or Linear without bias ("0"), batch norm ("1"), ReLU.
class CrisConvLayerImpl : public torch::nn::Module {
 public:
  CrisConvLayerImpl(std::int64_t in, std::int64_t out, std::int64_t kernel);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
  nn::BatchNorm norm{nullptr};
};
TORCH_MODULE(CrisConvLayer);

class CrisNeckImpl : public torch::nn::Module {
 public:
  // in: C3, C4, C5 channels (C5 = word_dim); out: fpn_out.
  CrisNeckImpl(std::vector<std::int64_t> in, std::vector<std::int64_t> out);
  // -> [B, out[1], H/16, W/16]
  at::Tensor forward(const backbones::ClipVisualFeatures& v, const at::Tensor& state);

  torch::nn::Linear txt_proj{nullptr};  // "txt_proj.0", BN "txt_proj.1"
  nn::BatchNorm txt_proj_norm{nullptr};
  CrisConvLayer f1_v_proj{nullptr}, f2_v_proj{nullptr}, f2_cat{nullptr}, f3_v_proj{nullptr},
      f3_cat{nullptr}, f4_proj5{nullptr}, f4_proj4{nullptr}, f4_proj3{nullptr}, aggr{nullptr},
      coord_conv{nullptr}, coord_out{nullptr};  // "coordconv.0.conv1", "coordconv.1"
  nn::BatchNorm norm_layer{nullptr};            // "norm_layer.0"
};
TORCH_MODULE(CrisNeck);

class CrisDecoderLayerImpl : public torch::nn::Module {
 public:
  CrisDecoderLayerImpl(std::int64_t d_model, std::int64_t heads, std::int64_t ffn, double dropout);
  // vis [B, HW, C], txt [B, L, C], positions [1, HW, C] and [1, L, C], key padding mask
  // additive [B, 1, 1, L] (0 or -inf).
  at::Tensor forward(const at::Tensor& vis, const at::Tensor& txt, const at::Tensor& vis_pos,
                     const at::Tensor& txt_pos, const at::Tensor& padding);

 private:
  struct Attention {
    at::Tensor in_proj_weight, in_proj_bias;
    torch::nn::Linear out_proj{nullptr};
  };
  Attention register_attention(const std::string& name, std::int64_t d);
  at::Tensor attention(const Attention& a, const at::Tensor& q, const at::Tensor& k,
                       const at::Tensor& v, const at::Tensor& additive_mask);

 public:
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr}, self_attn_norm{nullptr},
      cross_attn_norm{nullptr};
  torch::nn::Linear ffn_in{nullptr}, ffn_out{nullptr};  // "ffn.0", "ffn.4"
  torch::nn::LayerNorm ffn_norm{nullptr};                // "ffn.3"

 private:
  Attention self_attn_, cross_attn_;
  std::int64_t heads_;
  double dropout_;
};
TORCH_MODULE(CrisDecoderLayer);

// The original's fixed sine tables: 2-d [H*W, C] (x in the first half of the channels,
// interleaved sin/cos, then y) and 1-d [L, C].
at::Tensor cris_position_2d(std::int64_t channels, std::int64_t height, std::int64_t width);
at::Tensor cris_position_1d(std::int64_t channels, std::int64_t length);

struct CrisOutput {
  at::Tensor pixel_embeddings;  // Z_v [B, projector_dim, H/4, W/4]
  at::Tensor kernel;            // [B, projector_dim * k * k + 1]: each sample's kernel and bias
  at::Tensor logits;            // [B, 1, H/4, W/4]
};

class CrisNetImpl : public torch::nn::Module {
 public:
  explicit CrisNetImpl(CrisOptions options);
  // images [B, 3, H, W] (H, W multiples of 32), token_ids [B, L] (0 = padding).
  CrisOutput forward(const at::Tensor& images, const at::Tensor& token_ids);
  // The dynamic convolution: Z_v [B, C, h, w] with each sample's kernel -> [B, 1, h, w].
  at::Tensor apply_kernel(const at::Tensor& pixel_embeddings, const at::Tensor& kernel) const;
  const CrisOptions& options() const { return options_; }

  backbones::Clip backbone{nullptr};
  CrisNeck neck{nullptr};
  torch::nn::ModuleList decoder_layers{nullptr};  // "decoder.layers"
  torch::nn::LayerNorm decoder_norm{nullptr};     // "decoder.norm"
  CrisConvLayer proj_vis1{nullptr}, proj_vis3{nullptr};  // "proj.vis.1", "proj.vis.3"
  torch::nn::Conv2d proj_vis4{nullptr};                  // "proj.vis.4"
  torch::nn::Linear proj_txt{nullptr};                   // "proj.txt"

 private:
  CrisOptions options_;
};
TORCH_MODULE(CrisNet);

}  // namespace wico::bottomup
