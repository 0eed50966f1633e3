// ResNet trunk as torchvision's (torchvision.models.resnet, 0.14; "v1.5": a Bottleneck strides on
// its 3x3 convolution) without the classifier: the stem (7x7 convolution, norm, ReLU, 3x3 max
// pool) and four stages of blocks, returning the stages' outputs res2..res5 (strides 4, 8, 16, 32)
// as Mask2Former's backbone does.
//
// Parameter names are torchvision's state_dict names (conv1.weight, bn1.weight,
// bn1.running_mean, layer1.0.conv1.weight, layer2.0.downsample.0.weight,
// layer2.0.downsample.1.weight, ...), so its ImageNet .pth files map by name. A frozen batch norm
// (FrozenBatchNorm2d, as detectron2's and torchvision.ops') keeps weight, bias, running_mean and
// running_var as buffers, not parameters, under the same names: a loader must look at buffers too,
// and it has no num_batches_tracked (drop that key of a BatchNorm2d checkpoint).
//
// Freezing (detectron2's freeze_at): 0 freezes nothing, 1 the stem, k >= 2 the stem and the
// stages res2..res(k) (at most 5): their parameters do not require gradients and their norms are
// frozen batch norms whatever `norm` says (detectron2 converts them the same way).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

namespace wico::backbones {

enum class ResNetNorm {
  kBatchNorm,        // torch::nn::BatchNorm2d: batch statistics in training, running ones in eval
  kFrozenBatchNorm,  // FrozenBatchNorm2d: fixed statistics and affine (the detectron2 default)
};

struct ResNetOptions {
  bool bottleneck = false;                       // Bottleneck (expansion 4) or BasicBlock blocks
  std::vector<std::int64_t> layers{2, 2, 2, 2};  // blocks per stage (res2..res5)
  std::int64_t in_channels = 3;
  // Channels of the stem and the planes of res2; each later stage doubles them (torchvision
  // fixes 64; smaller values are for tests).
  std::int64_t width = 64;
  ResNetNorm norm = ResNetNorm::kFrozenBatchNorm;
  double norm_eps = 1e-5;
  std::int64_t freeze_at = 0;  // 0..5, see the top of this file

  static ResNetOptions resnet18();   // basic, 2 2 2 2
  static ResNetOptions resnet34();   // basic, 3 4 6 3
  static ResNetOptions resnet50();   // bottleneck, 3 4 6 3
  static ResNetOptions resnet101();  // bottleneck, 3 4 23 3
  // By name: resnet18, resnet34, resnet50 or resnet101 (also "r50" ...); anything else is a
  // ConfigError listing them.
  static ResNetOptions preset(const std::string& name);

  std::int64_t expansion() const { return bottleneck ? 4 : 1; }
  // Output channels of stage i (0 = res2): width * 2^i * expansion.
  std::int64_t stage_channels(std::int64_t stage) const { return (width << stage) * expansion(); }
  // Throws ConfigError when inconsistent (not four stages, a stage without blocks, freeze_at
  // outside 0..5, ...).
  void validate() const;
};

// Batch norm with fixed statistics and affine: y = (x - mean) / sqrt(var + eps) * weight + bias,
// computed as x * scale + shift (detectron2's FrozenBatchNorm2d). All four are buffers.
class FrozenBatchNorm2dImpl : public torch::nn::Module {
 public:
  explicit FrozenBatchNorm2dImpl(std::int64_t num_features, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x);
  std::int64_t num_features;
  double eps;
  torch::Tensor weight, bias, running_mean, running_var;
};
TORCH_MODULE(FrozenBatchNorm2d);

// 3x3 (stride) -> norm -> ReLU -> 3x3 -> norm, + identity or downsample (1x1 stride, norm), ReLU.
class BasicBlockImpl : public torch::nn::Module {
 public:
  BasicBlockImpl(std::int64_t inplanes, std::int64_t planes, std::int64_t stride, ResNetNorm norm,
                 double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::AnyModule bn1, bn2;
  torch::nn::Sequential downsample{nullptr};  // null when the identity fits
};
TORCH_MODULE(BasicBlock);

// 1x1 -> norm -> ReLU -> 3x3 (stride) -> norm -> ReLU -> 1x1 (planes * 4) -> norm, + identity or
// downsample, ReLU.
class BottleneckImpl : public torch::nn::Module {
 public:
  BottleneckImpl(std::int64_t inplanes, std::int64_t planes, std::int64_t stride, ResNetNorm norm,
                 double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::AnyModule bn1, bn2, bn3;
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

class ResNetImpl : public torch::nn::Module {
 public:
  explicit ResNetImpl(ResNetOptions options);

  // images [B, in, H, W] -> {res2, res3, res4, res5}: [B, stage_channels(i), H_i, W_i] with
  // strides 4, 8, 16, 32 (each convolution and the pool round up: H_1 = ceil(ceil(H/2)/2)).
  std::vector<torch::Tensor> forward(const torch::Tensor& images);
  torch::Tensor stem(const torch::Tensor& images);  // conv1, bn1, ReLU, max pool (stride 4)

  const ResNetOptions& options() const { return options_; }
  static constexpr const char* kStageNames[4] = {"res2", "res3", "res4", "res5"};

  // torchvision's initialisation: convolutions Kaiming normal (fan_out, ReLU), norms' weight 1 and
  // bias 0 (and running statistics 0 / 1). The constructor applies it.
  void init_weights();

  // Inference only: folds every frozen batch norm into the convolution before it (weight scaled
  // per output channel, the shift becomes the convolution's bias) and replaces the norm by an
  // identity, saving a pass over each feature map. Trainable BatchNorm2d norms are left alone.
  // Irreversible: the fused convolutions gain a bias and the folded norms' entries leave the
  // state (load torchvision weights before fusing). Returns the number of norms folded.
  std::int64_t fuse_frozen_norms();

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::AnyModule bn1;
  torch::nn::MaxPool2d maxpool{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};

 private:
  ResNetOptions options_;
};
TORCH_MODULE(ResNet);

// Floating-point operations (2 per multiply-add) of the trunk's convolutions on a
// height x width image: the figure a measured forward time is turned into a FLOP rate with.
double resnet_conv_flops(const ResNetOptions& options, std::int64_t height, std::int64_t width);

}  // namespace wico::backbones
