#include "wico/topdown/mattnet/mattnet.h"

#include <ATen/ATen.h>
#include <torch/nn/utils/rnn.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/core/schema.h"
#include "wico/data/tokenizer.h"
#include "wico/data/tokenizer_config.h"

namespace wico::topdown {

namespace tnn = torch::nn;

namespace {

constexpr std::int64_t kLocationNeighbours = 5;  // the original's dif_lfeats topK (25-d)
constexpr double kMinSide = 1e-3;  // a reference box's width/height floor (empty masks: zero box)
constexpr double kInf = std::numeric_limits<double>::infinity();

at::Tensor l2_normalize(const at::Tensor& x) {
  return x / x.norm(2, -1, /*keepdim=*/true).clamp_min(1e-12);
}

// Batch norm of rows [R, C]. A single row (or none) in training has no batch statistics: use the
// running ones, as evaluation does (unless a synchronised norm sees other processes' rows).
at::Tensor batch_norm_rows(wico::nn::BatchNorm& bn, const at::Tensor& x) {
  if (bn->is_training() && x.size(0) < 2 && !wico::nn::batch_norm_is_synced()) {
    return at::batch_norm(x, bn->weight, bn->bias, bn->running_mean, bn->running_var,
                          /*training=*/false, 0.1, 1e-5, /*cudnn_enabled=*/true);
  }
  return bn->forward(x);
}

// A child container, so that parameters keep the original's dotted names.
std::shared_ptr<tnn::Module> container(tnn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<tnn::Module>());
}

// Offsets [B, N, K, 5] of the candidates `index` [B, N, K] to each reference box (zero where not
// `ok`).
at::Tensor offsets(const at::Tensor& boxes, const at::Tensor& index, const at::Tensor& ok) {
  const std::int64_t B = boxes.size(0), N = boxes.size(1), K = index.size(2);
  const at::Tensor ref = boxes.unsqueeze(2);  // [B, N, 1, 4]
  const at::Tensor cand =
      boxes.unsqueeze(1).expand({B, N, N, 4}).gather(2, index.unsqueeze(-1).expand({B, N, K, 4}));
  const at::Tensor rx1 = ref.select(-1, 0), ry1 = ref.select(-1, 1);
  const at::Tensor rw = (ref.select(-1, 2) - rx1).clamp_min(kMinSide);
  const at::Tensor rh = (ref.select(-1, 3) - ry1).clamp_min(kMinSide);
  const at::Tensor rcx = rx1 + rw / 2, rcy = ry1 + rh / 2;
  const at::Tensor cx1 = cand.select(-1, 0), cy1 = cand.select(-1, 1);
  const at::Tensor cx2 = cand.select(-1, 2), cy2 = cand.select(-1, 3);
  const at::Tensor off = at::stack({(cx1 - rcx) / rw, (cy1 - rcy) / rh, (cx2 - rcx) / rw,
                                    (cy2 - rcy) / rh, (cx2 - cx1) * (cy2 - cy1) / (rw * rh)},
                                   -1);
  return off * ok.unsqueeze(-1).to(off.scalar_type());
}

// The first k candidates [B, N, k] of each reference by (group, then squared distance, then
// index); a group of +inf excludes the candidate. Returns the indices and which are real.
std::pair<at::Tensor, at::Tensor> nearest(const at::Tensor& distance, const at::Tensor& group,
                                          std::int64_t k) {
  const std::int64_t N = distance.size(2);
  const at::Tensor by_distance = std::get<1>(at::sort(distance, c10::optional<bool>(true), -1));
  const at::Tensor by_group =
      std::get<1>(at::sort(group.gather(2, by_distance), c10::optional<bool>(true), -1));
  at::Tensor index = by_distance.gather(2, by_group).narrow(2, 0, std::min(k, N));
  at::Tensor ok = group.gather(2, index).isfinite();
  if (N < k) {
    index = at::constant_pad_nd(index, {0, k - N}, 0);
    ok = at::constant_pad_nd(ok, {0, k - N}, 0);
  }
  return {index.masked_fill(ok.logical_not(), 0), ok};
}

// A random pick from `same` with probability `ratio` (if any), else from `other`, else from
// `same`; -1 when both are empty. u0, u1 uniform in [0, 1).
std::int64_t sample_negative(const std::vector<std::int64_t>& same,
                             const std::vector<std::int64_t>& other, double ratio, double u0,
                             double u1) {
  auto pick = [u1](const std::vector<std::int64_t>& from) {
    const auto i = static_cast<std::size_t>(u1 * static_cast<double>(from.size()));
    return from[std::min(i, from.size() - 1)];
  };
  if (!same.empty() && u0 < ratio) return pick(same);
  if (!other.empty()) return pick(other);
  if (!same.empty()) return pick(same);
  return -1;
}

// sample_negative over the indices 0..count-1 that `eligible` admits, split by `same_class`.
template <typename Eligible, typename SameClass>
std::int64_t draw_negative(std::int64_t count, Eligible eligible, SameClass same_class,
                           double ratio, double u0, double u1) {
  std::vector<std::int64_t> same, other;
  for (std::int64_t k = 0; k < count; ++k) {
    if (eligible(k)) (same_class(k) ? same : other).push_back(k);
  }
  return sample_negative(same, other, ratio, u0, u1);
}

}  // namespace

// ---- options ----

MattnetOptions MattnetOptions::from_config(const Config& c) {
  MattnetOptions o;
  o.vocab_size = c.integer("mattnet.vocab_size");
  if (o.vocab_size == 0) {
    try {
      o.vocab_size = data::make_tokenizer_from_config(c)->vocab_size();
    } catch (const ConfigError& e) {
      throw ConfigError(std::string("mattnet.vocab_size is 0 (the tokenizer's vocabulary), but ") +
                        e.what() + ": set mattnet.vocab_size (or text.vocab)");
    }
  }
  o.pool5_dim = c.integer("mattnet.pool5_dim");
  o.fc7_dim = c.integer("mattnet.fc7_dim");
  o.word_embedding_size = c.integer("mattnet.word_embedding_size");
  o.word_vec_size = c.integer("mattnet.word_vec_size");
  o.rnn_hidden_size = c.integer("mattnet.rnn_hidden_size");
  o.rnn_num_layers = c.integer("mattnet.rnn_num_layers");
  o.bidirectional = c.flag("mattnet.bidirectional");
  o.word_dropout = c.real("mattnet.word_dropout");
  o.rnn_dropout = c.real("mattnet.rnn_dropout");
  o.jemb_dim = c.integer("mattnet.jemb_dim");
  o.jemb_dropout = c.real("mattnet.jemb_dropout");
  o.visual_init_norm = c.real("mattnet.visual_init_norm");
  o.grid_size = c.integer("mattnet.grid_size");
  o.num_cxt = c.integer("mattnet.num_cxt");
  o.with_st = c.flag("mattnet.with_st");
  o.score_scale = c.real("mattnet.score_scale");
  o.embedding_dim = c.integer("mattnet.embedding_dim");
  o.margin = c.real("mattnet.margin");
  o.visual_rank_weight = c.real("mattnet.visual_rank_weight");
  o.lang_rank_weight = c.real("mattnet.lang_rank_weight");
  o.visual_sample_ratio = c.real("mattnet.visual_sample_ratio");
  o.ce_weight = c.real("mattnet.ce_weight");
  o.num_atts = c.integer("data.attribute_words");
  o.att_dropout = c.real("mattnet.att_dropout");
  o.att_weight = c.real("mattnet.att_weight");
  o.query_dim = c.integer("mattnet.query_dim");
  o.validate();
  return o;
}

void MattnetOptions::validate() const {
  auto positive = [](std::int64_t v, const char* key) {
    if (v < 1)
      throw ConfigError(std::string(key) + " must be at least 1 (it is " + std::to_string(v) + ")");
  };
  positive(vocab_size, "mattnet.vocab_size");
  positive(pool5_dim, "mattnet.pool5_dim");
  positive(fc7_dim, "mattnet.fc7_dim");
  if (num_atts < 0) throw ConfigError("data.attribute_words must not be negative");
  if (att_weight < 0.0) throw ConfigError("mattnet.att_weight must not be negative");
  if (query_dim < 0) throw ConfigError("mattnet.query_dim must not be negative");
  positive(word_embedding_size, "mattnet.word_embedding_size");
  positive(word_vec_size, "mattnet.word_vec_size");
  positive(rnn_hidden_size, "mattnet.rnn_hidden_size");
  positive(rnn_num_layers, "mattnet.rnn_num_layers");
  positive(jemb_dim, "mattnet.jemb_dim");
  positive(grid_size, "mattnet.grid_size");
  positive(num_cxt, "mattnet.num_cxt");
  if (embedding_dim < 0)
    throw ConfigError("mattnet.embedding_dim must be 0 (jemb_dim) or positive");
  auto unit = [](double v, const char* key) {
    if (!(v >= 0.0 && v <= 1.0)) {
      throw ConfigError(std::string(key) + " must lie in [0, 1] (it is " + std::to_string(v) + ")");
    }
  };
  unit(word_dropout, "mattnet.word_dropout");
  unit(rnn_dropout, "mattnet.rnn_dropout");
  unit(jemb_dropout, "mattnet.jemb_dropout");
  unit(visual_sample_ratio, "mattnet.visual_sample_ratio");
  unit(att_dropout, "mattnet.att_dropout");
  if (!(score_scale > 0.0)) throw ConfigError("mattnet.score_scale must be positive");
  if (!(visual_init_norm > 0.0)) throw ConfigError("mattnet.visual_init_norm must be positive");
  if (margin < 0.0 || visual_rank_weight < 0.0 || lang_rank_weight < 0.0 || ce_weight < 0.0) {
    throw ConfigError(
        "mattnet.margin, mattnet.visual_rank_weight, mattnet.lang_rank_weight and "
        "mattnet.ce_weight must not be negative");
  }
  if (visual_rank_weight == 0.0 && lang_rank_weight == 0.0 && ce_weight == 0.0) {
    throw ConfigError(
        "mattnet.visual_rank_weight, mattnet.lang_rank_weight and mattnet.ce_weight "
        "are all 0: nothing would train the matcher");
  }
}

void add_mattnet_keys(Schema& schema) {
  schema
      .integer("mattnet.vocab_size", 0,
               "word embeddings; 0: the tokenizer's vocabulary (text.tokenizer word needs "
               "text.vocab or this)",
               0)
      .integer("mattnet.pool5_dim", 1024,
               "channels of the trunk's C4 (res4) the subject's pool5 grid is pooled from "
               "(ResNet-50/101: 1024)", 1)
      .integer("mattnet.fc7_dim", 2048,
               "channels of the trunk's C5 (res5), the fc7 grid and context features "
               "(ResNet-50/101: 2048)", 1)
      .integer("mattnet.word_embedding_size", 512, "word embedding size (MAttNet: 512)", 1)
      .integer("mattnet.word_vec_size", 512, "word MLP output = phrase embedding size (512)", 1)
      .integer("mattnet.rnn_hidden_size", 512, "LSTM hidden size per direction (512)", 1)
      .integer("mattnet.rnn_num_layers", 1, "LSTM layers (1)", 1)
      .flag("mattnet.bidirectional", true, "bi-LSTM (MAttNet: yes)")
      .real("mattnet.word_dropout", 0.5, "dropout after the word embedding (0.5)", 0.0, 1.0)
      .real("mattnet.rnn_dropout", 0.2, "dropout between stacked LSTM layers (0.2)", 0.0, 1.0)
      .integer("mattnet.jemb_dim", 512, "joint embedding size (512)", 1)
      .real("mattnet.jemb_dropout", 0.1, "dropout in the joint-embedding MLPs (0.1)", 0.0, 1.0)
      .real("mattnet.visual_init_norm", 20.0, "initial scale of Normalize_Scale (20)", 0.0)
      .integer("mattnet.grid_size", 7, "the subject module's ROI grid per side (7: pool5)", 1)
      .integer("mattnet.num_cxt", 5, "relationship contexts per candidate (5)", 1)
      .flag("mattnet.with_st", true,
            "same-class candidates may be contexts, after the other-class ones (MAttNet: yes)")
      .real("mattnet.score_scale", 10.0,
            "logits = scale x the overall score (a cosine mix in [-1, 1]): the softmax's "
            "inverse temperature",
            0.0)
      .integer("mattnet.embedding_dim", 0, "C of the instance embeddings; 0: jemb_dim", 0)
      .real("mattnet.margin", 0.1, "ranking loss margin (0.1)", 0.0)
      .real("mattnet.visual_rank_weight", 1.0, "weight of (ref, sent) over (neg ref, sent) (1)",
            0.0)
      .real("mattnet.lang_rank_weight", 1.0, "weight of (ref, sent) over (ref, neg sent) (1)", 0.0)
      .real("mattnet.visual_sample_ratio", 0.3,
            "chance of drawing a same-class negative when there is one (0.3)", 0.0, 1.0)
      .real("mattnet.ce_weight", 1.0,
            "cross-entropy over the candidates' logits (ours: trains S as a softmax)", 0.0)
      .real("mattnet.att_dropout", 0.2,
            "dropout before the attribute head (the original's visual_drop_out 0.2)", 0.0, 1.0)
      .real("mattnet.att_weight", 1.0, "weight of the attribute BCE (att_weight 1)", 0.0)
      .integer("mattnet.query_dim", 0,
               "ours, an option: the candidates' decoder query embeddings (this many channels: "
               "the extractor's hidden_dim) as an extra fc7-like vector of the subject and of "
               "each context; 0: off, the original's layout", 0);
}

// ---- free functions ----

LocationFeatures location_features(const at::Tensor& boxes, const at::Tensor& classes,
                                   const at::Tensor& valid, std::int64_t num_cxt, bool with_st) {
  at::NoGradGuard no_grad;
  const std::int64_t B = boxes.size(0), N = boxes.size(1);
  const at::Tensor b = boxes.to(at::kFloat);
  const at::Tensor x1 = b.select(-1, 0), y1 = b.select(-1, 1);
  const at::Tensor x2 = b.select(-1, 2), y2 = b.select(-1, 3);
  LocationFeatures out;
  out.lfeats = at::stack({x1, y1, x2, y2, (x2 - x1) * (y2 - y1)}, -1);

  const at::Tensor cx = (x1 + x2) / 2, cy = (y1 + y2) / 2;
  const at::Tensor distance = (cx.unsqueeze(2) - cx.unsqueeze(1)).pow(2) +
                              (cy.unsqueeze(2) - cy.unsqueeze(1)).pow(2);  // [B, ref, cand]
  const at::Tensor self = at::eye(N, b.options().dtype(at::kBool)).unsqueeze(0);
  const at::Tensor other = valid.to(at::kBool).unsqueeze(1).logical_and(self.logical_not());
  const at::Tensor same = classes.unsqueeze(2) == classes.unsqueeze(1);
  const at::Tensor zero = at::zeros({}, b.options()), inf = at::full({}, kInf, b.options());

  // Location: same-class neighbours only.
  const auto [st_index, st_ok] =
      nearest(distance, at::where(other.logical_and(same), zero, inf), kLocationNeighbours);
  out.dif_lfeats = offsets(b, st_index, st_ok).reshape({B, N, 5 * kLocationNeighbours});

  // Contexts: other-class neighbours, then (with_st) same-class ones.
  const at::Tensor one = at::ones({}, b.options());
  const at::Tensor cxt_group = at::where(other, at::where(same, with_st ? one : inf, zero), inf);
  std::tie(out.cxt_index, out.cxt_valid) = nearest(distance, cxt_group, num_cxt);
  out.cxt_lfeats = offsets(b, out.cxt_index, out.cxt_valid);
  return out;
}

namespace {

// roi_grid's cells as linear combinations of feature cells: [B, N * grid^2, H * W], each row the
// bilinear weights of the cell's 2x2 samples averaged (grid_sample's rule with zero padding:
// corners outside the map weigh nothing). No gradient: the weights depend on the boxes alone.
at::Tensor roi_grid_weights(const at::Tensor& boxes, std::int64_t H, std::int64_t W,
                            std::int64_t grid, const at::TensorOptions& options) {
  constexpr std::int64_t kSamples = 2;  // bilinear samples per cell side, averaged (ROI-align)
  const at::NoGradGuard no_grad;
  const std::int64_t B = boxes.size(0), N = boxes.size(1), P = grid * kSamples, G2 = grid * grid;
  const at::Tensor b = boxes.to(options.dtype());
  const at::Tensor t = (at::arange(P, options) + 0.5) / static_cast<double>(P);
  // Sample positions in index coordinates (pixel centres at integers, align_corners false).
  auto along = [&](int lo, int hi, std::int64_t extent) {
    const at::Tensor a = b.select(-1, lo).unsqueeze(-1), z = b.select(-1, hi).unsqueeze(-1);
    return (a + t * (z - a)) * static_cast<double>(extent) - 0.5;  // [B, N, P]
  };
  const at::Tensor xs = along(0, 2, W), ys = along(1, 3, H);
  const at::Tensor x0 = xs.floor(), y0 = ys.floor();
  const at::Tensor fx = xs - x0, fy = ys - y0;
  const auto long_options = options.dtype(at::kLong);
  const at::Tensor cell_of = at::arange(P, long_options).div(kSamples, "floor");  // [P]
  const at::Tensor rows = (at::arange(N, long_options).view({N, 1, 1}) * G2 +
                           cell_of.view({1, P, 1}) * grid + cell_of.view({1, 1, P}))
                              .expand({B, N, P, P});
  at::Tensor weights = at::zeros({B, N * G2 * H * W}, options);
  const double share = 1.0 / static_cast<double>(kSamples * kSamples);
  for (int dy = 0; dy < 2; ++dy) {
    const at::Tensor cy = y0 + dy, wy = dy == 0 ? 1 - fy : fy;  // [B, N, P]
    for (int dx = 0; dx < 2; ++dx) {
      const at::Tensor cx = x0 + dx, wx = dx == 0 ? 1 - fx : fx;
      const at::Tensor inside = (cy >= 0).logical_and(cy <= H - 1).unsqueeze(3).logical_and(
          (cx >= 0).logical_and(cx <= W - 1).unsqueeze(2));  // [B, N, P, P]
      const at::Tensor w = wy.unsqueeze(3) * wx.unsqueeze(2) * share * inside;
      const at::Tensor column = cy.clamp(0, H - 1).to(at::kLong).unsqueeze(3) * W +
                                cx.clamp(0, W - 1).to(at::kLong).unsqueeze(2);
      weights.scatter_add_(1, (rows * (H * W) + column).reshape({B, -1}), w.reshape({B, -1}));
    }
  }
  return weights.view({B, N * G2, H * W});
}

}  // namespace

at::Tensor roi_grid(const at::Tensor& features, const at::Tensor& boxes, std::int64_t grid) {
  const std::int64_t B = features.size(0), D = features.size(1), N = boxes.size(1);
  const std::int64_t H = features.size(2), W = features.size(3);
  // One matrix product per image over the channels-last features: gathering channel-strided
  // samples with grid_sample cost 10 times more at 100 candidates on 1024 + 2048 channels.
  const at::Tensor weights = roi_grid_weights(boxes, H, W, grid, features.options());
  return at::bmm(weights, features.reshape({B, D, H * W}).transpose(1, 2))
      .view({B, N, grid * grid, D});
}

at::Tensor attribute_loss(const at::Tensor& logits, const at::Tensor& labels,
                          const at::Tensor& weights) {
  WICO_CHECK(logits.dim() == 2 && labels.sizes() == logits.sizes() &&
                 weights.dim() == 1 && weights.size(0) == logits.size(1),
             "attribute_loss: logits and labels must be [R, A] and weights [A], got ",
             logits.sizes(), ", ", labels.sizes(), ", ", weights.sizes());
  if (logits.size(0) == 0) return logits.sum();
  return at::binary_cross_entropy_with_logits(logits, labels.to(logits.scalar_type()),
                                              weights.to(logits.scalar_type()));
}

at::Tensor max_margin_rank_loss(const at::Tensor& paired, const at::Tensor& visual_unpaired,
                                const at::Tensor& visual_valid, const at::Tensor& lang_unpaired,
                                const at::Tensor& lang_valid, double margin, double visual_weight,
                                double lang_weight) {
  const std::int64_t B = paired.size(0);
  const at::Tensor zero = at::zeros({}, paired.options());
  at::Tensor loss = at::zeros({}, paired.options());
  if (visual_weight > 0.0) {
    const at::Tensor hinge = (margin + visual_unpaired - paired).clamp_min(0);
    loss = loss + visual_weight * at::where(visual_valid, hinge, zero).sum();
  }
  if (lang_weight > 0.0) {
    const at::Tensor hinge = (margin + lang_unpaired - paired).clamp_min(0);
    loss = loss + lang_weight * at::where(lang_valid, hinge, zero).sum();
  }
  return B > 0 ? loss / static_cast<double>(B) : loss;
}

// ---- modules ----

NormalizeScaleImpl::NormalizeScaleImpl(std::int64_t dim, double init_norm) {
  weight = register_parameter("weight", at::full({1, dim}, init_norm));
}

at::Tensor NormalizeScaleImpl::forward(const at::Tensor& x) {
  return l2_normalize(x) * weight.squeeze(0);
}

JointMlpImpl::JointMlpImpl(std::int64_t in_dim, std::int64_t jemb_dim, double dropout) {
  fc0_ = register_module("0", tnn::Linear(in_dim, jemb_dim));
  bn1_ = register_module("1", wico::nn::BatchNorm(jemb_dim));
  drop3_ = register_module("3", tnn::Dropout(dropout));
  fc4_ = register_module("4", tnn::Linear(jemb_dim, jemb_dim));
  bn5_ = register_module("5", wico::nn::BatchNorm(jemb_dim));
}

at::Tensor JointMlpImpl::forward(const at::Tensor& x) {
  const at::Tensor h = drop3_->forward(batch_norm_rows(bn1_, fc0_->forward(x)).relu());
  return batch_norm_rows(bn5_, fc4_->forward(h));
}

MatchingImpl::MatchingImpl(std::int64_t vis_dim, std::int64_t lang_dim, std::int64_t jemb_dim,
                           double dropout) {
  vis_emb_fc = register_module("vis_emb_fc", JointMlp(vis_dim, jemb_dim, dropout));
  lang_emb_fc = register_module("lang_emb_fc", JointMlp(lang_dim, jemb_dim, dropout));
}

MattnetMatcher::MattnetMatcher(MattnetOptions options) : options_(std::move(options)) {
  options_.validate();
  const auto& o = options_;
  const std::int64_t dirs = o.bidirectional ? 2 : 1;
  const std::int64_t context_dim = dirs * o.rnn_hidden_size;
  const std::int64_t P = o.pool5_dim, F = o.fc7_dim, J = o.jemb_dim, V = o.word_vec_size;

  auto rnn_encoder = container(*this, "rnn_encoder");
  embedding_ = rnn_encoder->register_module("embedding",
                                            tnn::Embedding(o.vocab_size, o.word_embedding_size));
  input_dropout_ = rnn_encoder->register_module("input_dropout", tnn::Dropout(o.word_dropout));
  word_mlp_ =
      container(*rnn_encoder, "mlp")->register_module("0", tnn::Linear(o.word_embedding_size, V));
  rnn_ = rnn_encoder->register_module(
      "rnn", tnn::LSTM(tnn::LSTMOptions(V, o.rnn_hidden_size)
                           .num_layers(o.rnn_num_layers)
                           .batch_first(true)
                           .bidirectional(o.bidirectional)
                           .dropout(o.rnn_num_layers > 1 ? o.rnn_dropout : 0.0)));
  weight_fc_ = register_module("weight_fc", tnn::Linear(o.rnn_num_layers * context_dim, 3));
  sub_attn_ = container(*this, "sub_attn")->register_module("fc", tnn::Linear(context_dim, 1));
  loc_attn_ = container(*this, "loc_attn")->register_module("fc", tnn::Linear(context_dim, 1));
  rel_attn_ = container(*this, "rel_attn")->register_module("fc", tnn::Linear(context_dim, 1));

  auto sub = container(*this, "sub_encoder");
  pool5_normalizer_ =
      sub->register_module("pool5_normalizer", NormalizeScale(P, o.visual_init_norm));
  fc7_normalizer_ = sub->register_module("fc7_normalizer", NormalizeScale(F, o.visual_init_norm));
  att_normalizer_ = sub->register_module("att_normalizer", NormalizeScale(J, o.visual_init_norm));
  phrase_normalizer_ =
      sub->register_module("phrase_normalizer", NormalizeScale(V, o.visual_init_norm));
  auto att_fuse = container(*sub, "att_fuse");
  att_fuse_fc_ = att_fuse->register_module("0", tnn::Linear(P + F, J));
  att_fuse_bn_ = att_fuse->register_module("1", wico::nn::BatchNorm(J));
  att_dropout_ = sub->register_module("att_dropout", tnn::Dropout(o.att_dropout));
  if (o.num_atts > 0) att_fc_ = sub->register_module("att_fc", tnn::Linear(J, o.num_atts));
  auto attn_fuse = container(*sub, "attn_fuse");
  attn_fuse_fc0_ = attn_fuse->register_module("0", tnn::Linear(F + J + V, J));
  attn_fuse_fc2_ = attn_fuse->register_module("2", tnn::Linear(J, 1));
  const std::int64_t Qd = o.query_dim;
  if (Qd > 0) {
    query_normalizer_ =
        sub->register_module("query_normalizer", NormalizeScale(Qd, o.visual_init_norm));
  }
  sub_matching_ = register_module("sub_matching", Matching(F + J + Qd, V, J, o.jemb_dropout));

  auto loc = container(*this, "loc_encoder");
  lfeat_normalizer_ =
      loc->register_module("lfeat_normalizer", NormalizeScale(5, o.visual_init_norm));
  dif_lfeat_normalizer_ = loc->register_module(
      "dif_lfeat_normalizer", NormalizeScale(5 * kLocationNeighbours, o.visual_init_norm));
  loc_fc_ = loc->register_module("fc", tnn::Linear(5 + 5 * kLocationNeighbours, J));
  loc_matching_ = register_module("loc_matching", Matching(J, V, J, o.jemb_dropout));

  auto rel = container(*this, "rel_encoder");
  cxt_feat_normalizer_ =
      rel->register_module("vis_feat_normalizer", NormalizeScale(F, o.visual_init_norm));
  cxt_lfeat_normalizer_ =
      rel->register_module("lfeat_normalizer", NormalizeScale(5, o.visual_init_norm));
  if (Qd > 0) {
    cxt_query_normalizer_ =
        rel->register_module("query_normalizer", NormalizeScale(Qd, o.visual_init_norm));
  }
  rel_fc_ = rel->register_module("fc", tnn::Linear(F + Qd + 5, J));
  rel_matching_ = register_module("rel_matching", Matching(J, V, J, o.jemb_dropout));

  embedding_fc_ = register_module("embedding_fc", tnn::Linear(3 * J, o.output_dim()));
}

void MattnetMatcher::check_input(const MatcherInput& input) const {
  const auto& c = input.candidates;
  auto check_map = [](const at::Tensor& map, const char* name, std::int64_t channels,
                      const char* key) {
    WICO_CHECK(map.defined() && map.dim() == 4, "mattnet: ", name, " must be [B, C, h, w], got ",
               map.defined() ? map.sizes() : at::IntArrayRef{});
    if (map.size(1) != channels) {
      throw ConfigError(std::string(key) + " is " + std::to_string(channels) +
                        " but the extractor's " + name + " has " + std::to_string(map.size(1)) +
                        " channels");
    }
  };
  check_map(input.c4, "c4", options_.pool5_dim, "mattnet.pool5_dim");
  check_map(input.c5, "c5", options_.fc7_dim, "mattnet.fc7_dim");
  WICO_CHECK(input.c5.size(0) == input.c4.size(0), "mattnet: c4 and c5 differ in batch size");
  if (options_.query_dim > 0) {
    const auto& e = input.candidate_embeddings;
    if (!e.defined() || e.dim() != 3 || e.size(2) != options_.query_dim) {
      throw ConfigError("mattnet.query_dim is " + std::to_string(options_.query_dim) +
                        " but the candidates' query embeddings are " +
                        (e.defined() ? "of another shape" : "absent") +
                        " (the extractor's hidden_dim; a ground-truth-only extractor has none)");
    }
  }
  const std::int64_t B = input.c4.size(0);
  WICO_CHECK(c.masks.dim() == 4 && c.masks.size(0) == B,
             "mattnet: masks must be [B, N, h, w], got ", c.masks.sizes());
  const std::int64_t N = c.masks.size(1);
  WICO_CHECK(c.boxes.sizes() == at::IntArrayRef({B, N, 4}),
             "mattnet: boxes must be [B, N, 4], got ", c.boxes.sizes());
  WICO_CHECK(
      c.classes.sizes() == at::IntArrayRef({B, N}) && c.valid.sizes() == at::IntArrayRef({B, N}),
      "mattnet: classes and valid must be [B, N]");
  WICO_CHECK(input.token_ids.dim() == 2 && input.token_ids.size(0) == B &&
                 input.attention_mask.sizes() == input.token_ids.sizes(),
             "mattnet: token_ids and attention_mask must be [B, L]");
}

MattnetLanguage MattnetMatcher::encode_language(const at::Tensor& token_ids,
                                                const at::Tensor& attention_mask) {
  const std::int64_t B = token_ids.size(0), L = token_ids.size(1);
  if (token_ids.numel() > 0) {
    const std::int64_t lo = token_ids.min().item<std::int64_t>();
    const std::int64_t hi = token_ids.max().item<std::int64_t>();
    if (lo < 0 || hi >= options_.vocab_size) {
      throw ConfigError("mattnet.vocab_size is " + std::to_string(options_.vocab_size) +
                        " but the batch has word id " + std::to_string(lo < 0 ? lo : hi));
    }
  }
  // Sentences are right-padded; an empty one reads its first (padding) token.
  const at::Tensor lengths = attention_mask.sum(1).clamp_min(1).to(at::kCPU, at::kLong);
  const at::Tensor words =
      at::arange(L, token_ids.options()).unsqueeze(0) < lengths.to(token_ids.device()).unsqueeze(1);

  MattnetLanguage out;
  out.embedded = word_mlp_->forward(input_dropout_->forward(embedding_->forward(token_ids))).relu();
  const auto packed = tnn::utils::rnn::pack_padded_sequence(out.embedded, lengths,
                                                            /*batch_first=*/true,
                                                            /*enforce_sorted=*/false);
  auto [output, state] = rnn_->forward_with_packed_input(packed);
  out.context =
      std::get<0>(tnn::utils::rnn::pad_packed_sequence(output, /*batch_first=*/true, 0.0, L));
  out.hidden = std::get<0>(state).transpose(0, 1).reshape({B, -1});  // h_n of every layer, dir
  out.weights = weight_fc_->forward(out.hidden).softmax(-1);
  out.embedded = out.embedded * words.unsqueeze(-1).to(out.embedded.scalar_type());

  auto attend = [&](tnn::Linear& fc, at::Tensor& attn, at::Tensor& phrase) {
    attn = fc->forward(out.context).squeeze(-1).masked_fill(words.logical_not(), -kInf).softmax(-1);
    phrase = at::bmm(attn.unsqueeze(1), out.embedded).squeeze(1);
  };
  attend(sub_attn_, out.sub_attn, out.sub_phrase);
  attend(loc_attn_, out.loc_attn, out.loc_phrase);
  attend(rel_attn_, out.rel_attn, out.rel_phrase);
  return out;
}

MattnetVisual MattnetMatcher::visual_features(const MatcherInput& input) {
  const auto& c = input.candidates;
  const std::int64_t B = c.masks.size(0), N = c.masks.size(1);
  const std::int64_t P = options_.pool5_dim, F = options_.fc7_dim;
  const std::int64_t G2 = options_.grid_size * options_.grid_size, K = options_.num_cxt;
  MattnetVisual v;
  v.pool5 = roi_grid(input.c4, c.boxes, options_.grid_size).reshape({B * N, G2, P});
  v.fc7 = roi_grid(input.c5, c.boxes, options_.grid_size).reshape({B * N, G2, F});
  const LocationFeatures loc = location_features(c.boxes, c.classes, c.valid, K, options_.with_st);
  const auto float_type = input.c5.scalar_type();
  v.lfeats = loc.lfeats.reshape({B * N, 5}).to(float_type);
  v.dif_lfeats = loc.dif_lfeats.reshape({B * N, 5 * kLocationNeighbours}).to(float_type);
  const at::Tensor base = at::arange(B, loc.cxt_index.options()).view({B, 1, 1}) * N;
  const at::Tensor object_fc7 = v.fc7.mean(1);  // [B * N, F]: box_to_fc7's mean over the grid
  v.cxt_fc7 = object_fc7.index_select(0, (loc.cxt_index + base).reshape(-1)).view({B * N, K, F});
  v.cxt_lfeats = loc.cxt_lfeats.reshape({B * N, K, 5}).to(float_type);
  v.cxt_valid = loc.cxt_valid.reshape({B * N, K});
  if (options_.query_dim > 0) {
    const std::int64_t Qd = options_.query_dim;
    v.query = input.candidate_embeddings.reshape({B * N, Qd}).to(float_type);
    v.cxt_query = v.query.index_select(0, (loc.cxt_index + base).reshape(-1)).view({B * N, K, Qd});
  }
  return v;
}

MattnetScores MattnetMatcher::score(const MattnetVisual& v, const at::Tensor& rows,
                                    const MattnetLanguage& language, const at::Tensor& sentences) {
  const std::int64_t R = rows.size(0), G2 = v.pool5.size(1);
  const std::int64_t P = v.pool5.size(2), F = v.fc7.size(2);
  const std::int64_t J = options_.jemb_dim, V = options_.word_vec_size, K = options_.num_cxt;
  WICO_CHECK(P == options_.pool5_dim && F == options_.fc7_dim && v.fc7.size(1) == G2,
             "mattnet: pool5 [R, G*G, ", options_.pool5_dim, "] and fc7 [R, G*G, ",
             options_.fc7_dim, "] expected, got ", v.pool5.sizes(), " and ", v.fc7.sizes());
  auto joint = [](Matching& m, const at::Tensor& vis, const at::Tensor& lang) {
    return std::make_pair(l2_normalize(m->vis_emb_fc->forward(vis)),
                          l2_normalize(m->lang_emb_fc->forward(lang)));
  };
  MattnetScores s;

  // Subject (SubjectEncoder): att_fuse of each cell's [pool5; fc7], the attribute head on their
  // mean, phrase-guided attention over the cells [fc7; att].
  const at::Tensor sub_phrase = language.sub_phrase.index_select(0, sentences);
  const at::Tensor pool5 = pool5_normalizer_->forward(v.pool5.index_select(0, rows));  // [R, G2, P]
  const at::Tensor fc7 = fc7_normalizer_->forward(v.fc7.index_select(0, rows));        // [R, G2, F]
  at::Tensor att = att_fuse_fc_->forward(at::cat({pool5, fc7}, -1).reshape({R * G2, P + F}));
  att = batch_norm_rows(att_fuse_bn_, att).relu().view({R, G2, J});
  if (att_fc_) s.att_scores = att_fc_->forward(att_dropout_->forward(att.mean(1)));
  att = att_normalizer_->forward(att);
  const at::Tensor cells = at::cat({fc7, att}, -1);  // [R, G2, F + J]
  const at::Tensor phrase = phrase_normalizer_->forward(sub_phrase).unsqueeze(1).expand({R, G2, V});
  s.grid_attn =
      attn_fuse_fc2_->forward(attn_fuse_fc0_->forward(at::cat({cells, phrase}, -1)).tanh())
          .squeeze(-1)
          .softmax(-1);
  at::Tensor sub_feats = at::bmm(s.grid_attn.unsqueeze(1), cells).squeeze(1);
  if (query_normalizer_) {
    sub_feats = at::cat({sub_feats, query_normalizer_->forward(v.query.index_select(0, rows))}, -1);
  }
  const auto [sub_v, sub_l] = joint(sub_matching_, sub_feats, sub_phrase);

  // Location: own box and offsets to same-class neighbours.
  const at::Tensor loc_feats =
      loc_fc_->forward(at::cat({lfeat_normalizer_->forward(v.lfeats.index_select(0, rows)),
                                dif_lfeat_normalizer_->forward(v.dif_lfeats.index_select(0, rows))},
                               -1));
  const auto [loc_v, loc_l] =
      joint(loc_matching_, loc_feats, language.loc_phrase.index_select(0, sentences));

  // Relationship: the best-matching context; the MLP sees only real contexts.
  const at::Tensor cxt_valid = v.cxt_valid.index_select(0, rows);  // [R, K]
  std::vector<at::Tensor> context = {cxt_feat_normalizer_->forward(v.cxt_fc7.index_select(0, rows))};
  if (cxt_query_normalizer_) {
    context.push_back(cxt_query_normalizer_->forward(v.cxt_query.index_select(0, rows)));
  }
  context.push_back(cxt_lfeat_normalizer_->forward(v.cxt_lfeats.index_select(0, rows)));
  const at::Tensor rel_feats = rel_fc_->forward(at::cat(context, -1));  // [R, K, J]
  const at::Tensor real = cxt_valid.reshape(-1).nonzero().squeeze(1);
  const at::Tensor rel_v =
      at::zeros({R * K, J}, rel_feats.options())
          .index_copy(0, real,
                      l2_normalize(rel_matching_->vis_emb_fc->forward(
                          rel_feats.reshape({R * K, J}).index_select(0, real))))
          .view({R, K, J});
  // The phrase goes through lang_emb_fc once per real context, as RelationMatching expands it:
  // the batch norm's running variance counts those rows.
  const at::Tensor rel_phrase = language.rel_phrase.index_select(0, sentences);  // [R, V]
  const at::Tensor rel_l =
      at::zeros({R * K, J}, rel_feats.options())
          .index_copy(0, real,
                      l2_normalize(rel_matching_->lang_emb_fc->forward(
                          rel_phrase.unsqueeze(1).expand({R, K, V}).reshape({R * K, V})
                              .index_select(0, real))))
          .view({R, K, J});
  const at::Tensor rel_cos =
      (rel_v * rel_l).sum(-1).masked_fill(cxt_valid.logical_not(), -kInf);
  const auto [rel_best, rel_ix] = rel_cos.max(1);
  const at::Tensor rel_score =
      at::where(cxt_valid.any(1), rel_best, at::zeros({}, rel_best.options()));
  const at::Tensor rel_index = rel_ix.view({R, 1, 1}).expand({R, 1, J});
  const at::Tensor rel_vsel = rel_v.gather(1, rel_index).squeeze(1);
  const at::Tensor rel_lsel = rel_l.gather(1, rel_index).squeeze(1);
  s.rel_index = rel_ix;

  s.modules = at::stack({(sub_v * sub_l).sum(-1), (loc_v * loc_l).sum(-1), rel_score}, 1);
  s.weights = language.weights.index_select(0, sentences);  // [R, 3]
  const at::Tensor& w = s.weights;
  s.overall = (w * s.modules).sum(1);
  // Elementwise products of unit vectors are ~1/J each; times J they are O(1) and sum to J cos.
  s.joint = at::cat({w.narrow(1, 0, 1) * sub_v * sub_l, w.narrow(1, 1, 1) * loc_v * loc_l,
                     w.narrow(1, 2, 1) * rel_vsel * rel_lsel},
                    1) *
            static_cast<double>(J);
  return s;
}

MatcherOutput MattnetMatcher::forward(const MatcherInput& input) {
  check_input(input);
  const auto& c = input.candidates;
  const std::int64_t B = c.masks.size(0), N = c.masks.size(1);
  const at::Tensor valid = c.valid.to(at::kBool);
  const at::Tensor rows = valid.reshape(-1).nonzero().squeeze(1);
  const at::Tensor sentences = rows.div(N, "floor");

  const MattnetVisual v = visual_features(input);
  const MattnetLanguage language = encode_language(input.token_ids, input.attention_mask);
  const MattnetScores s = score(v, rows, language, sentences);

  const auto options = s.overall.options();
  const at::Tensor overall =
      at::zeros({B * N}, options).index_copy(0, rows, s.overall).view({B, N}) *
      options_.score_scale;
  MatcherOutput out;
  out.logits = at::where(valid, overall, at::full({}, -kInf, options));
  // A finite fill keeps the softmax of a sample without candidates at 0 rather than NaN.
  out.scores = at::where(valid, overall, at::full({}, -1e9, options)).softmax(-1) *
               valid.to(options.dtype());
  const at::Tensor embeddings = embedding_fc_->forward(s.joint);
  out.embeddings = at::zeros({B * N, embeddings.size(1)}, embeddings.options())
                       .index_copy(0, rows, embeddings)
                       .view({B, N, embeddings.size(1)});
  out.module_weights = language.weights;
  return out;
}

namespace {

// The sentences of two encodings as one batch (a first, then b), for score().
MattnetLanguage concatenate(const MattnetLanguage& a, const MattnetLanguage& b) {
  MattnetLanguage out;
  out.weights = at::cat({a.weights, b.weights});
  out.sub_phrase = at::cat({a.sub_phrase, b.sub_phrase});
  out.loc_phrase = at::cat({a.loc_phrase, b.loc_phrase});
  out.rel_phrase = at::cat({a.rel_phrase, b.rel_phrase});
  return out;
}

}  // namespace

std::map<std::string, at::Tensor> MattnetMatcher::loss(const MatcherInput& input,
                                                       const MatcherOutput& output,
                                                       const at::Tensor& target_index) {
  const auto& c = input.candidates;
  const std::int64_t B = c.masks.size(0), N = c.masks.size(1);
  const auto device = output.logits.device();
  WICO_CHECK(target_index.dim() == 1 && target_index.size(0) == B,
             "mattnet: target_index must be [B], got ", target_index.sizes());
  const at::Tensor target = target_index.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor valid = c.valid.to(at::kCPU, at::kBool).contiguous();
  const at::Tensor classes = c.classes.to(at::kCPU, at::kLong).contiguous();
  const auto t = target.accessor<std::int64_t, 1>();
  const auto ok = valid.accessor<bool, 2>();
  const auto cls = classes.accessor<std::int64_t, 2>();
  for (std::int64_t i = 0; i < B; ++i) {
    WICO_CHECK(t[i] >= 0 && t[i] < N && ok[i][t[i]], "mattnet: sample ", i, "'s target ", t[i],
               " is not one of its valid candidates");
  }
  const bool with_lang = options_.lang_rank_weight > 0.0;
  const at::Tensor u = at::rand({B, 4}, at::TensorOptions().dtype(at::kDouble));
  const auto uu = u.accessor<double, 2>();
  at::Tensor negative_ids = input.negative_token_ids, negative_mask = input.negative_attention_mask;
  at::Tensor negative_valid = input.negative_valid;
  if (with_lang && !negative_ids.defined()) {
    // A batch without the loader's negatives (built by hand, or an evaluation batch's loss):
    // another sample's expression, same-class referent preferred at the same ratio.
    std::vector<std::int64_t> other_sample(B, -1);
    for (std::int64_t i = 0; i < B; ++i) {
      other_sample[i] = draw_negative(
          B, [&](std::int64_t j) { return j != i; },
          [&](std::int64_t j) { return cls[j][t[j]] == cls[i][t[i]]; },
          options_.visual_sample_ratio, uu[i][2], uu[i][3]);
    }
    const at::Tensor index = at::tensor(other_sample, at::TensorOptions().dtype(at::kLong));
    const at::Tensor gather = index.clamp_min(0).to(input.token_ids.device());
    negative_ids = input.token_ids.index_select(0, gather);
    negative_mask = input.attention_mask.index_select(0, gather);
    negative_valid = index >= 0;
  }
  if (with_lang) {
    WICO_CHECK(negative_ids.sizes() == negative_mask.sizes() && negative_ids.dim() == 2 &&
                   negative_ids.size(0) == B && negative_valid.defined() &&
                   negative_valid.numel() == B,
               "mattnet: the language negatives must be negative_token_ids and "
               "negative_attention_mask [B, L] with negative_valid [B], got ",
               negative_ids.sizes(), ", ", negative_mask.sizes());
  }

  // Visual negatives as the original's sample_neg_ids: a same-class candidate with probability
  // visual_sample_ratio, else one of another class.
  std::vector<std::int64_t> vis_neg(B, -1);
  for (std::int64_t i = 0; i < B; ++i) {
    vis_neg[i] = draw_negative(
        N, [&](std::int64_t n) { return n != t[i] && ok[i][n]; },
        [&](std::int64_t n) { return cls[i][n] == cls[i][t[i]]; }, options_.visual_sample_ratio,
        uu[i][0], uu[i][1]);
  }
  const auto long_options = at::TensorOptions().dtype(at::kLong);
  const at::Tensor vis_neg_t = at::tensor(vis_neg, long_options).to(device);
  const at::Tensor target_d = target.to(device);
  const at::Tensor vis_ok = vis_neg_t >= 0;
  const at::Tensor lang_ok =
      with_lang ? negative_valid.to(device, at::kBool) : at::zeros({B}, vis_ok.options());

  // One pass over [referents; visual negatives; referents with the language negatives], as the
  // original's combine_feats: one set of batch-norm statistics for the three kinds of rows.
  const at::Tensor samples = at::arange(B, long_options.device(device));
  const at::Tensor pos_rows = samples * N + target_d;
  const at::Tensor vis_samples = vis_ok.nonzero().squeeze(1);
  const at::Tensor lang_samples = lang_ok.nonzero().squeeze(1);
  const at::Tensor rows = at::cat({pos_rows, vis_samples * N + vis_neg_t.index_select(0, vis_samples),
                                   pos_rows.index_select(0, lang_samples)});
  MattnetLanguage language = encode_language(input.token_ids, input.attention_mask);
  at::Tensor sentences = at::cat({samples, vis_samples});
  if (with_lang) {
    language = concatenate(language, encode_language(negative_ids, negative_mask));
    sentences = at::cat({sentences, lang_samples + B});
  }
  const MattnetVisual v = visual_features(input);
  const MattnetScores s = score(v, rows, language, sentences);
  const std::int64_t nv = vis_samples.size(0), nl = lang_samples.size(0);
  const at::Tensor paired = s.overall.narrow(0, 0, B);
  const at::Tensor zeros = at::zeros({B}, paired.options());
  const at::Tensor visual_unpaired = zeros.index_copy(0, vis_samples, s.overall.narrow(0, B, nv));
  const at::Tensor lang_unpaired =
      zeros.index_copy(0, lang_samples, s.overall.narrow(0, B + nv, nl));
  std::map<std::string, at::Tensor> losses;
  losses["match_rank"] =
      max_margin_rank_loss(paired, visual_unpaired, vis_ok, lang_unpaired, lang_ok,
                           options_.margin, options_.visual_rank_weight, options_.lang_rank_weight);

  const at::Tensor finite = at::where(c.valid.to(at::kBool).to(device), output.logits,
                                      at::full({}, -1e9, output.logits.options()));
  losses["match_ce"] =
      -finite.log_softmax(-1).gather(1, target_d.unsqueeze(1)).mean() * options_.ce_weight;

  // Attributes of the referents that have any (the original's select_ixs).
  if (att_fc_ && input.attribute_labels.defined() && options_.att_weight > 0.0) {
    const at::Tensor& labels = input.attribute_labels;
    const std::int64_t A = labels.size(1);
    WICO_CHECK(labels.dim() == 2 && labels.size(0) == B && input.attribute_weights.defined() &&
                   input.attribute_weights.numel() == A,
               "mattnet: attribute_labels must be [B, A] with attribute_weights [A], got ",
               labels.sizes());
    if (A > options_.num_atts) {
      throw ConfigError("data.attribute_words is " + std::to_string(options_.num_atts) +
                        " but the batch has " + std::to_string(A) + " attribute words");
    }
    const at::Tensor labelled = (labels.sum(1) > 0).nonzero().squeeze(1);
    const at::Tensor logits = s.att_scores.narrow(0, 0, B).narrow(1, 0, A);
    losses["match_att"] = options_.att_weight *
                          attribute_loss(logits.index_select(0, labelled),
                                         labels.to(device).index_select(0, labelled),
                                         input.attribute_weights.to(device));
  }
  return losses;
}

}  // namespace wico::topdown
