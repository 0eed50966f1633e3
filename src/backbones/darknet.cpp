#include "wico/backbones/darknet.h"

#include <ATen/ATen.h>

#include <string>
#include <utility>

#include "wico/core/error.h"

namespace wico::backbones {

std::int64_t DarknetOptions::cbl_count() const {
  std::int64_t n = 1 + head_convs;
  for (const std::int64_t b : blocks) n += 1 + 2 * b;
  return n;
}

void DarknetOptions::validate() const {
  auto fail = [](const std::string& what) { throw ConfigError("Darknet options: " + what); };
  if (in_channels < 1 || width < 1) fail("in_channels and width must be positive");
  if (blocks.size() != 5) fail("blocks must list the 5 stages, got " + std::to_string(blocks.size()));
  for (const std::int64_t b : blocks) {
    if (b < 0) fail("a stage cannot have " + std::to_string(b) + " blocks");
  }
  if (head_convs < 0) fail("head_convs must be 0 or more");
  if (bn_eps <= 0 || bn_momentum < 0 || bn_momentum > 1) fail("bn_eps > 0, bn_momentum in [0, 1]");
  if (frozen_cbls < 0 || frozen_cbls > cbl_count()) {
    fail("frozen_cbls is " + std::to_string(frozen_cbls) + ", the network has " +
         std::to_string(cbl_count()) + " CBLs");
  }
}

ConvBnLeakyImpl::ConvBnLeakyImpl(std::int64_t in, std::int64_t out, std::int64_t kernel,
                                 std::int64_t stride, const DarknetOptions& options)
    : stride_(stride), slope_(options.leaky_slope) {
  // 'same' for stride 1 (odd kernels: (k - 1) / 2 all round); stride 2 pads in forward.
  const std::int64_t padding = stride == 1 ? (kernel - 1) / 2 : 0;
  conv = register_module(
      "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                                    .stride(stride)
                                    .padding(padding)
                                    .bias(false)));
  bn = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNormOptions(out)
                                                        .eps(options.bn_eps)
                                                        .momentum(options.bn_momentum)));
}

at::Tensor ConvBnLeakyImpl::forward(const at::Tensor& x) {
  // ZeroPadding2D(((1, 0), (1, 0))): one row on top, one column on the left.
  const at::Tensor in = stride_ == 2 ? at::constant_pad_nd(x, {1, 0, 1, 0}, 0.0) : x;
  if (folded_weight_.defined() && !is_training()) {
    const auto& o = conv->options;
    const auto padding = c10::get<torch::ExpandingArray<2>>(o.padding());
    at::Tensor y = at::conv2d(in, folded_weight_, folded_bias_, *o.stride(), *padding,
                              *o.dilation());
    return y.requires_grad() ? at::leaky_relu(y, slope_) : at::leaky_relu_(y, slope_);
  }
  return at::leaky_relu(bn->forward(conv->forward(in)), slope_);
}

void ConvBnLeakyImpl::fold_batch_norm() {
  const at::NoGradGuard no_grad;
  const at::Tensor scale = bn->weight / at::sqrt(bn->running_var + bn->options.eps());
  folded_weight_ = (conv->weight * scale.view({-1, 1, 1, 1}))
                       .contiguous(conv->weight.suggest_memory_format());
  folded_bias_ = bn->bias - bn->running_mean * scale;
}

void fold_batch_norms(torch::nn::Module& module) {
  for (const auto& m : module.modules(/*include_self=*/false)) {
    if (auto* cbl = m->as<ConvBnLeakyImpl>()) cbl->fold_batch_norm();
  }
}

void ConvBnLeakyImpl::freeze() {
  for (auto& p : parameters()) p.set_requires_grad(false);
  bn->options.momentum(0.0);
  frozen_ = true;
}

DarknetImpl::DarknetImpl(DarknetOptions options) : options_(std::move(options)) {
  options_.validate();
  const auto& o = options_;
  cbl = register_module("cbl", torch::nn::ModuleList());
  for (const DarknetCbl& c : darknet_layout(o)) {
    cbl->push_back(ConvBnLeaky(c.in, c.out, c.kernel, c.stride, o));
  }
  for (std::int64_t i = 0; i < o.frozen_cbls; ++i) cbl->ptr<ConvBnLeakyImpl>(i)->freeze();
}

DarknetFeatures DarknetImpl::forward(const at::Tensor& images) {
  WICO_CHECK(images.dim() == 4 && images.size(1) == options_.in_channels, "Darknet expects [B, ",
             options_.in_channels, ", H, W] images, got ", images.sizes());
  std::size_t next = 0;
  auto run = [&](const at::Tensor& x) { return cbl->ptr<ConvBnLeakyImpl>(next++)->forward(x); };
  DarknetFeatures out;
  at::Tensor x = run(images);
  for (std::size_t s = 0; s < options_.blocks.size(); ++s) {
    x = run(x);
    for (std::int64_t b = 0; b < options_.blocks[s]; ++b) x = x + run(run(x));
    if (s == 2) out.stride8 = x;
    if (s == 3) out.stride16 = x;
  }
  for (std::int64_t i = 0; i < options_.head_convs; ++i) x = run(x);
  out.stride32 = x;
  return out;
}

std::vector<DarknetCbl> darknet_layout(const DarknetOptions& o) {
  o.validate();
  std::vector<DarknetCbl> layout;
  layout.push_back({o.in_channels, o.width, 3, 1});
  std::int64_t channels = o.width;
  for (std::size_t s = 0; s < o.blocks.size(); ++s) {
    const std::int64_t c = o.stage_channels(static_cast<std::int64_t>(s));
    layout.push_back({channels, c, 3, 2});
    for (std::int64_t b = 0; b < o.blocks[s]; ++b) {
      layout.push_back({c, c / 2, 1, 1});
      layout.push_back({c / 2, c, 3, 1});
    }
    channels = c;
  }
  for (std::int64_t i = 0; i < o.head_convs; ++i) {
    const bool reduce = i % 2 == 0;  // 1x1 to 16w, then 3x3 back to 32w
    layout.push_back({reduce ? channels : channels / 2, reduce ? channels / 2 : channels,
                      reduce ? 1 : 3, 1});
  }
  return layout;
}

std::vector<io::DarknetConvSection> darknet_sections(const DarknetOptions& o) {
  std::vector<io::DarknetConvSection> sections;
  for (const DarknetCbl& c : darknet_layout(o)) sections.push_back({c.out, c.in, c.kernel, true});
  return sections;
}

}  // namespace wico::backbones
