#include "wico/bottomup/lavt/lavt.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/core/schema.h"
#include "wico/data/loader.h"
#include "wico/io/pretrained.h"
#include "wico/nn/losses.h"
#include "wico/nn/winograd_conv.h"

namespace wico::bottomup {

namespace tnn = torch::nn;

LavtOptions LavtOptions::from_config(const Config& c) {
  LavtOptions o;
  o.swin = backbones::SwinOptions::preset(c.text("lavt.swin"), c.integer("lavt.window"));
  o.swin.drop_path_rate = c.real("lavt.drop_path");
  // Sizes other than the presets' (e.g. a published or fixture checkpoint's): 0 / [] keep them.
  if (c.integer("lavt.swin_embed_dim") > 0) o.swin.embed_dim = c.integer("lavt.swin_embed_dim");
  if (!c.integers("lavt.swin_depths").empty()) o.swin.depths = c.integers("lavt.swin_depths");
  if (!c.integers("lavt.swin_heads").empty()) o.swin.num_heads = c.integers("lavt.swin_heads");
  if (c.real("lavt.swin_mlp_ratio") > 0) o.swin.mlp_ratio = c.real("lavt.swin_mlp_ratio");
  o.bert = backbones::BertOptions::preset(c.text("lavt.bert"));
  o.bert.with_pooler = false;
  if (c.integer("lavt.bert_hidden") > 0) o.bert.hidden_size = c.integer("lavt.bert_hidden");
  if (c.integer("lavt.bert_layers") > 0) o.bert.num_layers = c.integer("lavt.bert_layers");
  if (c.integer("lavt.bert_heads") > 0) o.bert.num_heads = c.integer("lavt.bert_heads");
  if (c.integer("lavt.bert_intermediate") > 0) {
    o.bert.intermediate_size = c.integer("lavt.bert_intermediate");
  }
  if (c.integer("lavt.bert_positions") > 0) o.bert.max_positions = c.integer("lavt.bert_positions");
  // Word ids come from bert-base-uncased's WordPiece vocabulary whatever the encoder's size.
  o.bert.vocab_size = c.integer("lavt.bert_vocab");
  o.bert_train_layers = c.integer("lavt.bert_train_layers");
  o.fusion_heads = c.integers("lavt.fusion_heads");
  o.fusion_dropout = c.real("lavt.fusion_dropout");
  o.loss = c.text("lavt.loss");
  o.class_weights = c.reals("lavt.class_weights");
  o.bert_mode = c.text("lavt.bert_mode");
  o.swin_pretrained = c.text("lavt.swin_pretrained");
  o.bert_pretrained = c.text("lavt.bert_pretrained");
  if (static_cast<std::int64_t>(o.fusion_heads.size()) != o.swin.num_stages()) {
    throw ConfigError("lavt.fusion_heads has " + std::to_string(o.fusion_heads.size()) +
                      " entries; the Swin has " + std::to_string(o.swin.num_stages()) + " stages");
  }
  if (o.class_weights.size() != 2) {
    throw ConfigError("lavt.class_weights needs 2 values (background, foreground)");
  }
  if (c.text("text.tokenizer") != "wordpiece") {
    throw ConfigError("LAVT reads BERT WordPiece ids: set text.tokenizer: wordpiece (it is " +
                      c.text("text.tokenizer") + ")");
  }
  if (o.bert_train_layers > o.bert.num_layers) {
    throw ConfigError("lavt.bert_train_layers " + std::to_string(o.bert_train_layers) +
                      " exceeds the " + std::to_string(o.bert.num_layers) + " BERT layers");
  }
  return o;
}

PixelWordAttentionImpl::PixelWordAttentionImpl(std::int64_t visual_dim, std::int64_t language_dim,
                                               std::int64_t key_dim, std::int64_t value_dim,
                                               std::int64_t heads)
    : key_dim_(key_dim), value_dim_(value_dim), heads_(heads) {
  WICO_CHECK(key_dim % heads == 0 && value_dim % heads == 0, "PWAM: ", heads,
             " heads do not divide ", key_dim);
  f_key_ = register_module("f_key", tnn::Sequential(tnn::Conv1d(tnn::Conv1dOptions(language_dim, key_dim, 1))));
  // The original's f_query and W end in a parameter-free InstanceNorm1d, applied in forward().
  f_query_ = register_module(
      "f_query", tnn::Sequential(tnn::Conv1d(tnn::Conv1dOptions(visual_dim, key_dim, 1))));
  f_value_ = register_module("f_value", tnn::Sequential(tnn::Conv1d(tnn::Conv1dOptions(language_dim, value_dim, 1))));
  W_ = register_module("W", tnn::Sequential(tnn::Conv1d(tnn::Conv1dOptions(value_dim, value_dim, 1))));
}

namespace {

// A kernel-1 Conv1d of the original applied to channel-last tokens [B, N, C_in] -> [B, N, C_out]
// as a matrix product with the same parameters. (oneDNN's backward of these 1x1 convolutions
// gave run-to-run different, sometimes non-finite, weight gradients on this CPU build when its
// threads were preempted; the product is exact and deterministic.)
torch::Tensor pointwise(const torch::nn::Sequential& seq, const torch::Tensor& x) {
  const auto conv = seq->ptr<tnn::Conv1dImpl>(0);  // the Conv1d(k=1) at index 0
  return at::linear(x, conv->weight.squeeze(-1), conv->bias);
}

// InstanceNorm1d (no affine) of the original, over the tokens of each channel: x [B, N, C].
torch::Tensor instance_norm_over_tokens(const torch::Tensor& x) {
  const auto mean = x.mean(1, /*keepdim=*/true);
  const auto var = (x - mean).pow(2).mean(1, /*keepdim=*/true);
  return (x - mean) * (var + 1e-5).rsqrt();
}

}  // namespace

torch::Tensor PixelWordAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& words,
                                              const torch::Tensor& word_mask) {
  const std::int64_t B = x.size(0), HW = x.size(1), L = words.size(2);
  const std::int64_t kh = key_dim_ / heads_, vh = value_dim_ / heads_;
  const torch::Tensor w = words.permute({0, 2, 1});                     // [B, L, Cl]
  const torch::Tensor query = instance_norm_over_tokens(pointwise(f_query_, x))
                                  .view({B, HW, heads_, kh})
                                  .permute({0, 2, 1, 3});               // [B, h, HW, K/h]
  const torch::Tensor key =
      (pointwise(f_key_, w) * word_mask).view({B, L, heads_, kh}).permute({0, 2, 3, 1});
  const torch::Tensor value =
      (pointwise(f_value_, w) * word_mask).view({B, L, heads_, vh}).permute({0, 2, 1, 3});
  torch::Tensor sim = at::matmul(query, key) * std::pow(static_cast<double>(key_dim_), -0.5);
  sim = sim + (word_mask.view({B, 1, 1, L}) * 1e4 - 1e4);  // padded words get -10000
  sim = sim.softmax(-1);                                    // [B, h, HW, L]
  const torch::Tensor out =
      at::matmul(sim, value).permute({0, 2, 1, 3}).reshape({B, HW, value_dim_});
  return instance_norm_over_tokens(pointwise(W_, out));     // [B, HW, V]
}

PwamImpl::PwamImpl(std::int64_t dim, std::int64_t language_dim, std::int64_t heads,
                   double dropout) {
  vis_project_ = register_module(
      "vis_project", tnn::Sequential(tnn::Conv1d(tnn::Conv1dOptions(dim, dim, 1)), tnn::GELU(),
                                    tnn::Dropout(dropout)));
  image_lang_att_ = register_module("image_lang_att",
                                    PixelWordAttention(dim, language_dim, dim, dim, heads));
  project_mm_ = register_module(
      "project_mm", tnn::Sequential(tnn::Conv1d(tnn::Conv1dOptions(dim, dim, 1)), tnn::GELU(),
                                   tnn::Dropout(dropout)));
}

torch::Tensor PwamImpl::forward(const torch::Tensor& x, const torch::Tensor& words,
                                const torch::Tensor& word_mask) {
  // vis_project and project_mm are Conv1d(k=1) -> GELU -> Dropout; applied on tokens.
  auto project = [](torch::nn::Sequential seq, const torch::Tensor& t) {
    return seq->ptr<tnn::DropoutImpl>(2)->forward(at::gelu(pointwise(seq, t)));
  };
  const torch::Tensor vis = project(vis_project_, x);                   // [B, HW, C]
  const torch::Tensor lang = image_lang_att_->forward(x, words, word_mask);
  return project(project_mm_, vis * lang);                              // [B, HW, C]
}

LavtDecoderImpl::LavtDecoderImpl(std::int64_t c4_dims, std::int64_t factor)
    : hidden_(c4_dims / factor) {
  // Inputs of the three fusions: c4 + c3, hidden + c2, hidden + c1 (stage widths halve).
  const std::int64_t in[3] = {c4_dims + c4_dims / factor, hidden_ + c4_dims / (factor * factor),
                              hidden_ + c4_dims / (factor * factor * factor)};
  const char* level[3] = {"4", "3", "2"};
  for (int i = 0; i < 3; ++i) {
    auto conv = [&](std::int64_t channels) {
      return tnn::Conv2d(tnn::Conv2dOptions(channels, hidden_, 3).padding(1).bias(false));
    };
    conv_a_.push_back(register_module(std::string("conv1_") + level[i], conv(in[i])));
    bn_a_.push_back(register_module(std::string("bn1_") + level[i], wico::nn::BatchNorm(hidden_)));
    conv_b_.push_back(register_module(std::string("conv2_") + level[i], conv(hidden_)));
    bn_b_.push_back(register_module(std::string("bn2_") + level[i], wico::nn::BatchNorm(hidden_)));
  }
  conv1_1_ = register_module("conv1_1", tnn::Conv2d(tnn::Conv2dOptions(hidden_, 2, 1)));
}

torch::Tensor LavtDecoderImpl::fuse(int level, torch::Tensor x, const torch::Tensor& skip) {
  if (x.size(-2) < skip.size(-2) || x.size(-1) < skip.size(-1)) {
    x = at::upsample_bilinear2d(x, {skip.size(-2), skip.size(-1)}, /*align_corners=*/true);
  }
  const auto i = static_cast<std::size_t>(level);
  // The 3x3 convolutions are half of LAVT's work: Winograd computes them where it pays
  // (runtime.conv_algorithm), the module and its parameters unchanged.
  x = at::relu(bn_a_[i]->forward(wico::nn::conv2d(conv_a_[i], at::cat({x, skip}, 1))));
  return at::relu(bn_b_[i]->forward(wico::nn::conv2d(conv_b_[i], x)));
}

torch::Tensor LavtDecoderImpl::forward(torch::Tensor c4, const torch::Tensor& c3,
                                       const torch::Tensor& c2, const torch::Tensor& c1) {
  return fuse(2, fuse(1, fuse(0, std::move(c4), c3), c2), c1);
}

LavtBackend::LavtBackend(LavtOptions options) : options_(std::move(options)) {
  options_.swin.validate();
  options_.bert.validate();
  swin_ = register_module("backbone", backbones::SwinTransformer(options_.swin));
  bert_ = register_module("text_encoder", backbones::BertModel(options_.bert));
  const std::int64_t language_dim = options_.bert.hidden_size;
  for (std::int64_t i = 0; i < options_.swin.num_stages(); ++i) {
    const std::int64_t dim = options_.swin.stage_dim(i);
    // Registered inside the Swin stage, as the original's MMBasicLayer holds them.
    auto stage = swin_->stage(i);
    fusion_.push_back(stage->register_module(
        "fusion", Pwam(dim, language_dim, options_.fusion_heads[static_cast<std::size_t>(i)],
                       options_.fusion_dropout)));
    res_gate_.push_back(stage->register_module(
        "res_gate",
        tnn::Sequential(tnn::Linear(tnn::LinearOptions(dim, dim).bias(false)), tnn::ReLU(),
                       tnn::Linear(tnn::LinearOptions(dim, dim).bias(false)), tnn::Tanh())));
    // The original's backbone _init_weights gives every Linear, these included, a truncated
    // normal of std 0.02.
    const torch::NoGradGuard no_grad;
    for (const std::size_t j : {0, 2}) {
      auto& weight = res_gate_.back()->ptr<tnn::LinearImpl>(j)->weight;
      backbones::trunc_normal_(weight, 0.02);
    }
  }
  decoder_ = register_module(
      "classifier", LavtDecoder(options_.swin.stage_dim(options_.swin.num_stages() - 1)));
  if (options_.bert_train_layers >= 0) bert_->freeze_except_layers(options_.bert_train_layers);
}

void LavtBackend::train(bool on) {
  BottomUpBackend::train(on);
  // The original's train.py never calls bert_model.train(): BERT's dropout stays off.
  if (on && options_.bert_mode == "eval") bert_->eval();
}

std::vector<io::ImportReport> LavtBackend::load_pretrained() {
  std::vector<io::ImportReport> reports;
  if (!options_.swin_pretrained.empty()) {
    reports.push_back(io::import_component(
        *swin_, "lavt.swin_pretrained", options_.swin_pretrained, "swin",
        "the ImageNet-22k Swin checkpoint LAVT starts from: swin_base_patch4_window12_384_22k.pth "
        "from https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"));
  }
  if (!options_.bert_pretrained.empty()) {
    reports.push_back(io::import_component(
        *bert_, "lavt.bert_pretrained", options_.bert_pretrained, "hf_bert",
        "HuggingFace bert-base-uncased: pytorch_model.bin (or model.safetensors) from "
        "https://huggingface.co/bert-base-uncased"));
  }
  return reports;
}

std::vector<torch::Tensor> LavtBackend::encode(const torch::Tensor& images,
                                               const torch::Tensor& token_ids,
                                               const torch::Tensor& attention_mask) {
  const torch::Tensor words = bert_->forward(token_ids, attention_mask).permute({0, 2, 1});
  const torch::Tensor word_mask = attention_mask.unsqueeze(-1).to(words.scalar_type());
  backbones::TokenMap x = swin_->embed(images);
  std::vector<torch::Tensor> features;
  for (std::int64_t i = 0; i < options_.swin.num_stages(); ++i) {
    const auto s = static_cast<std::size_t>(i);
    x = swin_->run_blocks(i, x);
    const torch::Tensor residual = fusion_[s]->forward(x.tokens, words, word_mask);
    x.tokens = x.tokens + res_gate_[s]->forward(residual) * residual;
    features.push_back(swin_->output(i, {residual, x.height, x.width}));
    x = swin_->downsample(i, x);
  }
  return features;
}

BottomUpOutput LavtBackend::forward(const data::Batch& batch) {
  const auto f = encode(batch.images, batch.token_ids, batch.attention_mask);
  BottomUpOutput out;
  out.pixel_embeddings = decoder_->forward(f[3], f[2], f[1], f[0]);
  out.logits = decode(out.pixel_embeddings);
  return out;
}

at::Tensor LavtBackend::decode(const at::Tensor& pixel_embeddings) {
  const at::Tensor two = decoder_->classifier()->forward(pixel_embeddings);
  return two.narrow(1, 1, 1) - two.narrow(1, 0, 1);
}

at::Tensor LavtBackend::loss(const at::Tensor& native_logits, const at::Tensor& targets) {
  // The original compares at the input size: its logits up-sampled bilinearly (align_corners).
  const at::Tensor logits =
      native_logits.sizes().slice(2) == targets.sizes().slice(2)
          ? native_logits
          : at::upsample_bilinear2d(native_logits, {targets.size(-2), targets.size(-1)},
                                    /*align_corners=*/true);
  if (options_.loss == "bce") return at::binary_cross_entropy_with_logits(logits, targets);
  at::Tensor dice;
  if (options_.loss == "ce_dice") {
    // Soft Dice per sample (smoothing 1), averaged: counters the small-object imbalance of
    // models trained from scratch, where CE alone settles on "background everywhere".
    dice = nn::soft_dice_loss(logits.sigmoid(), targets);
  }
  // The original's cross-entropy over two classes with class weights: a weighted mean,
  // sum(w_y * -log p_y) / sum(w_y), written on the single logit d = l1 - l0.
  const double w0 = options_.class_weights[0], w1 = options_.class_weights[1];
  const at::Tensor weights = targets * (w1 - w0) + w0;
  const at::Tensor nll = at::binary_cross_entropy_with_logits(logits, targets, {}, {},
                                                              at::Reduction::None);
  const at::Tensor ce = (weights * nll).sum() / weights.sum();
  return dice.defined() ? ce + dice : ce;
}

void add_lavt_keys(Schema& schema) {
  schema.text("lavt.swin", "base", "Swin size: nano (CPU tests), tiny, small, base (the paper), large")
      .integer("lavt.window", 12, "Swin window size (LAVT: 12)", 1)
      .real("lavt.drop_path", 0.3, "stochastic depth of the last Swin block", 0.0, 1.0)
      .text("lavt.bert", "base", "BERT size: base (the paper) or tiny", {"base", "tiny"})
      .integer("lavt.bert_train_layers", 10,
               "BERT layers [0, N) are trained, the rest and the embeddings frozen (LAVT: 10); "
               "-1 trains all of BERT", -1)
      .integers("lavt.fusion_heads", {1, 1, 1, 1}, "PWAM attention heads per stage", 1)
      .real("lavt.fusion_dropout", 0.0, "PWAM dropout", 0.0, 1.0)
      .text("lavt.loss", "ce",
            "ce: the original's weighted 2-class cross-entropy; bce; ce_dice: ce plus soft Dice "
            "(for training from scratch)",
            {"ce", "bce", "ce_dice"})
      .reals("lavt.class_weights", {0.9, 1.1}, "ce class weights (background, foreground)", 0.0)
      .integer("lavt.swin_embed_dim", 0, "Swin width other than the preset's (0: the preset's)", 0)
      .integers("lavt.swin_depths", {}, "Swin blocks per stage other than the preset's ([]: the preset's)", 1)
      .integers("lavt.swin_heads", {}, "Swin heads per stage other than the preset's ([]: the preset's)", 1)
      .real("lavt.swin_mlp_ratio", 0.0, "Swin MLP ratio other than the preset's (0: the preset's)", 0.0)
      .integer("lavt.bert_hidden", 0, "BERT width other than the preset's (0: the preset's)", 0)
      .integer("lavt.bert_layers", 0, "BERT layers other than the preset's (0: the preset's)", 0)
      .integer("lavt.bert_heads", 0, "BERT heads other than the preset's (0: the preset's)", 0)
      .integer("lavt.bert_intermediate", 0, "BERT feed-forward width other than the preset's (0: the preset's)", 0)
      .integer("lavt.bert_positions", 0, "BERT positions other than the preset's (0: the preset's)", 0)
      .integer("lavt.bert_vocab", 30522,
               "BERT vocabulary size (30522: bert-base-uncased's WordPiece, what text.tokenizer "
               "wordpiece gives)", 1)
      .text("lavt.bert_mode", "eval",
            "BERT's mode while training: eval (the original: dropout off) or train",
            {"eval", "train"})
      .text("lavt.swin_pretrained", "",
            "published Swin weights to start from (official .pth, e.g. "
            "swin_base_patch4_window12_384_22k.pth); '' = random")
      .text("lavt.bert_pretrained", "",
            "published BERT weights to start from (HuggingFace pytorch_model.bin or "
            "model.safetensors of bert-base-uncased); '' = random");
}

}  // namespace wico::bottomup
