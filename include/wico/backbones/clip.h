// CLIP's ResNet image encoder and text transformer (Radford et al. 2021; openai/CLIP
// clip/model.py) as CRIS uses them (DerrickWang005/CRIS.pytorch model/clip.py; ../shared/specs/
// cris.md sections 1 and 2):
//
// - ClipModifiedResNet: the 3-convolution stem with a 2x2 average pool, Bottlenecks whose stride
//   is an average pool after the 3x3 convolution (and before the downsample's 1x1), and CRIS's
//   dense attention pooling: every spatial position attends to every other (no mean token), the
//   7x7 position table (its class row dropped) resized bicubically to the feature grid each
//   forward, the output through c_proj plus a new 1x1 conv + BN residual (`connect`), then ReLU.
//   forward returns layer2 (C3, stride 8), layer3 (C4, stride 16) and the pooled layer4 (C5,
//   stride 32, output_dim channels).
// - Clip (the whole model, CLIP's state-dict layout): `visual` plus the text transformer, pre-LN
//   residual blocks with QuickGELU, an additive causal mask over the sequence's own length,
//   ln_final; encode_text returns every position's ln_final output (not projected) and the
//   sentence state, the output at the highest token id (the end token) times text_projection.
//
// Parameter names are CLIP's (visual.conv1.weight, visual.layer1.0.downsample.0.weight,
// visual.attnpool.q_proj.weight, visual.attnpool.connect.0.weight, transformer.resblocks.0.attn
// .in_proj_weight, token_embedding.weight, text_projection, logit_scale, ...), so OpenAI's
// RN50.pt / RN101.pt archives load by name (their input_resolution, context_length and
// vocab_size scalars aside) and CRIS's checkpoints under `backbone.`. Batch norms are
// wico::nn::BatchNorm (BatchNorm2d's names; synchronisable across processes, as CRIS's SyncBN).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "wico/nn/batch_norm.h"

namespace wico::backbones {

struct ClipVisualOptions {
  std::vector<std::int64_t> layers{3, 4, 6, 3};  // Bottlenecks per stage
  std::int64_t width = 64;         // stem output and layer1 planes; layer4 outputs width * 32
  std::int64_t output_dim = 1024;  // C5 channels (CLIP's embed_dim)
  std::int64_t heads = 32;         // attention pooling heads (CLIP: width * 32 / 64)
  std::int64_t spacial_dim = 7;    // side of the position table (CLIP's input_resolution / 32)
  double norm_eps = 1e-5;

  static ClipVisualOptions rn50();   // 3 4 6 3, output 1024
  static ClipVisualOptions rn101();  // 3 4 23 3, output 512
  std::int64_t embed_dim() const { return width * 32; }  // layer4's channels
  // Channels of C3 and C4 (layer2, layer3): width * 8 and width * 16.
  std::int64_t c3_channels() const { return width * 8; }
  std::int64_t c4_channels() const { return width * 16; }
  void validate() const;  // ConfigError naming the bad value
};

struct ClipTextOptions {
  std::int64_t vocab_size = 49408;
  std::int64_t context_length = 77;  // rows of the position table (CRIS uses the first L)
  std::int64_t width = 512;
  std::int64_t heads = 8;
  std::int64_t layers = 12;
  std::int64_t embed_dim = 1024;  // text_projection's columns (the sentence state's width)
  void validate() const;
};

// Bottleneck with CLIP's anti-aliased stride; downsample = avgpool(stride) ("-1", no
// parameters), conv 1x1 ("0"), BN ("1").
class ClipBottleneckImpl : public torch::nn::Module {
 public:
  ClipBottleneckImpl(std::int64_t inplanes, std::int64_t planes, std::int64_t stride, double eps);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  nn::BatchNorm bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  std::shared_ptr<torch::nn::Module> downsample;  // children "0" (conv) and "1" (BN), or null
  torch::nn::Conv2d downsample_conv{nullptr};
  nn::BatchNorm downsample_bn{nullptr};

 private:
  std::int64_t stride_;
};
TORCH_MODULE(ClipBottleneck);

// CRIS's AttentionPool2d: x [B, C, H, W] -> ReLU(c_proj(attention) + connect(x)) [B, out, H, W].
class CrisAttentionPoolImpl : public torch::nn::Module {
 public:
  CrisAttentionPoolImpl(std::int64_t spacial_dim, std::int64_t embed_dim, std::int64_t heads,
                        std::int64_t output_dim, double eps);
  at::Tensor forward(const at::Tensor& x);

  at::Tensor positional_embedding;  // [spacial_dim^2 + 1, embed_dim]; row 0 (class) unused
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, c_proj{nullptr};
  std::shared_ptr<torch::nn::Module> connect;  // "0" conv 1x1 (no bias), "1" BN
  torch::nn::Conv2d connect_conv{nullptr};
  nn::BatchNorm connect_bn{nullptr};

 private:
  std::int64_t spacial_dim_, heads_;
};
TORCH_MODULE(CrisAttentionPool);

struct ClipVisualFeatures {
  at::Tensor c3, c4, c5;  // strides 8, 16, 32
};

class ClipModifiedResNetImpl : public torch::nn::Module {
 public:
  explicit ClipModifiedResNetImpl(ClipVisualOptions options);
  ClipVisualFeatures forward(const at::Tensor& images);
  const ClipVisualOptions& options() const { return options_; }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  nn::BatchNorm bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::ModuleList layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  CrisAttentionPool attnpool{nullptr};

 private:
  ClipVisualOptions options_;
};
TORCH_MODULE(ClipModifiedResNet);

// One pre-LN block: x + attn(ln_1(x)), then + mlp(ln_2(x)) with mlp c_fc -> QuickGELU -> c_proj;
// attn is torch.nn.MultiheadAttention's packed layout (in_proj_weight, in_proj_bias, out_proj).
class ClipResidualBlockImpl : public torch::nn::Module {
 public:
  ClipResidualBlockImpl(std::int64_t width, std::int64_t heads);
  // x [B, L, width], additive mask [L, L] (0 or -inf) or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& attn_mask);

  at::Tensor in_proj_weight, in_proj_bias;  // under "attn"
  torch::nn::Linear out_proj{nullptr};      // "attn.out_proj"
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};  // "mlp.c_fc", "mlp.c_proj"

 private:
  std::int64_t heads_;
};
TORCH_MODULE(ClipResidualBlock);

struct ClipTextFeatures {
  at::Tensor words;  // [B, L, width]: ln_final at every position, not projected
  at::Tensor state;  // [B, embed_dim]: ln_final at the highest token id, times text_projection
};

class ClipImpl : public torch::nn::Module {
 public:
  ClipImpl(ClipVisualOptions visual, ClipTextOptions text);

  ClipVisualFeatures encode_image(const at::Tensor& images) { return visual->forward(images); }
  // token_ids [B, L] int64 (L <= context_length): SOT, BPE ids, EOT (the highest id), 0 pads.
  ClipTextFeatures encode_text(const at::Tensor& token_ids);

  const ClipTextOptions& text_options() const { return text_; }

  ClipModifiedResNet visual{nullptr};
  torch::nn::ModuleList resblocks{nullptr};  // "transformer.resblocks"
  torch::nn::Embedding token_embedding{nullptr};
  torch::nn::LayerNorm ln_final{nullptr};
  at::Tensor positional_embedding;  // [context_length, width]
  at::Tensor text_projection;       // [width, embed_dim]
  at::Tensor logit_scale;           // scalar; CRIS never uses it

 private:
  ClipTextOptions text_;
};
TORCH_MODULE(Clip);

}  // namespace wico::backbones
