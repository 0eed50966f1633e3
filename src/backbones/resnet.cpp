#include "wico/backbones/resnet.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include <utility>

#include "wico/core/error.h"

namespace wico::backbones {

ResNetOptions ResNetOptions::resnet18() {
  ResNetOptions o;
  o.bottleneck = false;
  o.layers = {2, 2, 2, 2};
  return o;
}
ResNetOptions ResNetOptions::resnet34() {
  ResNetOptions o;
  o.bottleneck = false;
  o.layers = {3, 4, 6, 3};
  return o;
}
ResNetOptions ResNetOptions::resnet50() {
  ResNetOptions o;
  o.bottleneck = true;
  o.layers = {3, 4, 6, 3};
  return o;
}
ResNetOptions ResNetOptions::resnet101() {
  ResNetOptions o;
  o.bottleneck = true;
  o.layers = {3, 4, 23, 3};
  return o;
}

ResNetOptions ResNetOptions::preset(const std::string& name) {
  if (name == "resnet18" || name == "r18") return resnet18();
  if (name == "resnet34" || name == "r34") return resnet34();
  if (name == "resnet50" || name == "r50") return resnet50();
  if (name == "resnet101" || name == "r101") return resnet101();
  throw ConfigError("unknown ResNet depth '" + name +
                    "'; valid: resnet18, resnet34, resnet50, resnet101 (or r18, r34, r50, r101)");
}

void ResNetOptions::validate() const {
  auto fail = [](const std::string& what) { throw ConfigError("ResNet options: " + what); };
  if (layers.size() != 4) fail("layers must list the blocks of 4 stages");
  for (auto n : layers) {
    if (n < 1) fail("every stage needs at least one block");
  }
  if (in_channels < 1 || width < 1) fail("in_channels and width must be positive");
  if (freeze_at < 0 || freeze_at > 5) fail("freeze_at must be in 0..5 (0: nothing, 1: stem, ...)");
  if (!(norm_eps > 0.0)) fail("norm_eps must be positive");
}

// ---- FrozenBatchNorm2d ----

FrozenBatchNorm2dImpl::FrozenBatchNorm2dImpl(std::int64_t num_features, double eps)
    : num_features(num_features), eps(eps) {
  weight = register_buffer("weight", torch::ones({num_features}));
  bias = register_buffer("bias", torch::zeros({num_features}));
  running_mean = register_buffer("running_mean", torch::zeros({num_features}));
  running_var = register_buffer("running_var", torch::ones({num_features}));
}

torch::Tensor FrozenBatchNorm2dImpl::forward(const torch::Tensor& x) {
  WICO_CHECK(x.dim() == 4 && x.size(1) == num_features, "FrozenBatchNorm2d(", num_features,
             "): expected [B, ", num_features, ", H, W], got ", x.sizes());
  const auto scale = weight * (running_var + eps).rsqrt();
  const auto shift = bias - running_mean * scale;
  return x * scale.view({1, -1, 1, 1}).to(x.dtype()) + shift.view({1, -1, 1, 1}).to(x.dtype());
}

namespace {

torch::nn::AnyModule make_norm(ResNetNorm norm, std::int64_t channels, double eps) {
  if (norm == ResNetNorm::kFrozenBatchNorm) {
    return torch::nn::AnyModule(FrozenBatchNorm2d(channels, eps));
  }
  return torch::nn::AnyModule(
      torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(channels).eps(eps)));
}

torch::nn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride,
                       std::int64_t padding) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

torch::nn::AnyModule register_norm(torch::nn::Module& owner, const std::string& name,
                                   ResNetNorm norm, std::int64_t channels, double eps) {
  auto any = make_norm(norm, channels, eps);
  owner.register_module(name, any.ptr());
  return any;
}

// The identity branch: none when shapes match, else 1x1 (stride) + norm as downsample.0 / .1.
torch::nn::Sequential make_downsample(torch::nn::Module& owner, std::int64_t inplanes,
                                      std::int64_t out, std::int64_t stride, ResNetNorm norm,
                                      double eps) {
  if (stride == 1 && inplanes == out) return nullptr;
  torch::nn::Sequential seq;
  seq->push_back(conv(inplanes, out, 1, stride, 0));
  seq->push_back(make_norm(norm, out, eps));
  return owner.register_module("downsample", seq);
}

}  // namespace

// ---- blocks ----

BasicBlockImpl::BasicBlockImpl(std::int64_t inplanes, std::int64_t planes, std::int64_t stride,
                               ResNetNorm norm, double eps) {
  conv1 = register_module("conv1", conv(inplanes, planes, 3, stride, 1));
  bn1 = register_norm(*this, "bn1", norm, planes, eps);
  conv2 = register_module("conv2", conv(planes, planes, 3, 1, 1));
  bn2 = register_norm(*this, "bn2", norm, planes, eps);
  downsample = make_downsample(*this, inplanes, planes, stride, norm, eps);
}

torch::Tensor BasicBlockImpl::forward(const torch::Tensor& x) {
  auto out = bn1.forward(conv1->forward(x)).relu_();
  out = bn2.forward(conv2->forward(out));
  const auto identity = downsample ? downsample->forward(x) : x;
  return (out += identity).relu_();
}

BottleneckImpl::BottleneckImpl(std::int64_t inplanes, std::int64_t planes, std::int64_t stride,
                               ResNetNorm norm, double eps) {
  conv1 = register_module("conv1", conv(inplanes, planes, 1, 1, 0));
  bn1 = register_norm(*this, "bn1", norm, planes, eps);
  conv2 = register_module("conv2", conv(planes, planes, 3, stride, 1));
  bn2 = register_norm(*this, "bn2", norm, planes, eps);
  conv3 = register_module("conv3", conv(planes, planes * 4, 1, 1, 0));
  bn3 = register_norm(*this, "bn3", norm, planes * 4, eps);
  downsample = make_downsample(*this, inplanes, planes * 4, stride, norm, eps);
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  auto out = bn1.forward(conv1->forward(x)).relu_();
  out = bn2.forward(conv2->forward(out)).relu_();
  out = bn3.forward(conv3->forward(out));
  const auto identity = downsample ? downsample->forward(x) : x;
  return (out += identity).relu_();
}

// ---- ResNet ----

ResNetImpl::ResNetImpl(ResNetOptions options) : options_(std::move(options)) {
  options_.validate();
  const auto& o = options_;
  // Stage s (0 = stem, 1..4 = res2..res5) is frozen when s < freeze_at.
  auto norm_of = [&](std::int64_t s) {
    return s < o.freeze_at ? ResNetNorm::kFrozenBatchNorm : o.norm;
  };
  conv1 = register_module("conv1", conv(o.in_channels, o.width, 7, 2, 3));
  bn1 = register_norm(*this, "bn1", norm_of(0), o.width, o.norm_eps);
  maxpool = register_module(
      "maxpool", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(3).stride(2).padding(1)));

  std::int64_t inplanes = o.width;
  torch::nn::Sequential* stages[4] = {&layer1, &layer2, &layer3, &layer4};
  for (std::int64_t i = 0; i < 4; ++i) {
    const auto planes = o.width << i;
    const auto stride = i == 0 ? 1 : 2;
    torch::nn::Sequential seq;
    for (std::int64_t b = 0; b < o.layers[i]; ++b) {
      const auto s = b == 0 ? stride : 1;
      if (o.bottleneck) {
        seq->push_back(Bottleneck(inplanes, planes, s, norm_of(i + 1), o.norm_eps));
      } else {
        seq->push_back(BasicBlock(inplanes, planes, s, norm_of(i + 1), o.norm_eps));
      }
      inplanes = planes * o.expansion();
    }
    *stages[i] = register_module("layer" + std::to_string(i + 1), seq);
  }
  init_weights();

  // Freeze: no gradients for the stem and the first freeze_at - 1 stages.
  std::vector<torch::nn::Module*> frozen;
  if (o.freeze_at >= 1) {
    frozen.push_back(conv1.get());
    frozen.push_back(bn1.ptr().get());
  }
  for (std::int64_t i = 0; i + 1 < o.freeze_at; ++i) frozen.push_back(stages[i]->get());
  for (auto* m : frozen) {
    for (auto& p : m->parameters()) p.requires_grad_(false);
  }
}

void ResNetImpl::init_weights() {
  torch::NoGradGuard no_grad;
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* c = module->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = module->as<torch::nn::BatchNorm2d>()) {
      bn->weight.fill_(1.0);
      bn->bias.zero_();
      bn->running_mean.zero_();
      bn->running_var.fill_(1.0);
    } else if (auto* fbn = module->as<FrozenBatchNorm2d>()) {
      fbn->weight.fill_(1.0);
      fbn->bias.zero_();
      fbn->running_mean.zero_();
      fbn->running_var.fill_(1.0);
    }
  }
}

namespace {

// `conv` with the frozen batch norm `norm` folded in: w' = w * scale per output channel,
// b' = shift; same device, dtype and memory format.
torch::nn::Conv2d fold_norm(const torch::nn::Conv2d& conv, const FrozenBatchNorm2dImpl& norm) {
  const auto& o = conv->options;
  torch::nn::Conv2d fused(torch::nn::Conv2dOptions(o.in_channels(), o.out_channels(),
                                                   o.kernel_size())
                              .stride(o.stride())
                              .padding(o.padding())
                              .dilation(o.dilation())
                              .groups(o.groups())
                              .bias(true));
  torch::NoGradGuard no_grad;
  const auto scale = norm.weight * (norm.running_var + norm.eps).rsqrt();
  auto shift = norm.bias - norm.running_mean * scale;
  if (conv->bias.defined()) shift = shift + conv->bias * scale;
  const auto dtype = conv->weight.scalar_type();
  fused->weight.set_data(conv->weight * scale.view({-1, 1, 1, 1}).to(dtype));
  fused->bias.set_data(shift.to(dtype));
  fused->weight.requires_grad_(conv->weight.requires_grad());
  fused->bias.requires_grad_(conv->weight.requires_grad());
  return fused;
}

// Folds `owner`'s norm `norm_name` (when frozen) into its convolution `conv_name` and puts an
// identity in the norm's place.
std::int64_t fuse_pair(torch::nn::Module& owner, torch::nn::Conv2d& conv,
                       const std::string& conv_name, torch::nn::AnyModule& norm,
                       const std::string& norm_name) {
  const auto* frozen = norm.ptr()->as<FrozenBatchNorm2d>();
  if (!frozen) return 0;
  conv = owner.replace_module(conv_name, fold_norm(conv, *frozen));
  torch::nn::Identity identity;
  owner.replace_module(norm_name, identity);
  norm = torch::nn::AnyModule(identity);
  return 1;
}

// The downsample branch (1x1 conv, frozen norm) becomes the fused convolution alone.
std::int64_t fuse_downsample(torch::nn::Module& owner, torch::nn::Sequential& downsample) {
  if (!downsample || downsample->size() < 2) return 0;  // absent or already fused
  const auto* frozen = downsample[1]->as<FrozenBatchNorm2d>();
  if (!frozen) return 0;
  torch::nn::Sequential fused;
  fused->push_back(fold_norm(torch::nn::Conv2d(downsample->ptr<torch::nn::Conv2dImpl>(0)), *frozen));
  downsample = owner.replace_module("downsample", fused);
  return 1;
}

}  // namespace

std::int64_t ResNetImpl::fuse_frozen_norms() {
  std::int64_t fused = fuse_pair(*this, conv1, "conv1", bn1, "bn1");
  for (auto* stage : {&layer1, &layer2, &layer3, &layer4}) {
    for (auto& block : **stage) {
      if (auto* b = block.ptr()->as<Bottleneck>()) {
        fused += fuse_pair(*b, b->conv1, "conv1", b->bn1, "bn1") +
                 fuse_pair(*b, b->conv2, "conv2", b->bn2, "bn2") +
                 fuse_pair(*b, b->conv3, "conv3", b->bn3, "bn3") +
                 fuse_downsample(*b, b->downsample);
      } else if (auto* b = block.ptr()->as<BasicBlock>()) {
        fused += fuse_pair(*b, b->conv1, "conv1", b->bn1, "bn1") +
                 fuse_pair(*b, b->conv2, "conv2", b->bn2, "bn2") +
                 fuse_downsample(*b, b->downsample);
      }
    }
  }
  return fused;
}

torch::Tensor ResNetImpl::stem(const torch::Tensor& images) {
  WICO_CHECK(images.dim() == 4 && images.size(1) == options_.in_channels, "ResNet: expected [B, ",
             options_.in_channels, ", H, W] images, got ", images.sizes());
  return maxpool->forward(bn1.forward(conv1->forward(images)).relu_());
}

std::vector<torch::Tensor> ResNetImpl::forward(const torch::Tensor& images) {
  std::vector<torch::Tensor> out;
  auto x = stem(images);
  for (auto* stage : {&layer1, &layer2, &layer3, &layer4}) {
    x = (*stage)->forward(x);
    out.push_back(x);
  }
  return out;
}

double resnet_conv_flops(const ResNetOptions& options, std::int64_t height, std::int64_t width) {
  options.validate();
  // A convolution's output side (padding k / 2, as every convolution here).
  auto out = [](std::int64_t side, std::int64_t kernel, std::int64_t stride) {
    return (side + 2 * (kernel / 2) - kernel) / stride + 1;
  };
  auto conv = [](std::int64_t in, std::int64_t out_channels, std::int64_t kernel, std::int64_t h,
                 std::int64_t w) {
    return 2.0 * static_cast<double>(in * out_channels * kernel * kernel * h * w);
  };
  auto h = out(height, 7, 2), w = out(width, 7, 2);
  double flops = conv(options.in_channels, options.width, 7, h, w);
  h = out(h, 3, 2);  // max pool
  w = out(w, 3, 2);
  std::int64_t inplanes = options.width;
  for (std::int64_t i = 0; i < 4; ++i) {
    const auto planes = options.width << i;
    const auto expanded = planes * options.expansion();
    for (std::int64_t b = 0; b < options.layers[i]; ++b) {
      const auto stride = (b == 0 && i > 0) ? 2 : 1;
      const auto ho = out(h, 3, stride), wo = out(w, 3, stride);
      if (options.bottleneck) {
        flops += conv(inplanes, planes, 1, h, w) + conv(planes, planes, 3, ho, wo) +
                 conv(planes, expanded, 1, ho, wo);
      } else {
        flops += conv(inplanes, planes, 3, ho, wo) + conv(planes, planes, 3, ho, wo);
      }
      if (stride != 1 || inplanes != expanded) flops += conv(inplanes, expanded, 1, ho, wo);
      inplanes = expanded;
      h = ho;
      w = wo;
    }
  }
  return flops;
}

}  // namespace wico::backbones
