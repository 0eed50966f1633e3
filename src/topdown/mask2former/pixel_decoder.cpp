#include "wico/topdown/mask2former/pixel_decoder.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/utils.h>

#include <cmath>
#include <string>
#include <utility>

#include "wico/core/error.h"
#include "wico/nn/autocast.h"
#include "wico/nn/linear.h"

namespace wico::topdown {

namespace {

// A 1x1 convolution as a matrix product per image: x [B, in, H, W] -> [B, out, H, W]. oneDNN's
// backward of small convolutions has given nondeterministic or NaN gradients on this CPU build.
// (at::matmul of the [out, in] weight and [B, in, HW] computes the transposed product and copies
// it back: at the 1/4 scale that transpose cost twice the product.)
// A channels-last input (inference, docs/performance.md) is one product over its [B*H*W, in]
// rows and stays channels-last.
at::Tensor conv1x1(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const auto b = x.size(0), h = x.size(2), w = x.size(3);
  const auto w2 = weight.flatten(1);  // [out, in]
  if (!x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return nn::linear(x.permute({0, 2, 3, 1}), w2, bias).permute({0, 3, 1, 2});
  }
  const auto flat = x.contiguous().flatten(2);  // [B, in, HW]
  at::Tensor y;
  if (b == 1) {
    y = bias.defined() ? at::addmm(bias.view({-1, 1}), w2, flat[0]) : at::mm(w2, flat[0]);
    y = y.unsqueeze(0);
  } else {
    const auto batched = w2.unsqueeze(0).expand({b, w2.size(0), w2.size(1)});
    y = bias.defined() ? at::baddbmm(bias.view({1, -1, 1}), batched, flat) : at::bmm(batched, flat);
  }
  return y.view({b, -1, h, w});
}

// fvcore's c2_xavier_fill: Kaiming uniform with a = 1 (fan_in), bias 0.
void c2_xavier_fill(at::Tensor& weight, at::Tensor* bias) {
  torch::nn::init::kaiming_uniform_(weight, /*a=*/1.0);
  if (bias && bias->defined()) bias->zero_();
}

std::string list(const std::vector<std::int64_t>& values) {
  std::string out = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    out += (i ? ", " : "") + std::to_string(values[i]);
  }
  return out + "]";
}

}  // namespace

void PixelDecoderOptions::validate() const {
  auto fail = [](const std::string& what) { throw ConfigError("pixel decoder options: " + what); };
  auto str = [](auto v) { return std::to_string(v); };
  if (in_channels.empty()) fail("in_channels is empty; give the channels of res2..res5");
  if (in_channels.size() != in_strides.size()) {
    fail("in_channels " + list(in_channels) + " and in_strides " + list(in_strides) +
         " must have the same length");
  }
  for (auto c : in_channels) {
    if (c < 1) fail("in_channels " + list(in_channels) + " must all be positive");
  }
  for (std::size_t i = 0; i < in_strides.size(); ++i) {
    if (in_strides[i] < 1 || (i > 0 && in_strides[i] != 2 * in_strides[i - 1])) {
      fail("in_strides " + list(in_strides) + " must be positive, each twice the previous");
    }
  }
  if (conv_dim < 1 || conv_dim % 4 != 0) {
    // The sine embedding has conv_dim / 2 features per axis, half sines and half cosines.
    fail("conv_dim (" + str(conv_dim) + ") must be a positive multiple of 4");
  }
  if (mask_dim < 1) fail("mask_dim (" + str(mask_dim) + ") must be positive");
  if (num_layers < 1) fail("num_layers (" + str(num_layers) + ") must be positive");
  if (num_heads < 1 || conv_dim % num_heads != 0) {
    fail("num_heads (" + str(num_heads) + ") must be positive and divide conv_dim (" +
         str(conv_dim) + ")");
  }
  if (num_points < 1) fail("num_points (" + str(num_points) + ") must be positive");
  if (ffn_dim < 1) fail("ffn_dim (" + str(ffn_dim) + ") must be positive");
  if (!(dropout >= 0.0 && dropout < 1.0)) fail("dropout (" + str(dropout) + ") must be in [0, 1)");
  if (num_groups < 1 || conv_dim % num_groups != 0) {
    fail("num_groups (" + str(num_groups) + ") must be positive and divide conv_dim (" +
         str(conv_dim) + ")");
  }
  if (transformer_in_levels < 1 ||
      transformer_in_levels > static_cast<std::int64_t>(in_channels.size())) {
    fail("transformer_in_levels (" + str(transformer_in_levels) + ") must be in 1.." +
         str(in_channels.size()));
  }
}

// ---- position embedding ----

at::Tensor position_embedding_sine(std::int64_t height, std::int64_t width,
                                   std::int64_t num_pos_feats, const c10::TensorOptions& options,
                                   double temperature) {
  const auto f = options.dtype(at::kFloat);
  constexpr double kScale = 2.0 * M_PI, kEps = 1e-6;
  auto dim_t = at::arange(num_pos_feats, f);
  dim_t = at::pow(temperature, 2 * at::div(dim_t, 2, "floor") / static_cast<double>(num_pos_feats));
  // The cumulative sums of an all-true not-mask are 1..n along each axis, normalised by the last
  // with the original's float32 operations. Each axis's features depend on that axis only: they
  // are computed once per row / column and broadcast (the sines were most of the time).
  auto embed = [&](std::int64_t n) {  // [n, F]
    auto e = at::arange(1, n + 1, f);
    e = e / (e.narrow(0, n - 1, 1) + kEps) * kScale;
    const auto p = e.unsqueeze(-1) / dim_t;
    return at::stack({p.slice(1, 0, num_pos_feats, 2).sin(), p.slice(1, 1, num_pos_feats, 2).cos()},
                     2)
        .flatten(1);
  };
  const auto pos_y = embed(height).view({1, height, 1, num_pos_feats});
  const auto pos_x = embed(width).view({1, 1, width, num_pos_feats});
  return at::cat({pos_y.expand({1, height, width, num_pos_feats}),
                  pos_x.expand({1, height, width, num_pos_feats})},
                 3)
      .permute({0, 3, 1, 2});
}

// ---- encoder ----

MSDeformAttnEncoderLayerImpl::MSDeformAttnEncoderLayerImpl(std::int64_t d_model, std::int64_t d_ffn,
                                                           double dropout, std::int64_t n_levels,
                                                           std::int64_t n_heads,
                                                           std::int64_t n_points)
    : dropout_(dropout) {
  self_attn = register_module(
      "self_attn", MSDeformAttn(MSDeformAttnOptions{d_model, n_levels, n_heads, n_points}));
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  linear1 = register_module("linear1", torch::nn::Linear(d_model, d_ffn));
  linear2 = register_module("linear2", torch::nn::Linear(d_ffn, d_model));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
}

at::Tensor MSDeformAttnEncoderLayerImpl::forward(const at::Tensor& src, const at::Tensor& pos,
                                                 const at::Tensor& reference_points,
                                                 const SpatialShapes& shapes,
                                                 const at::Tensor& padding_mask) {
  const bool train = is_training() && dropout_ > 0.0;
  const auto query = pos.defined() ? src + pos : src;
  auto attended = self_attn->forward(query, reference_points, src, shapes, padding_mask);
  auto x = norm1->forward(src + at::dropout(attended, dropout_, train));
  auto hidden = at::dropout(nn::linear(x, linear1).relu_(), dropout_, train);
  return norm2->forward(x + at::dropout(nn::linear(hidden, linear2), dropout_, train));
}

MSDeformAttnEncoderImpl::MSDeformAttnEncoderImpl(std::int64_t num_layers, std::int64_t d_model,
                                                 std::int64_t d_ffn, double dropout,
                                                 std::int64_t n_levels, std::int64_t n_heads,
                                                 std::int64_t n_points) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (std::int64_t k = 0; k < num_layers; ++k) {
    layers->push_back(
        MSDeformAttnEncoderLayer(d_model, d_ffn, dropout, n_levels, n_heads, n_points));
  }
}

at::Tensor MSDeformAttnEncoderImpl::reference_points(const SpatialShapes& shapes,
                                                     const at::Tensor& valid_ratios) {
  const auto f = valid_ratios.options();
  std::vector<at::Tensor> per_level;
  for (std::size_t l = 0; l < shapes.size(); ++l) {
    const auto [h, w] = shapes[l];
    const auto grid = at::meshgrid({at::linspace(0.5, static_cast<double>(h) - 0.5, h, f),
                                    at::linspace(0.5, static_cast<double>(w) - 0.5, w, f)},
                                   "ij");
    const auto ratios = valid_ratios.select(1, static_cast<std::int64_t>(l));  // [B, 2] (w, h)
    const auto ref_y = grid[0].reshape({1, -1}) / (ratios.narrow(1, 1, 1) * static_cast<double>(h));
    const auto ref_x = grid[1].reshape({1, -1}) / (ratios.narrow(1, 0, 1) * static_cast<double>(w));
    per_level.push_back(at::stack({ref_x, ref_y}, -1));  // [B, hw, 2]
  }
  return at::cat(per_level, 1).unsqueeze(2) * valid_ratios.unsqueeze(1);
}

at::Tensor MSDeformAttnEncoderImpl::forward(const at::Tensor& src, const SpatialShapes& shapes,
                                            const at::Tensor& valid_ratios, const at::Tensor& pos,
                                            const at::Tensor& padding_mask) {
  const auto reference = reference_points(shapes, valid_ratios);
  auto output = src;
  for (const auto& layer : *layers) {
    output = layer->as<MSDeformAttnEncoderLayer>()->forward(output, pos, reference, shapes,
                                                            padding_mask);
  }
  return output;
}

MSDeformAttnTransformerEncoderOnlyImpl::MSDeformAttnTransformerEncoderOnlyImpl(
    std::int64_t d_model, std::int64_t n_heads, std::int64_t num_layers, std::int64_t d_ffn,
    double dropout, std::int64_t n_levels, std::int64_t n_points) {
  encoder = register_module("encoder", MSDeformAttnEncoder(num_layers, d_model, d_ffn, dropout,
                                                           n_levels, n_heads, n_points));
  level_embed = register_parameter("level_embed", at::empty({n_levels, d_model}));
  reset_parameters();
}

void MSDeformAttnTransformerEncoderOnlyImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& p : parameters()) {
    if (p.dim() > 1) torch::nn::init::xavier_uniform_(p);
  }
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* attn = module->as<MSDeformAttn>()) attn->reset_parameters();
  }
  level_embed.normal_();
}

at::Tensor MSDeformAttnTransformerEncoderOnlyImpl::forward(const std::vector<at::Tensor>& srcs,
                                                           const std::vector<at::Tensor>& pos,
                                                           SpatialShapes* shapes) {
  WICO_CHECK(
      srcs.size() == pos.size() && static_cast<std::int64_t>(srcs.size()) == level_embed.size(0),
      "MSDeformAttnTransformerEncoderOnly: ", srcs.size(), " levels and ", pos.size(),
      " position embeddings for ", level_embed.size(0), " level embeddings");
  SpatialShapes local;
  auto& sh = shapes ? *shapes : local;
  sh.clear();
  std::vector<at::Tensor> src_flatten, pos_flatten;
  for (std::size_t l = 0; l < srcs.size(); ++l) {
    sh.push_back({srcs[l].size(2), srcs[l].size(3)});
    src_flatten.push_back(srcs[l].flatten(2).transpose(1, 2));
    pos_flatten.push_back(pos[l].flatten(2).transpose(1, 2) +
                          level_embed[static_cast<std::int64_t>(l)].view({1, 1, -1}));
  }
  const auto src = at::cat(src_flatten, 1);
  // Every position is valid: the original's valid ratios of all-false masks are exactly 1.
  const auto valid_ratios =
      at::ones({src.size(0), static_cast<std::int64_t>(srcs.size()), 2}, src.options());
  return encoder->forward(src, sh, valid_ratios, at::cat(pos_flatten, 1));
}

// ---- FPN convolutions ----

ConvNormImpl::ConvNormImpl(std::int64_t in, std::int64_t out, std::int64_t kernel,
                           std::int64_t groups, bool relu)
    : relu_(relu) {
  weight = register_parameter("weight", at::empty({out, in, kernel, kernel}));
  norm = register_module("norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, out)));
  torch::NoGradGuard no_grad;
  c2_xavier_fill(weight, nullptr);
}

at::Tensor ConvNormImpl::forward(const at::Tensor& x) {
  const auto k = weight.size(2);
  auto y = k == 1 ? conv1x1(x, weight, {}) : at::conv2d(x, weight, {}, 1, k / 2);
  y = norm->forward(y);
  return relu_ ? y.relu() : y;
}

// ---- pixel decoder ----

MSDeformAttnPixelDecoderImpl::MSDeformAttnPixelDecoderImpl(PixelDecoderOptions options)
    : options_(std::move(options)) {
  options_.validate();
  const auto& o = options_;
  const auto n = static_cast<std::int64_t>(o.in_channels.size());
  const auto levels = o.transformer_in_levels;

  input_proj = register_module("input_proj", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < levels; ++i) {
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(o.in_channels[n - 1 - i], o.conv_dim, 1));
    torch::nn::GroupNorm gn(torch::nn::GroupNormOptions(o.num_groups, o.conv_dim));
    torch::NoGradGuard no_grad;
    torch::nn::init::xavier_uniform_(conv->weight, 1.0);
    conv->bias.zero_();
    input_proj->push_back(torch::nn::Sequential(conv, gn));
  }
  transformer = register_module("transformer", MSDeformAttnTransformerEncoderOnly(
                                                   o.conv_dim, o.num_heads, o.num_layers, o.ffn_dim,
                                                   o.dropout, levels, o.num_points));
  mask_features = register_module(
      "mask_features", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.conv_dim, o.mask_dim, 1)));
  {
    torch::NoGradGuard no_grad;
    c2_xavier_fill(mask_features->weight, &mask_features->bias);
  }
  // adapter_j / layer_j for the j-th finest input; used coarsest first.
  for (std::int64_t j = 0; j < n - levels; ++j) {
    const auto name = std::to_string(j + 1);
    lateral_convs.insert(
        lateral_convs.begin(),
        register_module("adapter_" + name, ConvNorm(o.in_channels[j], o.conv_dim, 1, o.num_groups,
                                                    /*relu=*/false)));
    output_convs.insert(output_convs.begin(),
                        register_module("layer_" + name, ConvNorm(o.conv_dim, o.conv_dim, 3,
                                                                  o.num_groups, /*relu=*/true)));
  }
}

PixelDecoderOutput MSDeformAttnPixelDecoderImpl::forward(const std::vector<at::Tensor>& features) {
  // float32 throughout, as the original's forward_features (@autocast(enabled=False)).
  const wico::nn::AutocastDisabled float32;
  const auto& o = options_;
  const auto n = static_cast<std::int64_t>(o.in_channels.size());
  WICO_CHECK(static_cast<std::int64_t>(features.size()) == n, "pixel decoder: expected ", n,
             " feature maps (res2..), got ", features.size());
  for (std::int64_t i = 0; i < n; ++i) {
    const auto& f = features[i];
    WICO_CHECK(f.dim() == 4 && f.size(1) == o.in_channels[i] && f.size(0) == features[0].size(0),
               "pixel decoder: feature ", i, " must be [B, ", o.in_channels[i], ", h, w], got ",
               f.sizes());
  }
  const auto levels = o.transformer_in_levels;
  const auto batch = features[0].size(0);

  // The deformable encoder on the coarsest inputs, coarsest first (float32 as the original).
  std::vector<at::Tensor> srcs, pos;
  for (std::int64_t i = 0; i < levels; ++i) {
    const auto x = features[n - 1 - i].to(at::kFloat);
    auto& proj = *input_proj[i]->as<torch::nn::Sequential>();
    const auto* conv = proj[0]->as<torch::nn::Conv2d>();
    srcs.push_back(
        proj[1]->as<torch::nn::GroupNorm>()->forward(conv1x1(x, conv->weight, conv->bias)));
    pos.push_back(position_embedding_sine(x.size(2), x.size(3), o.conv_dim / 2, x.options()));
  }
  SpatialShapes shapes;
  const auto memory = transformer->forward(srcs, pos, &shapes);

  std::vector<at::Tensor> out;
  std::int64_t start = 0;
  for (const auto& [h, w] : shapes) {
    // A channels-last view of the encoder's output: the transformer decoder flattens it back to
    // [B, HW, C] for free. (Through view and permute: a reshape of the transposed slice gives
    // the batch a stride that suggest_memory_format does not take for channels-last, and the
    // upsampling below then converts it.)
    out.push_back(
        memory.narrow(1, start, h * w).view({batch, h, w, o.conv_dim}).permute({0, 3, 1, 2}));
    start += h * w;
  }
  // FPN on the finer inputs, coarsest first; bilinear upsampling as the original (its comment
  // says nearest).
  for (std::size_t k = 0; k < lateral_convs.size(); ++k) {
    const auto x = features[n - levels - 1 - static_cast<std::int64_t>(k)].to(at::kFloat);
    const auto lateral = lateral_convs[k]->forward(x);
    // Upsampled in the lateral's layout (NCHW in training; channels-last in inference, where
    // the encoder's output view already is): mixed layouts convert at the 1/4 scale.
    const auto up = at::upsample_bilinear2d(out.back().contiguous(lateral.suggest_memory_format()),
                                            {lateral.size(2), lateral.size(3)},
                                            /*align_corners=*/false);
    out.push_back(output_convs[k]->forward(lateral + up));
  }

  PixelDecoderOutput result;
  result.mask_features = conv1x1(out.back(), mask_features->weight, mask_features->bias);
  // The original always hands three scales to the transformer decoder.
  for (std::size_t i = 0; i < out.size() && i < 3; ++i) result.multi_scale.push_back(out[i]);
  return result;
}

}  // namespace wico::topdown
