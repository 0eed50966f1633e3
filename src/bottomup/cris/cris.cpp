#include "wico/bottomup/cris/cris.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/utils.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "wico/core/error.h"
#include "wico/nn/winograd_conv.h"

namespace wico::bottomup {

namespace {

namespace tnn = torch::nn;

tnn::LayerNorm layer_norm(std::int64_t d) { return tnn::LayerNorm(tnn::LayerNormOptions({d})); }

at::Tensor up2(const at::Tensor& x) {  // F.interpolate(scale_factor=2, mode='bilinear')
  return at::upsample_bilinear2d(x, {2 * x.size(2), 2 * x.size(3)}, /*align_corners=*/false);
}

}  // namespace

// ---- options ----

CrisOptions CrisOptions::r50() {
  CrisOptions o;
  o.visual = backbones::ClipVisualOptions::rn50();
  o.text.embed_dim = o.visual.output_dim;  // 1024
  return o;
}

CrisOptions CrisOptions::r101() {
  CrisOptions o;
  o.visual = backbones::ClipVisualOptions::rn101();
  o.text.embed_dim = o.visual.output_dim;  // 512
  return o;
}

void CrisOptions::validate() const {
  auto fail = [](const std::string& what) { throw ConfigError("CRIS options: " + what); };
  visual.validate();
  text.validate();
  if (text.embed_dim != visual.output_dim) {
    fail("the sentence width (word_dim " + std::to_string(text.embed_dim) +
         ") must equal C5's channels (" + std::to_string(visual.output_dim) +
         "): the neck's txt_proj reads one and gates the other");
  }
  if (fpn_out.size() != 3) fail("fpn_out needs 3 values");
  if (fpn_out[1] != text.width) {
    fail("the decoder width (fpn_out[1] = " + std::to_string(fpn_out[1]) +
         ") must equal the text width (" + std::to_string(text.width) +
         "): CRIS feeds the word features to the decoder unprojected");
  }
  if (fpn_out[1] % 4 != 0 || fpn_out[1] % 2 != 0) fail("fpn_out[1] must be a multiple of 4");
  if (decoder_layers < 1 || decoder_heads < 1 || fpn_out[1] % decoder_heads != 0) {
    fail("decoder_heads must divide fpn_out[1], and decoder_layers be positive");
  }
  if (dropout < 0 || dropout >= 1) fail("dropout must lie in [0, 1)");
  if (kernel_size < 1 || kernel_size % 2 == 0) fail("kernel_size must be odd");
}

// ---- layers ----

CrisConvLayerImpl::CrisConvLayerImpl(std::int64_t in, std::int64_t out, std::int64_t kernel) {
  conv = register_module(
      "0", tnn::Conv2d(tnn::Conv2dOptions(in, out, kernel).padding(kernel / 2).bias(false)));
  norm = register_module("1", nn::BatchNorm(out));
}

at::Tensor CrisConvLayerImpl::forward(const at::Tensor& x) {
  // Through runtime.conv_algorithm: the neck's and projector's 3x3 convolutions at 26-104 px
  // (half of CRIS's work) run as Winograd where it pays (nn/winograd_conv.h).
  return norm->forward(wico::nn::conv2d(conv, x)).relu_();
}

CrisNeckImpl::CrisNeckImpl(std::vector<std::int64_t> in, std::vector<std::int64_t> out) {
  auto txt = register_module("txt_proj", std::make_shared<tnn::Module>());
  txt_proj = txt->register_module("0", tnn::Linear(tnn::LinearOptions(in[2], out[2]).bias(false)));
  txt_proj_norm = txt->register_module("1", nn::BatchNorm(out[2]));
  f1_v_proj = register_module("f1_v_proj", CrisConvLayer(in[2], out[2], 1));
  auto norm = register_module("norm_layer", std::make_shared<tnn::Module>());
  norm_layer = norm->register_module("0", nn::BatchNorm(out[2]));
  f2_v_proj = register_module("f2_v_proj", CrisConvLayer(in[1], out[1], 3));
  f2_cat = register_module("f2_cat", CrisConvLayer(out[2] + out[1], out[1], 1));
  f3_v_proj = register_module("f3_v_proj", CrisConvLayer(in[0], out[0], 3));
  f3_cat = register_module("f3_cat", CrisConvLayer(out[0] + out[1], out[1], 1));
  f4_proj5 = register_module("f4_proj5", CrisConvLayer(out[2], out[1], 3));
  f4_proj4 = register_module("f4_proj4", CrisConvLayer(out[1], out[1], 3));
  f4_proj3 = register_module("f4_proj3", CrisConvLayer(out[1], out[1], 3));
  aggr = register_module("aggr", CrisConvLayer(3 * out[1], out[1], 1));
  auto coord = register_module("coordconv", std::make_shared<tnn::Module>());
  auto coord0 = coord->register_module("0", std::make_shared<tnn::Module>());
  coord_conv = coord0->register_module("conv1", CrisConvLayer(out[1] + 2, out[1], 3));
  coord_out = coord->register_module("1", CrisConvLayer(out[1], out[1], 3));
}

at::Tensor CrisNeckImpl::forward(const backbones::ClipVisualFeatures& v, const at::Tensor& state) {
  // The sentence gates C5 (the only place it enters the neck).
  const at::Tensor txt =
      txt_proj_norm->forward(txt_proj->forward(state)).relu_().unsqueeze(-1).unsqueeze(-1);
  const at::Tensor f5 = norm_layer->forward(f1_v_proj->forward(v.c5) * txt).relu_();
  const at::Tensor f4 = f2_cat->forward(at::cat({f2_v_proj->forward(v.c4), up2(f5)}, 1));
  const at::Tensor f3 =
      f3_cat->forward(at::cat({at::avg_pool2d(f3_v_proj->forward(v.c3), 2, 2), f4}, 1));
  at::Tensor fq = aggr->forward(at::cat(
      {f4_proj3->forward(f3), f4_proj4->forward(f4), up2(f4_proj5->forward(f5))}, 1));
  // CoordConv: x (columns) and y (rows) in [-1, 1] appended as two channels.
  const std::int64_t b = fq.size(0), h = fq.size(2), w = fq.size(3);
  const auto opts = fq.options();
  const at::Tensor xs = at::linspace(-1, 1, w, opts).view({1, 1, 1, w}).expand({b, 1, h, w});
  const at::Tensor ys = at::linspace(-1, 1, h, opts).view({1, 1, h, 1}).expand({b, 1, h, w});
  fq = coord_conv->forward(at::cat({fq, xs, ys}, 1));
  return coord_out->forward(fq);
}

at::Tensor cris_position_2d(std::int64_t channels, std::int64_t height, std::int64_t width) {
  WICO_CHECK(channels % 4 == 0, "CRIS 2-d positions need a multiple of 4 channels, got ",
             channels);
  const std::int64_t half = channels / 2;
  const at::Tensor div = at::exp(at::arange(0., static_cast<double>(half), 2., at::kFloat) *
                                 -(std::log(10000.0) / static_cast<double>(half)));
  const at::Tensor xw = at::arange(0., static_cast<double>(width), at::kFloat).unsqueeze(1) * div;
  const at::Tensor yh = at::arange(0., static_cast<double>(height), at::kFloat).unsqueeze(1) * div;
  at::Tensor pe = at::zeros({height, width, channels});
  using at::indexing::Slice;
  pe.index_put_({Slice(), Slice(), Slice(0, half, 2)}, xw.sin().unsqueeze(0));
  pe.index_put_({Slice(), Slice(), Slice(1, half, 2)}, xw.cos().unsqueeze(0));
  pe.index_put_({Slice(), Slice(), Slice(half, channels, 2)}, yh.sin().unsqueeze(1));
  pe.index_put_({Slice(), Slice(), Slice(half + 1, channels, 2)}, yh.cos().unsqueeze(1));
  return pe.view({height * width, channels});
}

at::Tensor cris_position_1d(std::int64_t channels, std::int64_t length) {
  WICO_CHECK(channels % 2 == 0, "CRIS 1-d positions need an even channel count, got ", channels);
  const at::Tensor div = at::exp(at::arange(0, channels, 2, at::kFloat) *
                                 -(std::log(10000.0) / static_cast<double>(channels)));
  const at::Tensor p = at::arange(0, length, at::kFloat).unsqueeze(1) * div;
  at::Tensor pe = at::zeros({length, channels});
  using at::indexing::Slice;
  pe.index_put_({Slice(), Slice(0, channels, 2)}, p.sin());
  pe.index_put_({Slice(), Slice(1, channels, 2)}, p.cos());
  return pe;
}

CrisDecoderLayerImpl::Attention CrisDecoderLayerImpl::register_attention(const std::string& name,
                                                                         std::int64_t d) {
  auto m = register_module(name, std::make_shared<tnn::Module>());
  Attention a;
  a.in_proj_weight = m->register_parameter("in_proj_weight", at::empty({3 * d, d}));
  a.in_proj_bias = m->register_parameter("in_proj_bias", at::zeros({3 * d}));
  a.out_proj = m->register_module("out_proj", tnn::Linear(d, d));
  const at::NoGradGuard no_grad;
  tnn::init::xavier_uniform_(a.in_proj_weight);  // nn.MultiheadAttention's init
  a.out_proj->bias.zero_();
  return a;
}

CrisDecoderLayerImpl::CrisDecoderLayerImpl(std::int64_t d_model, std::int64_t heads,
                                           std::int64_t ffn, double dropout)
    : heads_(heads), dropout_(dropout) {
  self_attn_norm = register_module("self_attn_norm", layer_norm(d_model));
  cross_attn_norm = register_module("cross_attn_norm", layer_norm(d_model));
  self_attn_ = register_attention("self_attn", d_model);
  cross_attn_ = register_attention("multihead_attn", d_model);
  auto f = register_module("ffn", std::make_shared<tnn::Module>());
  ffn_in = f->register_module("0", tnn::Linear(d_model, ffn));
  ffn_norm = f->register_module("3", layer_norm(ffn));
  ffn_out = f->register_module("4", tnn::Linear(ffn, d_model));
  norm1 = register_module("norm1", layer_norm(d_model));
  norm2 = register_module("norm2", layer_norm(d_model));
  norm3 = register_module("norm3", layer_norm(d_model));
}

// nn.MultiheadAttention (packed projections, q scaled by 1/sqrt(head dim), dropout on the
// attention weights in training) on batch-first [B, L, C] tensors.
at::Tensor CrisDecoderLayerImpl::attention(const Attention& a, const at::Tensor& q,
                                           const at::Tensor& k, const at::Tensor& v,
                                           const at::Tensor& additive_mask) {
  const auto w = a.in_proj_weight.chunk(3), bias = a.in_proj_bias.chunk(3);
  const std::int64_t b = q.size(0), lq = q.size(1), lk = k.size(1), e = q.size(2),
                     d = e / heads_;
  auto split = [&](const at::Tensor& x, std::int64_t len) {
    return x.view({b, len, heads_, d}).transpose(1, 2);
  };
  at::Tensor scores =
      at::matmul(split(at::linear(q, w[0], bias[0]), lq) / std::sqrt(static_cast<double>(d)),
                 split(at::linear(k, w[1], bias[1]), lk).transpose(-2, -1));
  if (additive_mask.defined()) scores = scores + additive_mask;
  const at::Tensor weights = at::dropout(scores.softmax(-1), dropout_, is_training());
  const at::Tensor out = at::matmul(weights, split(at::linear(v, w[2], bias[2]), lk));
  return at::linear(out.transpose(1, 2).reshape({b, lq, e}), a.out_proj->weight, a.out_proj->bias);
}

at::Tensor CrisDecoderLayerImpl::forward(const at::Tensor& vis, const at::Tensor& txt,
                                         const at::Tensor& vis_pos, const at::Tensor& txt_pos,
                                         const at::Tensor& padding) {
  const bool train = is_training();
  at::Tensor a = norm1->forward(vis);
  const at::Tensor qk = a + vis_pos;
  a = self_attn_norm->forward(attention(self_attn_, qk, qk, a, {}));
  at::Tensor x = vis + at::dropout(a, dropout_, train);
  a = norm2->forward(x);
  a = cross_attn_norm->forward(attention(cross_attn_, a + vis_pos, txt + txt_pos, txt, padding));
  x = x + at::dropout(a, dropout_, train);
  a = ffn_in->forward(norm3->forward(x)).relu_();
  a = ffn_out->forward(ffn_norm->forward(at::dropout(a, dropout_, train)));
  return x + at::dropout(a, dropout_, train);
}

// ---- the network ----

CrisNetImpl::CrisNetImpl(CrisOptions options) : options_(std::move(options)) {
  options_.validate();
  const auto& o = options_;
  backbone = register_module("backbone", backbones::Clip(o.visual, o.text));
  neck = register_module(
      "neck", CrisNeck(std::vector<std::int64_t>{o.visual.c3_channels(), o.visual.c4_channels(),
                                                 o.visual.output_dim},
                       o.fpn_out));
  auto dec = register_module("decoder", std::make_shared<tnn::Module>());
  decoder_layers = dec->register_module("layers", tnn::ModuleList());
  for (std::int64_t i = 0; i < o.decoder_layers; ++i) {
    decoder_layers->push_back(
        CrisDecoderLayer(o.vis_dim(), o.decoder_heads, o.decoder_ffn, o.dropout));
  }
  decoder_norm = dec->register_module("norm", layer_norm(o.vis_dim()));
  auto proj = register_module("proj", std::make_shared<tnn::Module>());
  auto vis = proj->register_module("vis", std::make_shared<tnn::Module>());
  const std::int64_t c = o.projector_dim();
  proj_vis1 = vis->register_module("1", CrisConvLayer(2 * c, 2 * c, 3));
  proj_vis3 = vis->register_module("3", CrisConvLayer(2 * c, c, 3));
  proj_vis4 = vis->register_module("4", tnn::Conv2d(tnn::Conv2dOptions(c, c, 1)));
  proj_txt = proj->register_module(
      "txt", tnn::Linear(o.word_dim(), c * o.kernel_size * o.kernel_size + 1));
}

at::Tensor CrisNetImpl::apply_kernel(const at::Tensor& pixel_embeddings,
                                     const at::Tensor& kernel) const {
  const std::int64_t b = pixel_embeddings.size(0), c = pixel_embeddings.size(1),
                     h = pixel_embeddings.size(2), w = pixel_embeddings.size(3),
                     k = options_.kernel_size;
  WICO_CHECK(kernel.dim() == 2 && kernel.size(0) == b && kernel.size(1) == c * k * k + 1,
             "CRIS: a kernel [", b, ", ", c * k * k + 1, "] per sample expected, got ",
             kernel.sizes());
  // One grouped convolution over [1, B*C, h, w], a group per sample, as the original.
  const at::Tensor weight = kernel.narrow(1, 0, c * k * k).reshape({b, c, k, k});
  const at::Tensor bias = kernel.select(1, c * k * k);
  return at::conv2d(pixel_embeddings.reshape({1, b * c, h, w}), weight, bias, 1, k / 2, 1, b)
      .transpose(0, 1);
}

CrisOutput CrisNetImpl::forward(const at::Tensor& images, const at::Tensor& token_ids) {
  WICO_CHECK(token_ids.dim() == 2 && token_ids.size(0) == images.size(0),
             "CRIS: token ids [B, L] for ", images.size(0), " images expected, got ",
             token_ids.sizes());
  const backbones::ClipVisualFeatures vis = backbone->encode_image(images);
  const backbones::ClipTextFeatures text = backbone->encode_text(token_ids);
  const at::Tensor fq = neck->forward(vis, text.state);
  const std::int64_t b = fq.size(0), c = fq.size(1), h = fq.size(2), w = fq.size(3),
                     l = token_ids.size(1);
  // Padding (id 0) keys get -inf in the cross-attention; positions into queries and keys only.
  const at::Tensor padding =
      at::zeros({b, 1, 1, l}, fq.options())
          .masked_fill(token_ids.eq(0).view({b, 1, 1, l}), -std::numeric_limits<float>::infinity());
  const at::Tensor vis_pos = cris_position_2d(c, h, w).to(fq.device()).unsqueeze(0);
  const at::Tensor txt_pos = cris_position_1d(text.words.size(2), l).to(fq.device()).unsqueeze(0);
  at::Tensor x = fq.flatten(2).transpose(1, 2);  // [B, HW, C], token h * W + w
  for (auto& layer : *decoder_layers) {
    x = layer->as<CrisDecoderLayer>()->forward(x, text.words, vis_pos, txt_pos, padding);
  }
  x = decoder_norm->forward(x).transpose(1, 2).reshape({b, c, h, w});
  CrisOutput out;
  out.pixel_embeddings =
      proj_vis4->forward(proj_vis3->forward(up2(proj_vis1->forward(up2(x)))));
  out.kernel = proj_txt->forward(text.state);
  out.logits = apply_kernel(out.pixel_embeddings, out.kernel);
  return out;
}

}  // namespace wico::bottomup
