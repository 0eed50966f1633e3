#include "wico/backbones/clip.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/utils.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "wico/core/error.h"
#include "wico/nn/winograd_conv.h"

namespace wico::backbones {

namespace {

namespace tnn = torch::nn;

tnn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride = 1) {
  return tnn::Conv2d(
      tnn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

// Multi-head attention over [B, L, E] queries and keys/values, projections given, as
// F.multi_head_attention_forward (no dropout): q scaled by 1/sqrt(head dim), an additive mask
// [Lq, Lk] or undefined, the heads concatenated -> [B, Lq, E] before the output projection.
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  std::int64_t heads, const at::Tensor& additive_mask) {
  const std::int64_t b = q.size(0), lq = q.size(1), lk = k.size(1), e = q.size(2),
                     d = e / heads;
  auto split = [&](const at::Tensor& x, std::int64_t len) {
    return x.view({b, len, heads, d}).transpose(1, 2);  // [B, H, L, d]
  };
  at::Tensor scores = at::matmul(split(q, lq) / std::sqrt(static_cast<double>(d)),
                                 split(k, lk).transpose(-2, -1));
  if (additive_mask.defined()) scores = scores + additive_mask;
  return at::matmul(scores.softmax(-1), split(v, lk)).transpose(1, 2).reshape({b, lq, e});
}

}  // namespace

// ---- options ----

ClipVisualOptions ClipVisualOptions::rn50() { return {}; }

ClipVisualOptions ClipVisualOptions::rn101() {
  ClipVisualOptions o;
  o.layers = {3, 4, 23, 3};
  o.output_dim = 512;
  return o;
}

void ClipVisualOptions::validate() const {
  auto fail = [](const std::string& what) { throw ConfigError("CLIP ResNet options: " + what); };
  if (layers.size() != 4) fail("expected 4 stages, got " + std::to_string(layers.size()));
  for (const auto n : layers) {
    if (n < 1) fail("every stage needs at least one block");
  }
  if (width < 2 || width % 2 != 0) fail("width must be a positive even number, got " +
                                        std::to_string(width));
  if (output_dim < 1 || spacial_dim < 1) fail("output_dim and spacial_dim must be positive");
  if (heads < 1 || embed_dim() % heads != 0) {
    fail("heads (" + std::to_string(heads) + ") must divide width * 32 = " +
         std::to_string(embed_dim()));
  }
}

void ClipTextOptions::validate() const {
  auto fail = [](const std::string& what) { throw ConfigError("CLIP text options: " + what); };
  if (vocab_size < 2 || context_length < 1 || layers < 1 || embed_dim < 1) {
    fail("vocab_size, context_length, layers and embed_dim must be positive");
  }
  if (heads < 1 || width % heads != 0) {
    fail("heads (" + std::to_string(heads) + ") must divide width (" + std::to_string(width) +
         ")");
  }
}

// ---- visual ----

ClipBottleneckImpl::ClipBottleneckImpl(std::int64_t inplanes, std::int64_t planes,
                                       std::int64_t stride, double eps)
    : stride_(stride) {
  conv1 = register_module("conv1", conv(inplanes, planes, 1));
  bn1 = register_module("bn1", nn::BatchNorm(planes, eps));
  conv2 = register_module("conv2", conv(planes, planes, 3));
  bn2 = register_module("bn2", nn::BatchNorm(planes, eps));
  conv3 = register_module("conv3", conv(planes, planes * 4, 1));
  bn3 = register_module("bn3", nn::BatchNorm(planes * 4, eps));
  if (stride > 1 || inplanes != planes * 4) {
    downsample = register_module("downsample", std::make_shared<tnn::Module>());
    downsample_conv = downsample->register_module("0", conv(inplanes, planes * 4, 1));
    downsample_bn = downsample->register_module("1", nn::BatchNorm(planes * 4, eps));
  }
}

at::Tensor ClipBottleneckImpl::forward(const at::Tensor& x) {
  at::Tensor out = bn1->forward(conv1->forward(x)).relu_();
  out = bn2->forward(wico::nn::conv2d(conv2, out)).relu_();  // Winograd where it pays
  if (stride_ > 1) out = at::avg_pool2d(out, stride_);
  out = bn3->forward(conv3->forward(out));
  at::Tensor identity = x;
  if (downsample) {
    identity = downsample_bn->forward(
        downsample_conv->forward(stride_ > 1 ? at::avg_pool2d(x, stride_) : x));
  }
  return (out + identity).relu_();
}

CrisAttentionPoolImpl::CrisAttentionPoolImpl(std::int64_t spacial_dim, std::int64_t embed_dim,
                                             std::int64_t heads, std::int64_t output_dim,
                                             double eps)
    : spacial_dim_(spacial_dim), heads_(heads) {
  positional_embedding = register_parameter(
      "positional_embedding",
      at::randn({spacial_dim * spacial_dim + 1, embed_dim}) /
          std::sqrt(static_cast<double>(embed_dim)));
  k_proj = register_module("k_proj", tnn::Linear(embed_dim, embed_dim));
  q_proj = register_module("q_proj", tnn::Linear(embed_dim, embed_dim));
  v_proj = register_module("v_proj", tnn::Linear(embed_dim, embed_dim));
  c_proj = register_module("c_proj", tnn::Linear(embed_dim, output_dim));
  connect = register_module("connect", std::make_shared<tnn::Module>());
  connect_conv = connect->register_module("0", conv(embed_dim, output_dim, 1));
  connect_bn = connect->register_module("1", nn::BatchNorm(output_dim, eps));
  // CLIP's initialize_parameters for the projections (the archive overwrites them).
  const torch::NoGradGuard no_grad;
  const double std = std::pow(static_cast<double>(embed_dim), -0.5);
  for (auto* p : {&q_proj, &k_proj, &v_proj, &c_proj}) (*p)->weight.normal_(0, std);
}

at::Tensor CrisAttentionPoolImpl::forward(const at::Tensor& x) {
  WICO_CHECK(x.dim() == 4 && x.size(1) == positional_embedding.size(1),
             "CRIS attention pooling: expected [B, ", positional_embedding.size(1),
             ", H, W], got ", x.sizes());
  const std::int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const at::Tensor residual = connect_bn->forward(connect_conv->forward(x));
  // The table's spatial rows (the class row 0 dropped) as a [1, C, s, s] map, resized
  // bicubically (align_corners false) to the grid: [HW, C].
  const at::Tensor table = positional_embedding.narrow(0, 1, spacial_dim_ * spacial_dim_)
                               .reshape({1, spacial_dim_, spacial_dim_, c})
                               .permute({0, 3, 1, 2});
  const at::Tensor pos = at::upsample_bicubic2d(table, {h, w}, /*align_corners=*/false)
                             .flatten(2)
                             .transpose(1, 2);                  // [1, HW, C]
  const at::Tensor tokens = x.flatten(2).transpose(1, 2) + pos;  // [B, HW, C], row-major
  const at::Tensor attended =
      attend(q_proj->forward(tokens), k_proj->forward(tokens), v_proj->forward(tokens), heads_,
             {});
  const at::Tensor out = c_proj->forward(attended).transpose(1, 2).reshape({b, -1, h, w});
  return (out + residual).relu_();
}

ClipModifiedResNetImpl::ClipModifiedResNetImpl(ClipVisualOptions options)
    : options_(std::move(options)) {
  options_.validate();
  const auto& o = options_;
  const double eps = o.norm_eps;
  conv1 = register_module("conv1", conv(3, o.width / 2, 3, 2));
  bn1 = register_module("bn1", nn::BatchNorm(o.width / 2, eps));
  conv2 = register_module("conv2", conv(o.width / 2, o.width / 2, 3));
  bn2 = register_module("bn2", nn::BatchNorm(o.width / 2, eps));
  conv3 = register_module("conv3", conv(o.width / 2, o.width, 3));
  bn3 = register_module("bn3", nn::BatchNorm(o.width, eps));
  std::int64_t inplanes = o.width;
  torch::nn::ModuleList* stages[] = {&layer1, &layer2, &layer3, &layer4};
  for (std::size_t s = 0; s < 4; ++s) {
    const std::int64_t planes = o.width << s;
    auto list = tnn::ModuleList();
    for (std::int64_t i = 0; i < o.layers[s]; ++i) {
      list->push_back(ClipBottleneck(inplanes, planes, i == 0 && s > 0 ? 2 : 1, eps));
      inplanes = planes * 4;
    }
    *stages[s] = register_module("layer" + std::to_string(s + 1), list);
  }
  attnpool = register_module(
      "attnpool", CrisAttentionPool(o.spacial_dim, o.embed_dim(), o.heads, o.output_dim, eps));
}

ClipVisualFeatures ClipModifiedResNetImpl::forward(const at::Tensor& images) {
  WICO_CHECK(images.dim() == 4 && images.size(1) == 3,
             "CLIP ResNet: expected [B, 3, H, W] images, got ", images.sizes());
  at::Tensor x = bn1->forward(conv1->forward(images)).relu_();
  x = bn2->forward(conv2->forward(x)).relu_();
  x = at::avg_pool2d(bn3->forward(conv3->forward(x)).relu_(), 2);
  auto run = [](torch::nn::ModuleList& stage, at::Tensor y) {
    for (auto& block : *stage) y = block->as<ClipBottleneck>()->forward(y);
    return y;
  };
  ClipVisualFeatures out;
  x = run(layer1, x);
  out.c3 = run(layer2, x);
  out.c4 = run(layer3, out.c3);
  out.c5 = attnpool->forward(run(layer4, out.c4));
  return out;
}

// ---- text ----

ClipResidualBlockImpl::ClipResidualBlockImpl(std::int64_t width, std::int64_t heads)
    : heads_(heads) {
  auto attn = register_module("attn", std::make_shared<tnn::Module>());
  in_proj_weight = attn->register_parameter("in_proj_weight", at::empty({3 * width, width}));
  in_proj_bias = attn->register_parameter("in_proj_bias", at::zeros({3 * width}));
  out_proj = attn->register_module("out_proj", tnn::Linear(width, width));
  ln_1 = register_module("ln_1", tnn::LayerNorm(tnn::LayerNormOptions({width})));
  auto mlp = register_module("mlp", std::make_shared<tnn::Module>());
  c_fc = mlp->register_module("c_fc", tnn::Linear(width, width * 4));
  c_proj = mlp->register_module("c_proj", tnn::Linear(width * 4, width));
  ln_2 = register_module("ln_2", tnn::LayerNorm(tnn::LayerNormOptions({width})));
  const torch::NoGradGuard no_grad;
  torch::nn::init::xavier_uniform_(in_proj_weight);  // nn.MultiheadAttention's own init
  out_proj->bias.zero_();
}

at::Tensor ClipResidualBlockImpl::forward(const at::Tensor& x, const at::Tensor& attn_mask) {
  const at::Tensor a = ln_1->forward(x);
  const auto w = in_proj_weight.chunk(3), b = in_proj_bias.chunk(3);
  const at::Tensor y =
      x + out_proj->forward(attend(at::linear(a, w[0], b[0]), at::linear(a, w[1], b[1]),
                                   at::linear(a, w[2], b[2]), heads_, attn_mask));
  const at::Tensor h = c_fc->forward(ln_2->forward(y));
  return y + c_proj->forward(h * at::sigmoid(1.702 * h));  // QuickGELU
}

ClipImpl::ClipImpl(ClipVisualOptions visual_options, ClipTextOptions text)
    : text_(std::move(text)) {
  text_.validate();
  const auto& t = text_;
  visual = register_module("visual", ClipModifiedResNet(std::move(visual_options)));
  auto transformer = register_module("transformer", std::make_shared<tnn::Module>());
  resblocks = transformer->register_module("resblocks", tnn::ModuleList());
  for (std::int64_t i = 0; i < t.layers; ++i) resblocks->push_back(ClipResidualBlock(t.width, t.heads));
  token_embedding = register_module("token_embedding", tnn::Embedding(t.vocab_size, t.width));
  positional_embedding =
      register_parameter("positional_embedding", at::empty({t.context_length, t.width}));
  ln_final = register_module("ln_final", tnn::LayerNorm(tnn::LayerNormOptions({t.width})));
  text_projection = register_parameter("text_projection", at::empty({t.width, t.embed_dim}));
  logit_scale = register_parameter("logit_scale", at::full({}, std::log(1 / 0.07)));
  // CLIP's initialize_parameters (published weights overwrite it).
  const torch::NoGradGuard no_grad;
  const double w = static_cast<double>(t.width), n = static_cast<double>(t.layers);
  token_embedding->weight.normal_(0, 0.02);
  positional_embedding.normal_(0, 0.01);
  for (auto& block : *resblocks) {
    auto* r = block->as<ClipResidualBlock>();
    r->in_proj_weight.normal_(0, std::pow(w, -0.5));
    r->out_proj->weight.normal_(0, std::pow(w, -0.5) * std::pow(2 * n, -0.5));
    r->c_fc->weight.normal_(0, std::pow(2 * w, -0.5));
    r->c_proj->weight.normal_(0, std::pow(w, -0.5) * std::pow(2 * n, -0.5));
  }
  text_projection.normal_(0, std::pow(w, -0.5));
}

ClipTextFeatures ClipImpl::encode_text(const at::Tensor& token_ids) {
  WICO_CHECK(token_ids.dim() == 2 && token_ids.size(1) >= 1 &&
                 token_ids.size(1) <= text_.context_length,
             "CLIP text: expected token ids [B, L] with 1 <= L <= ", text_.context_length,
             ", got ", token_ids.sizes());
  const std::int64_t l = token_ids.size(1);
  const at::Tensor ids = token_ids.to(at::kLong);
  at::Tensor x = token_embedding->forward(ids) + positional_embedding.narrow(0, 0, l);
  // The causal mask over the sequence's own length (CRIS builds it from word_len, not 77).
  const at::Tensor mask =
      at::full({l, l}, -std::numeric_limits<float>::infinity(), x.options()).triu(1);
  for (auto& block : *resblocks) x = block->as<ClipResidualBlock>()->forward(x, mask);
  ClipTextFeatures out;
  out.words = ln_final->forward(x);
  const at::Tensor end = ids.argmax(-1);  // the end token has the highest id
  out.state = at::matmul(
      out.words.index({at::arange(ids.size(0), ids.options()), end}), text_projection);
  return out;
}

}  // namespace wico::backbones
