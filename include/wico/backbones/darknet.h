// Darknet-53 with the first six convolutions of YOLOv3's 13x13 head, as VLT builds it from MCN's
// Keras YOLOv3 (henghuiding/Vision-Language-Transformer model/visual_backbone.py darknet_body,
// the same code as luogen1996/MCN's; ../shared/specs/vlt.md section 1).
//
// Every convolution is a CBL: convolution without bias, Keras BatchNormalization (epsilon 1e-3,
// momentum 0.99 = LibTorch's 0.01), LeakyReLU 0.1. A stride-2 convolution first pads one zero row
// on top and one column on the left (ZeroPadding2D(((1, 0), (1, 0)))) and then takes no padding
// ('valid'), as Darknet's Keras port does; stride-1 convolutions pad 'same' (1x1: none, 3x3: one
// all round). The stem CBL(3, w) is followed by five stages, each a stride-2 CBL(3, C) and n
// residual blocks x + CBL(3, C)(CBL(1, C/2)(x)), with (C, n) = (2w, 1), (4w, 2), (8w, 8),
// (16w, 8), (32w, 4) (w = 32 in the original), then six head CBLs at stride 32: 1x1 16w, 3x3 32w,
// three times. forward returns VLT's taps: the stage-3 output (stride 8, 8w channels: Fv2), the
// stage-4 output (stride 16, 16w: Fv1) and the last head CBL's output (stride 32, 32w: Fv0).
//
// Parameter names follow Keras's creation order, the order of the released h5 files' conv2d_k /
// batch_normalization_k layers and of Darknet's .weights sections: cbl.{k-1}.conv.weight is
// conv2d_k's kernel, cbl.{k-1}.bn.* batch_normalization_k (k = 1..58 at the original's depths).
//
// Freezing as the original (free_body = 1: Keras layers[0:197], all of Darknet-53 and head CBLs
// 1-4): a frozen CBL's kernel and affine do not train and its moving statistics are never
// updated, but in training it still normalises with the batch's statistics: Keras 2.3.1's
// BatchNormalization switches to the moving statistics only when the learning phase is 0, and
// trainable=False only removes its updates. Ours: the frozen CBLs' parameters do not require
// gradients and their batch norms run with momentum 0 (batch statistics in training, running
// statistics kept as they are).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "wico/io/darknet_weights.h"

namespace wico::backbones {

struct DarknetOptions {
  std::int64_t in_channels = 3;
  std::int64_t width = 32;                            // the stem's channels; stage s has w * 2^s
  std::vector<std::int64_t> blocks{1, 2, 8, 8, 4};    // residual blocks per stage
  std::int64_t head_convs = 6;                        // 1x1 16w / 3x3 32w alternating
  double bn_eps = 1e-3;                               // Keras's default
  double bn_momentum = 0.01;                          // LibTorch's convention: Keras's 0.99
  double leaky_slope = 0.1;
  // CBLs frozen from the first, in creation order: 56 = Darknet-53's 52 and head CBLs 1-4 (the
  // original's free_body = 1); 0 trains everything.
  std::int64_t frozen_cbls = 56;

  // Number of CBLs: 1 + per stage (1 + 2n) + head_convs (58 at the original's depths).
  std::int64_t cbl_count() const;
  std::int64_t stage_channels(std::int64_t stage) const { return width << (stage + 1); }
  // Throws ConfigError naming the bad option.
  void validate() const;
};

// Convolution (no bias) -> BatchNorm2d -> LeakyReLU, with Darknet's top-left padding when the
// stride is 2.
class ConvBnLeakyImpl : public torch::nn::Module {
 public:
  ConvBnLeakyImpl(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride,
                  const DarknetOptions& options);
  at::Tensor forward(const at::Tensor& x);
  // Frozen as the original's trainable=False: no gradients, statistics kept (momentum 0), batch
  // statistics still used in training.
  void freeze();
  bool frozen() const { return frozen_; }
  // For inference: the batch norm's running statistics and affine folded into the convolution
  // (one pass instead of three over the output). Used while the module is in eval mode; training
  // mode keeps using the convolution and norm as they are.
  void fold_batch_norm();

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};

 private:
  std::int64_t stride_;
  double slope_;
  bool frozen_ = false;
  at::Tensor folded_weight_, folded_bias_;  // fold_batch_norm's
};
TORCH_MODULE(ConvBnLeaky);

// fold_batch_norm on every CBL under `module`.
void fold_batch_norms(torch::nn::Module& module);

struct DarknetFeatures {
  at::Tensor stride8;   // stage 3, [B, 8w, H/8, W/8] (VLT's Fv2: 52x52x256 at 416)
  at::Tensor stride16;  // stage 4, [B, 16w, H/16, W/16] (Fv1: 26x26x512)
  at::Tensor stride32;  // after the head CBLs, [B, 32w, H/32, W/32] (Fv0: 13x13x1024)
};

class DarknetImpl : public torch::nn::Module {
 public:
  explicit DarknetImpl(DarknetOptions options = {});
  DarknetFeatures forward(const at::Tensor& images);
  const DarknetOptions& options() const { return options_; }

  torch::nn::ModuleList cbl{nullptr};  // in creation order

 private:
  DarknetOptions options_;
};
TORCH_MODULE(Darknet);

// One CBL of the network: its channels, kernel and stride.
struct DarknetCbl {
  std::int64_t in = 0, out = 0, kernel = 1, stride = 1;
};
// Every CBL in creation order (the stem, each stage's stride-2 CBL and residual pairs, the head):
// what the network builds, the .weights sections it reads and what a FLOP count walks.
std::vector<DarknetCbl> darknet_layout(const DarknetOptions& options);

// The network's convolutional sections in Darknet's cfg order (every one with batch norm), the
// layout io::read_darknet_weights reads a .weights file in (section i = cbl.i; the `darknet`
// name map).
std::vector<io::DarknetConvSection> darknet_sections(const DarknetOptions& options);

}  // namespace wico::backbones
