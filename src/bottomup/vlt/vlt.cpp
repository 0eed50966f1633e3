#include "wico/bottomup/vlt/vlt.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <utility>

#include "wico/core/error.h"

namespace wico::bottomup::vlt {

namespace tnn = torch::nn;
using backbones::ConvBnLeaky;

void VltOptions::validate() const {
  auto fail = [](const std::string& what) { throw ConfigError("VLT options: " + what); };
  darknet.validate();
  if (input_size < 32 || input_size % 32 != 0) {
    fail("the input size must be a multiple of 32 (the stride-32 map is upsampled onto the "
         "stride-16 one), got " + std::to_string(input_size));
  }
  if (word_dim < 1 || rnn_units < 1 || hidden < 1 || tf_width < 1 || queries < 1 || ffn < 1) {
    fail("word_dim, rnn_units, hidden, tf_width, queries and ffn must be positive");
  }
  if (heads < 1 || hidden % heads != 0) {
    fail("hidden " + std::to_string(hidden) + " must split into " + std::to_string(heads) +
         " heads");
  }
  if (encoder_layers < 0 || decoder_layers < 0) fail("layer counts cannot be negative");
  if (fusion_width() % 4 != 0) fail("the backbone's last width must be a multiple of 4");
  if (output_stride != 2 && output_stride != 4 && output_stride != 8 && output_stride != 16) {
    fail("output_stride must be 2, 4, 8 or 16 (seg_out_stride), got " +
         std::to_string(output_stride));
  }
  if (dropout < 0 || dropout >= 1 || rnn_dropout < 0 || rnn_dropout >= 1 || layer_norm_eps <= 0) {
    fail("dropouts must be in [0, 1) and layer_norm_eps positive");
  }
}

// ---------------------------------------------------------------------------------------------

KerasAttentionImpl::KerasAttentionImpl(std::int64_t dim, std::int64_t heads) : heads_(heads) {
  WICO_CHECK(heads > 0 && dim % heads == 0, "KerasAttention: ", dim, " channels in ", heads,
             " heads");
  query = register_module("query", tnn::Linear(dim, dim));
  key = register_module("key", tnn::Linear(dim, dim));
  value = register_module("value", tnn::Linear(dim, dim));
  output = register_module("output", tnn::Linear(dim, dim));
}

at::Tensor KerasAttentionImpl::forward(const at::Tensor& q, const at::Tensor& k,
                                       const at::Tensor& v, bool causal) {
  const std::int64_t B = q.size(0), Lq = q.size(1), Lk = k.size(1), d = q.size(2);
  const std::int64_t dh = d / heads_;
  auto split = [&](const at::Tensor& x, std::int64_t L) {
    return x.view({B, L, heads_, dh}).transpose(1, 2);  // [B, h, L, dh]
  };
  const at::Tensor qh = split(at::relu(query->forward(q)), Lq);
  const at::Tensor kh = split(at::relu(key->forward(k)), Lk);
  const at::Tensor vh = split(at::relu(value->forward(v)), Lk);
  at::Tensor scores = at::matmul(qh, kh.transpose(-2, -1)) / std::sqrt(static_cast<double>(dh));
  if (causal) {
    // keras-self-attention's history_only: e -= 10000 * (key index > query index).
    const at::Tensor later = at::ones({Lq, Lk}, scores.options()).triu_(1);
    scores = scores - 10000.0 * later;
  }
  const at::Tensor mixed = at::matmul(at::softmax(scores, -1), vh);
  return at::relu(output->forward(mixed.transpose(1, 2).reshape({B, Lq, d})));
}

KerasFeedForwardImpl::KerasFeedForwardImpl(std::int64_t dim, std::int64_t units) {
  inner = register_module("inner", tnn::Linear(dim, units));
  outer = register_module("outer", tnn::Linear(units, dim));
}

at::Tensor KerasFeedForwardImpl::forward(const at::Tensor& x) {
  return outer->forward(at::relu(inner->forward(x)));
}

namespace {

tnn::LayerNorm keras_layer_norm(std::int64_t dim, double eps) {
  return tnn::LayerNorm(tnn::LayerNormOptions({dim}).eps(eps));
}

// keras-transformer's _wrap_layer: LayerNorm(x + Dropout(sublayer(x))).
at::Tensor residual(tnn::LayerNorm norm, const at::Tensor& x, const at::Tensor& sublayer,
                    double dropout, bool training) {
  return norm->forward(x + at::dropout(sublayer, dropout, training && dropout > 0));
}

}  // namespace

VltEncoderLayerImpl::VltEncoderLayerImpl(const VltOptions& o) : dropout_(o.dropout) {
  self_attention = register_module("self_attention", KerasAttention(o.hidden, o.heads));
  self_norm = register_module("self_norm", keras_layer_norm(o.hidden, o.layer_norm_eps));
  ffn = register_module("ffn", KerasFeedForward(o.hidden, o.ffn));
  ffn_norm = register_module("ffn_norm", keras_layer_norm(o.hidden, o.layer_norm_eps));
}

at::Tensor VltEncoderLayerImpl::forward(const at::Tensor& x) {
  const at::Tensor a = residual(self_norm, x, self_attention->forward(x, x, x), dropout_,
                                is_training());
  return residual(ffn_norm, a, ffn->forward(a), dropout_, is_training());
}

VltDecoderLayerImpl::VltDecoderLayerImpl(const VltOptions& o) : dropout_(o.dropout) {
  self_attention = register_module("self_attention", KerasAttention(o.hidden, o.heads));
  self_norm = register_module("self_norm", keras_layer_norm(o.hidden, o.layer_norm_eps));
  cross_attention = register_module("cross_attention", KerasAttention(o.hidden, o.heads));
  cross_norm = register_module("cross_norm", keras_layer_norm(o.hidden, o.layer_norm_eps));
  ffn = register_module("ffn", KerasFeedForward(o.hidden, o.ffn));
  ffn_norm = register_module("ffn_norm", keras_layer_norm(o.hidden, o.layer_norm_eps));
}

at::Tensor VltDecoderLayerImpl::forward(const at::Tensor& y, const at::Tensor& memory) {
  const bool train = is_training();
  const at::Tensor s =
      residual(self_norm, y, self_attention->forward(y, y, y, /*causal=*/true), dropout_, train);
  const at::Tensor c =
      residual(cross_norm, s, cross_attention->forward(s, memory, memory), dropout_, train);
  return residual(ffn_norm, c, ffn->forward(c), dropout_, train);
}

at::Tensor vlt_positions(std::int64_t length, std::int64_t dim) {
  WICO_CHECK(dim % 2 == 0, "sine positions need an even width, got ", dim);
  // In float32, as TrigPosEmbedding computes it: p * (1 / 10000^(2i / dim)).
  const at::Tensor p = at::arange(length, at::kFloat).unsqueeze(1);
  const at::Tensor i2 = at::arange(0, dim, 2, at::kFloat);
  const at::Tensor angle = p * (1.0 / at::pow(10000.0, i2 / static_cast<double>(dim)));
  return at::stack({angle.sin(), angle.cos()}, -1).reshape({length, dim});
}

at::Tensor vlt_concat_coord(const at::Tensor& x) {
  const std::int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  const auto f = x.options();
  const at::Tensor xs = (2.0 * at::arange(W, f) / static_cast<double>(W - 1) - 1.0)
                            .view({1, 1, 1, W})
                            .expand({B, 1, H, W});
  const at::Tensor ys = (2.0 * at::arange(H, f) / static_cast<double>(H - 1) - 1.0)
                            .view({1, 1, H, 1})
                            .expand({B, 1, H, W});
  return at::cat({x, xs, xs, xs, ys, ys, ys}, 1);
}

namespace {

void glorot_normal_(at::Tensor& w) {
  // Keras's glorot_normal: truncated normal (cut at 2 sigma, redrawn) with
  // sigma = sqrt(2 / (fan_in + fan_out)) / 0.87962566103423978; a Linear's [out, in].
  const double sigma = std::sqrt(2.0 / static_cast<double>(w.size(0) + w.size(1))) /
                       0.87962566103423978;
  at::Tensor x = at::randn(w.sizes(), w.options());
  for (at::Tensor out = x.abs() > 2.0; out.any().item<bool>(); out = x.abs() > 2.0) {
    x = at::where(out, at::randn(w.sizes(), w.options()), x);
  }
  w.copy_(x * sigma);
}

}  // namespace

void keras_initialize(tnn::Module& module) {
  const at::NoGradGuard no_grad;
  std::set<const tnn::Module*> done;
  for (const auto& m : module.modules(/*include_self=*/false)) {
    if (m->as<KerasAttentionImpl>() || m->as<KerasFeedForwardImpl>()) {
      for (const auto& child : m->children()) {
        if (auto* linear = child->as<tnn::LinearImpl>()) {
          glorot_normal_(linear->weight);
          linear->bias.zero_();
          done.insert(child.get());
        }
      }
    }
  }
  for (const auto& m : module.modules(/*include_self=*/false)) {
    if (done.count(m.get())) continue;
    if (auto* conv = m->as<tnn::Conv2dImpl>()) {
      tnn::init::xavier_uniform_(conv->weight);  // fan = k^2 * channels, as Keras's
      if (conv->bias.defined()) conv->bias.zero_();
    } else if (auto* linear = m->as<tnn::LinearImpl>()) {
      tnn::init::xavier_uniform_(linear->weight);
      linear->bias.zero_();
    }
  }
}

// ---------------------------------------------------------------------------------------------

VltNetImpl::VltNetImpl(VltOptions options) : options_(std::move(options)) {
  options_.validate();
  const auto& o = options_;
  const auto& dk = o.darknet;
  auto cbl = [&](std::int64_t in, std::int64_t out, std::int64_t kernel) {
    return ConvBnLeaky(in, out, kernel, 1, dk);
  };
  backbone = register_module("backbone", backbones::Darknet(dk));
  text = register_module("text", VltTextEncoder(o.word_dim, o.rnn_units, o.rnn_dropout));

  const std::int64_t J = o.fusion_width(), c16 = dk.stage_channels(3), c8 = dk.stage_channels(2);
  fusion_reduce = register_module("fusion_reduce", cbl(J, J / 2, 1));
  fusion_expand = register_module("fusion_expand", cbl(J / 2, J, 3));
  fusion_gate = register_module("fusion_gate", tnn::Linear(o.rnn_units, J));
  fusion_gate_norm = register_module(
      "fusion_gate_norm",
      tnn::BatchNorm1d(tnn::BatchNormOptions(J).eps(dk.bn_eps).momentum(dk.bn_momentum)));
  fusion_norm = register_module(
      "fusion_norm",
      tnn::BatchNorm2d(tnn::BatchNormOptions(J).eps(dk.bn_eps).momentum(dk.bn_momentum)));

  // up_proj_cat_proj(Fm, Fv1, c16, J/2), pool_proj_cat_proj(A, Fv2, c8, J/2),
  // proj_cat(Q, A, J/2), up_proj_cat_proj(Fm, M, J/2, tf_width), then the projection to hidden.
  mid_lateral = register_module("mid_lateral", cbl(c16, c16, 1));
  mid_out = register_module("mid_out", cbl(J + c16, J / 2, 1));
  query_lateral = register_module("query_lateral", cbl(c8, c8, 1));
  query_out = register_module("query_out", cbl(J / 2 + c8, J / 2, 1));
  tf_reduce = register_module("tf_reduce", cbl(J / 2, J / 4, 1));
  tf_expand = register_module("tf_expand", cbl(J / 4, J / 2, 3));
  tf_lateral = register_module("tf_lateral", cbl(J, J / 2, 1));
  tf_out = register_module("tf_out", cbl(J + J / 2, o.tf_width, 1));
  tf_proj = register_module("tf_proj", cbl(o.tf_width, o.hidden, 1));

  const std::int64_t qc = J / 2 + 6;  // Q and six coordinate channels
  query_convs = register_module("query_convs", tnn::ModuleList());
  for (int i = 0; i < 3; ++i) query_convs->push_back(cbl(qc, qc, 3));
  query_maps = register_module("query_maps",
                               tnn::Conv2d(tnn::Conv2dOptions(qc, o.queries, 1).bias(true)));
  query_vectors = register_module("query_vectors", tnn::Linear(o.positions(), o.hidden));
  word_features = register_module("word_features", tnn::Linear(o.rnn_units, o.hidden));
  query_in = register_module("query_in", tnn::Linear(o.hidden, o.hidden));
  key_in = register_module("key_in", tnn::Linear(o.hidden, o.hidden));
  value_in = register_module("value_in", tnn::Linear(o.hidden, o.hidden));
  word_attention = register_module("word_attention", KerasAttention(o.hidden, o.heads));

  encoder = register_module("encoder", tnn::ModuleList());
  for (std::int64_t i = 0; i < o.encoder_layers; ++i) encoder->push_back(VltEncoderLayer(o));
  decoder = register_module("decoder", tnn::ModuleList());
  for (std::int64_t i = 0; i < o.decoder_layers; ++i) decoder->push_back(VltDecoderLayer(o));

  balance_query = register_module("balance_query", tnn::Linear(o.hidden, o.hidden));
  balance_output = register_module("balance_output", tnn::Linear(o.hidden, o.hidden));
  balance_fuse = register_module("balance_fuse", tnn::Linear(2 * o.hidden, o.hidden));
  balance_confidence = register_module("balance_confidence", tnn::Linear(o.hidden, 1));
  responses = register_module("responses", tnn::Linear(o.hidden, o.positions()));

  // vlt_transformer's CBL on the Nq maps, vlt_postproc's two, and one after each upsampling.
  const std::int64_t upsamplings =
      (o.output_stride <= 8) + (o.output_stride <= 4) + (o.output_stride <= 2);
  head = register_module("head", tnn::ModuleList());
  head->push_back(cbl(o.queries, o.hidden, 3));
  for (std::int64_t i = 0; i < 3 + std::max<std::int64_t>(upsamplings - 1, 0); ++i) {
    head->push_back(cbl(o.hidden, o.hidden, 3));
  }
  head_out = register_module("head_out",
                             tnn::Conv2d(tnn::Conv2dOptions(o.hidden, 1, 3).padding(1).bias(true)));
  keras_initialize(*this);
}

VltOutput VltNetImpl::forward(const at::Tensor& images, const at::Tensor& word_vectors) {
  const auto& o = options_;
  WICO_CHECK(images.dim() == 4 && images.size(2) == o.input_size && images.size(3) == o.input_size,
             "VLT takes [B, 3, ", o.input_size, ", ", o.input_size,
             "] images (its query projection is a Dense over the ", o.positions(),
             " stride-16 positions), got ", images.sizes());
  WICO_CHECK(word_vectors.dim() == 3 && word_vectors.size(0) == images.size(0) &&
                 word_vectors.size(2) == o.word_dim,
             "VLT takes [B, T, ", o.word_dim, "] word vectors, got ", word_vectors.sizes());
  const std::int64_t B = images.size(0), s16 = o.feature_size();
  const backbones::DarknetFeatures v = backbone->forward(images);
  const VltTextOutput t = text->forward(word_vectors);

  // Simple fusion.
  const at::Tensor fv = v.stride32 + fusion_expand->forward(fusion_reduce->forward(v.stride32));
  const at::Tensor gate =
      at::leaky_relu(fusion_gate_norm->forward(fusion_gate->forward(t.sentence)), 0.1);
  const at::Tensor fm =
      at::leaky_relu(fusion_norm->forward(fv * gate.unsqueeze(-1).unsqueeze(-1)), 0.1);

  // Neck.
  const at::Tensor up = at::upsample_nearest2d(fm, {2 * fm.size(2), 2 * fm.size(3)});
  const at::Tensor mid = mid_out->forward(at::cat({up, mid_lateral->forward(v.stride16)}, 1));
  const at::Tensor pooled = at::avg_pool2d(v.stride8, {2, 2}, {2, 2});
  const at::Tensor query = query_out->forward(at::cat({mid, query_lateral->forward(pooled)}, 1));
  const at::Tensor mid_tf = at::cat({tf_expand->forward(tf_reduce->forward(query)), mid}, 1);
  const at::Tensor f_tf = tf_proj->forward(
      tf_out->forward(at::cat({up, tf_lateral->forward(mid_tf)}, 1)));

  // Query Generation Module.
  at::Tensor q = vlt_concat_coord(query);
  for (const auto& conv : *query_convs) q = conv->as<backbones::ConvBnLeakyImpl>()->forward(q);
  const at::Tensor maps = query_maps->forward(q);                                 // [B, Nq, h, w]
  const at::Tensor vectors = at::relu(query_vectors->forward(maps.flatten(2)));   // [B, Nq, d]
  const at::Tensor words = at::relu(word_features->forward(t.words));             // [B, T, d]
  // One table of the queries' positions: the QGM's and the decoder's inputs both add it.
  const at::Tensor query_positions = vlt_positions(o.queries, o.hidden).to(vectors.options());
  const at::Tensor vp = vectors + query_positions;
  const at::Tensor wp = words + vlt_positions(words.size(1), o.hidden).to(words.options());
  const at::Tensor fq = word_attention->forward(at::relu(query_in->forward(vp)),
                                                at::relu(key_in->forward(wp)),
                                                at::relu(value_in->forward(wp))) +
                        vectors;

  // Transformer: one memory for every decoder layer.
  at::Tensor memory = f_tf.flatten(2).transpose(1, 2);  // [B, h*w, d], row-major positions
  memory = memory + vlt_positions(memory.size(1), o.hidden).to(memory.options());
  for (const auto& layer : *encoder) memory = layer->as<VltEncoderLayerImpl>()->forward(memory);
  at::Tensor decoded = fq + query_positions;
  for (const auto& layer : *decoder) {
    decoded = layer->as<VltDecoderLayerImpl>()->forward(decoded, memory);
  }

  // Query Balance Module: concat [decoded, query] as the original.
  const at::Tensor a = at::relu(balance_query->forward(fq));
  const at::Tensor b = at::relu(balance_output->forward(decoded));
  const at::Tensor confidence = at::sigmoid(
      balance_confidence->forward(at::relu(balance_fuse->forward(at::cat({b, a}, -1)))));
  const at::Tensor maps_out =
      at::relu(responses->forward(confidence * decoded)).view({B, o.queries, s16, s16});

  // Mask head.
  std::size_t next = 0;
  auto run = [&](const at::Tensor& x) {
    return head->ptr<backbones::ConvBnLeakyImpl>(next++)->forward(x);
  };
  auto up2 = [](const at::Tensor& x) {
    return at::upsample_nearest2d(x, {2 * x.size(2), 2 * x.size(3)});
  };
  at::Tensor x = run(run(run(maps_out)));
  if (o.output_stride <= 8) x = up2(x);
  x = run(x);
  if (o.output_stride <= 4) x = run(up2(x));
  if (o.output_stride <= 2) x = run(up2(x));
  VltOutput out;
  out.pixel_embeddings = x;
  out.logits = head_out->forward(x);
  out.query_confidence = confidence.squeeze(-1);
  return out;
}

at::Tensor VltNetImpl::decode(const at::Tensor& pixel_embeddings) {
  return head_out->forward(pixel_embeddings);
}

}  // namespace wico::bottomup::vlt
