// Swin Transformer backbone, exactly as LAVT's lib/backbone.py (which follows
// Swin-Transformer-Semantic-Segmentation, the mmseg port of the original): patch embedding with
// right/bottom zero padding to a multiple of the patch and a LayerNorm, no absolute position
// embedding, four stages of blocks (window attention with a relative position bias, every second
// block shifted by window/2 with the cyclic-shift attention mask), feature maps padded to
// multiples of the window inside each block, PatchMerging between stages, stochastic depth rising
// linearly over all blocks (identity in eval mode) and one output LayerNorm per returned stage.
//
// Parameter names are those of the original state_dict (patch_embed.proj.weight,
// layers.0.blocks.1.attn.relative_position_bias_table, layers.0.downsample.reduction.weight,
// norm0.weight, ...), so pretrained .pth files map by name. relative_position_index is a buffer,
// as in the original ([N, N] int64, N = window^2).
//
// Stage-by-stage use (LAVT fuses language after each stage's blocks, before downsampling):
//     auto x = swin->embed(images);                    // TokenMap: [B, H*W, C], H, W
//     for (int64_t i = 0; i < swin->num_stages(); ++i) {
//       x = swin->run_blocks(i, x);                    // the stage's blocks (same H, W)
//       ...fuse: x.tokens = x.tokens + gate(r) * r ... // LAVT's PWAM, res_gate
//       features.push_back(swin->output(i, {r, x.height, x.width}));   // norm_i, [B, C, H, W]
//       x = swin->downsample(i, x);                    // PatchMerging (identity for the last)
//     }
// LAVT's MMBasicLayer holds its `fusion` and `res_gate` inside layers.i; register them on
// swin->stage(i) (torch::nn::Module::register_module is public) to keep the original names.
//
// Known differences from torchvision's Swin (torchvision.models.swin_transformer, 0.14), which
// the parity tests compare against where the two agree:
//  * window larger than the map: torchvision sets the shift to 0 when the padded map is no larger
//    than the window (window >= Hp or Wp); the original keeps shifting (with the mask) whatever the
//    size. E.g. Swin-B/12 at 384 x 384 has a 12 x 12 last stage: the original's shifted blocks
//    attend within four 6 x 6 quadrants, torchvision's attend over the whole map. We follow the
//    original (tested against a hand-derived quadrant attention).
//  * patch embedding: the original pads the image right/bottom with zeros to a multiple of the
//    patch size; torchvision's strided convolution drops the remainder.
//  * output norms: the original (segmentation) has one LayerNorm per output stage (norm0..norm3)
//    and no head; torchvision has a single final `norm` and a classifier head.
//  * names: torchvision's features.N / mlp.0 / mlp.3 are layers.i.blocks / downsample and
//    mlp.fc1 / mlp.fc2 here; its relative_position_index buffer is flattened.
// Both pad the map after norm1 with zeros to a multiple of the window, and the padded tokens take
// part in attention as keys (they are not masked, in the original either; the test checks it).
//
// Execution (same results, see docs/performance.md): a block does the original's pad, roll and
// window partition as one gather and the reverse as one more (WindowIndex, made once per input
// size); without autograd, window attention runs window by window in parallel over windows
// (forward_windowwise), with the relative position bias and the shift mask added by the GEMM.
// The shift mask is made once per stage and input size.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace wico::backbones {

struct SwinOptions {
  std::int64_t in_channels = 3;
  std::int64_t patch_size = 4;
  std::int64_t embed_dim = 96;
  std::vector<std::int64_t> depths{2, 2, 6, 2};
  std::vector<std::int64_t> num_heads{3, 6, 12, 24};
  std::int64_t window_size = 7;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  double drop_rate = 0.0;       // dropout after the attention projection and in the MLP
  double attn_drop_rate = 0.0;  // dropout of the attention weights
  double drop_path_rate = 0.2;  // stochastic depth of the last block (linear from 0)
  bool patch_norm = true;       // LayerNorm after the patch embedding
  std::vector<std::int64_t> out_indices{0, 1, 2, 3};

  // The original sizes; LAVT uses window 12 with its ImageNet-22k 384 checkpoints and
  // drop_path_rate 0.3. "nano" is a CPU test size (embed 16, depths 2 2 2 2, heads 1 2 4 8,
  // window 4).
  static SwinOptions tiny(std::int64_t window = 7);   // 96, 2 2 6 2, heads 3 6 12 24
  static SwinOptions small(std::int64_t window = 7);  // 96, 2 2 18 2, heads 3 6 12 24
  static SwinOptions base(std::int64_t window = 7);   // 128, 2 2 18 2, heads 4 8 16 32
  static SwinOptions large(std::int64_t window = 7);  // 192, 2 2 18 2, heads 6 12 24 48
  static SwinOptions nano(std::int64_t window = 4);
  // By name: tiny, small, base, large or nano; anything else is a ConfigError listing them.
  static SwinOptions preset(const std::string& name, std::optional<std::int64_t> window = {});

  std::int64_t num_stages() const { return static_cast<std::int64_t>(depths.size()); }
  std::int64_t stage_dim(std::int64_t stage) const { return embed_dim << stage; }
  // Throws ConfigError when the options are inconsistent (heads not dividing a stage's width...).
  void validate() const;
};

// Tokens of a feature map, row-major over (H, W): tokens [B, H*W, C].
struct TokenMap {
  torch::Tensor tokens;
  std::int64_t height = 0;
  std::int64_t width = 0;
  // [B, C, H, W] (a copy in that layout).
  torch::Tensor to_image() const;
};

// [B, H, W, C] (H, W multiples of `window`) -> [B * nW, window^2, C], windows row-major.
torch::Tensor window_partition(const torch::Tensor& x, std::int64_t window);
// Inverse of window_partition: [B * nW, window^2, C] -> [B, H, W, C].
torch::Tensor window_reverse(const torch::Tensor& windows, std::int64_t window, std::int64_t height,
                             std::int64_t width);
// Pairwise relative position index inside a window: [N, N] int64 into the (2w-1)^2 table.
torch::Tensor relative_position_index(std::int64_t window);
// The cyclic-shift attention mask of the original for a padded map Hp x Wp: [nW, N, N] with 0
// where two tokens of a window come from the same region and -100 elsewhere.
torch::Tensor shifted_window_mask(std::int64_t padded_height, std::int64_t padded_width,
                                  std::int64_t window, std::int64_t shift,
                                  const torch::TensorOptions& options = {});
// Where a block's tokens go in its windows, for one (batch, H, W, window, shift): the original's
// pad to multiples of the window, roll by -shift and window_partition as one gather, and the
// window_reverse, roll back and crop as another.
struct WindowIndex {
  std::int64_t batch = 0, height = 0, width = 0, padded_height = 0, padded_width = 0;
  torch::Tensor gather;   // [B * nW * N]: token row (of [B * H * W]) of each window slot
  torch::Tensor padding;  // the window slots that are padding (to be zeroed; gather says 0)
  torch::Tensor scatter;  // [B * H * W]: window slot of each token
};
WindowIndex window_index(std::int64_t batch, std::int64_t height, std::int64_t width,
                         std::int64_t window, std::int64_t shift,
                         const torch::Device& device = torch::kCPU);

// Stochastic depth (timm's DropPath): in training, zeroes whole samples with probability p and
// scales the rest by 1/(1-p); the identity in eval mode or when p == 0.
torch::Tensor drop_path(const torch::Tensor& x, double p, bool training);

// Window multi-head self-attention with a relative position bias (W-MSA / SW-MSA).
class WindowAttentionImpl : public torch::nn::Module {
 public:
  WindowAttentionImpl(std::int64_t dim, std::int64_t window, std::int64_t num_heads,
                      bool qkv_bias = true, double attn_drop = 0.0, double proj_drop = 0.0);
  // windows [B * nW, N, C]; mask [nW, N, N] (0 / -100) or undefined.
  torch::Tensor forward(const torch::Tensor& windows, const torch::Tensor& mask = {});
  // The bias gathered from the table: [heads, N, N].
  torch::Tensor relative_position_bias() const;
  // forward() without autograd on the CPU (no grad mode or inference mode, no attention dropout,
  // at least one window a thread): the same result computed window by window, in parallel over
  // windows. forward() picks it; public for the tests.
  torch::Tensor forward_windowwise(const torch::Tensor& windows, const torch::Tensor& mask = {});

  std::int64_t dim, window, num_heads;
  double scale;
  double attn_drop, proj_drop;
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  torch::Tensor relative_position_bias_table;  // [(2w-1)^2, heads]
  torch::Tensor relative_position_index;       // [N, N] int64 (buffer)
};
TORCH_MODULE(WindowAttention);

// fc1 -> GELU (erf) -> dropout -> fc2 -> dropout.
class SwinMlpImpl : public torch::nn::Module {
 public:
  SwinMlpImpl(std::int64_t dim, std::int64_t hidden, double drop = 0.0);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  double drop;
};
TORCH_MODULE(SwinMlp);

class SwinBlockImpl : public torch::nn::Module {
 public:
  SwinBlockImpl(std::int64_t dim, std::int64_t num_heads, std::int64_t window, std::int64_t shift,
                double mlp_ratio = 4.0, bool qkv_bias = true, double drop = 0.0,
                double attn_drop = 0.0, double drop_path = 0.0);
  // x [B, H*W, C]; mask: shifted_window_mask of the padded map (used when shift > 0).
  torch::Tensor forward(const torch::Tensor& x, std::int64_t height, std::int64_t width,
                        const torch::Tensor& mask = {});

  std::int64_t window, shift;
  double drop_path_prob;
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  WindowAttention attn{nullptr};
  SwinMlp mlp{nullptr};

 private:
  WindowIndex index_for(std::int64_t batch, std::int64_t height, std::int64_t width,
                        const torch::Device& device);
  std::mutex index_mutex_;  // forward may run in several threads at once
  WindowIndex index_;       // of the last input size
};
TORCH_MODULE(SwinBlock);

// 2 x 2 neighbourhoods -> channels in the order x0 (0,0), x1 (1,0), x2 (0,1), x3 (1,1) (row,
// col offsets), LayerNorm(4C), Linear(4C -> 2C, no bias); odd H or W is zero-padded first.
class PatchMergingImpl : public torch::nn::Module {
 public:
  explicit PatchMergingImpl(std::int64_t dim);
  // x [B, H*W, C] -> [B, ceil(H/2) * ceil(W/2), 2C]
  torch::Tensor forward(const torch::Tensor& x, std::int64_t height, std::int64_t width);
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear reduction{nullptr};
};
TORCH_MODULE(PatchMerging);

// Conv(kernel = stride = patch) after zero-padding the image right/bottom to a multiple of the
// patch, then (patch_norm) a LayerNorm over channels.
class PatchEmbedImpl : public torch::nn::Module {
 public:
  PatchEmbedImpl(std::int64_t patch_size, std::int64_t in_channels, std::int64_t embed_dim,
                 bool norm);
  // images [B, in, H, W] -> [B, embed, ceil(H/p), ceil(W/p)]
  torch::Tensor forward(const torch::Tensor& images);
  std::int64_t patch_size;
  torch::nn::Conv2d proj{nullptr};
  torch::nn::LayerNorm norm{nullptr};  // null without patch_norm
};
TORCH_MODULE(PatchEmbed);

// One stage (`layers.i`): its blocks and the PatchMerging after them (none for the last stage).
class SwinStageImpl : public torch::nn::Module {
 public:
  SwinStageImpl(std::int64_t dim, std::int64_t depth, std::int64_t num_heads, std::int64_t window,
                double mlp_ratio, bool qkv_bias, double drop, double attn_drop,
                const std::vector<double>& drop_path, bool downsample);
  TokenMap run_blocks(const TokenMap& x);
  // PatchMerging: H, W -> ceil(H/2), ceil(W/2); the last stage returns x unchanged.
  TokenMap downsample_map(const TokenMap& x);
  // The shift mask for this input size, made once per (Hp, Wp, device, dtype).
  torch::Tensor attention_mask(std::int64_t height, std::int64_t width,
                               const torch::TensorOptions& options);

  std::int64_t window, shift;
  torch::nn::ModuleList blocks{nullptr};
  PatchMerging downsample{nullptr};

 private:
  std::mutex mask_mutex_;
  torch::Tensor mask_;  // cached attention_mask
  std::int64_t mask_hp_ = -1, mask_wp_ = -1;
};
TORCH_MODULE(SwinStage);

class SwinTransformerImpl : public torch::nn::Module {
 public:
  explicit SwinTransformerImpl(SwinOptions options);

  // images [B, 3, H, W] -> the out_indices stages' normed features [B, C_i, H_i, W_i],
  // C_i = embed * 2^i, H_i = ceil(H / 4 / 2^i) (each stage rounds up).
  std::vector<torch::Tensor> forward(const torch::Tensor& images);

  // The stage-by-stage API (see the top of this file).
  TokenMap embed(const torch::Tensor& images);  // patch embedding (+ pos_drop), as tokens
  TokenMap run_blocks(std::int64_t stage, const TokenMap& x);
  TokenMap downsample(std::int64_t stage, const TokenMap& x);
  torch::Tensor output(std::int64_t stage, const TokenMap& x);  // norm_i -> [B, C, H, W]

  SwinStage stage(std::int64_t i) const;
  std::int64_t num_stages() const { return options_.num_stages(); }
  std::int64_t num_features(std::int64_t stage) const { return options_.stage_dim(stage); }
  const SwinOptions& options() const { return options_; }

  // The original's init_weights(None): Linear weights truncated normal (std 0.02), biases 0,
  // LayerNorms 1 / 0, bias tables truncated normal (std 0.02); the conv keeps PyTorch's default.
  // The constructor applies it.
  void init_weights();

  PatchEmbed patch_embed{nullptr};
  torch::nn::Dropout pos_drop{nullptr};
  torch::nn::ModuleList layers{nullptr};
  std::vector<torch::nn::LayerNorm> norms;  // norms[i] is norm{i}; null when i is not output

 private:
  SwinOptions options_;
};
TORCH_MODULE(SwinTransformer);

// Fills `tensor` from a normal(mean, std) truncated to [a, b] (absolute bounds, as timm's and
// torch's trunc_normal_).
void trunc_normal_(torch::Tensor& tensor, double std = 0.02, double mean = 0.0, double a = -2.0,
                   double b = 2.0);

// FLOPs (2 x multiply-adds) of the matrix products of one forward pass at height x width, batch 1
// (norms, softmax, GELU and copies left out); for benchmarks' utilisation figures.
double swin_matmul_flops(const SwinOptions& options, std::int64_t height, std::int64_t width);

}  // namespace wico::backbones
