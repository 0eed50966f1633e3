#include "wico/backbones/bert.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "wico/core/error.h"

namespace wico::backbones {

BertOptions BertOptions::base() { return {}; }

BertOptions BertOptions::tiny() {
  BertOptions o;
  o.vocab_size = 128;
  o.hidden_size = 32;
  o.num_layers = 2;
  o.num_heads = 4;
  o.intermediate_size = 64;
  o.max_positions = 32;
  return o;
}

BertOptions BertOptions::preset(const std::string& name) {
  if (name == "base") return base();
  if (name == "tiny") return tiny();
  throw ConfigError("unknown BERT size '" + name + "'; valid: base, tiny");
}

void BertOptions::validate() const {
  auto fail = [](const std::string& what) { throw ConfigError("BERT options: " + what); };
  if (vocab_size < 1 || hidden_size < 1 || num_layers < 0 || num_heads < 1 ||
      intermediate_size < 1 || max_positions < 1 || type_vocab_size < 1) {
    fail("sizes must be positive");
  }
  if (hidden_size % num_heads != 0) {
    fail("hidden size " + std::to_string(hidden_size) + " is not divisible by " +
         std::to_string(num_heads) + " heads");
  }
  if (pad_token_id < 0 || pad_token_id >= vocab_size) fail("pad_token_id outside the vocabulary");
  for (double p : {hidden_dropout, attention_dropout}) {
    if (p < 0.0 || p >= 1.0) fail("dropout rates must lie in [0, 1)");
  }
}

// ---- embeddings ---------------------------------------------------------------------------------

namespace {
torch::nn::LayerNorm layer_norm(std::int64_t size, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({size}).eps(eps));
}
}  // namespace

BertEmbeddingsImpl::BertEmbeddingsImpl(const BertOptions& o) {
  word_embeddings = register_module(
      "word_embeddings",
      torch::nn::Embedding(
          torch::nn::EmbeddingOptions(o.vocab_size, o.hidden_size).padding_idx(o.pad_token_id)));
  position_embeddings =
      register_module("position_embeddings", torch::nn::Embedding(o.max_positions, o.hidden_size));
  token_type_embeddings = register_module("token_type_embeddings",
                                          torch::nn::Embedding(o.type_vocab_size, o.hidden_size));
  LayerNorm = register_module("LayerNorm", layer_norm(o.hidden_size, o.layer_norm_eps));
  dropout = register_module("dropout", torch::nn::Dropout(o.hidden_dropout));
}

torch::Tensor BertEmbeddingsImpl::forward(const torch::Tensor& ids,
                                          const torch::Tensor& token_type_ids) {
  const auto length = ids.size(1);
  WICO_CHECK(length <= position_embeddings->weight.size(0), "sequence of ", length,
             " tokens is longer than the ", position_embeddings->weight.size(0), " positions");
  const auto positions = torch::arange(length, ids.options().dtype(torch::kLong));
  auto e = word_embeddings(ids) + position_embeddings(positions).unsqueeze(0);
  if (token_type_ids.defined()) {
    e = e + token_type_embeddings(token_type_ids);
  } else {
    e = e + token_type_embeddings->weight[0];
  }
  return dropout(LayerNorm(e));
}

// ---- one layer ----------------------------------------------------------------------------------

BertLayerImpl::BertLayerImpl(const BertOptions& o)
    : num_heads(o.num_heads),
      head_dim(o.hidden_size / o.num_heads),
      attention_dropout(o.attention_dropout),
      hidden_dropout(o.hidden_dropout) {
  const auto h = o.hidden_size;
  auto attention = register_module("attention", std::make_shared<torch::nn::Module>());
  auto self = attention->register_module("self", std::make_shared<torch::nn::Module>());
  query = self->register_module("query", torch::nn::Linear(h, h));
  key = self->register_module("key", torch::nn::Linear(h, h));
  value = self->register_module("value", torch::nn::Linear(h, h));
  auto attention_output =
      attention->register_module("output", std::make_shared<torch::nn::Module>());
  attention_dense = attention_output->register_module("dense", torch::nn::Linear(h, h));
  attention_norm = attention_output->register_module("LayerNorm", layer_norm(h, o.layer_norm_eps));
  auto intermediate = register_module("intermediate", std::make_shared<torch::nn::Module>());
  intermediate_dense =
      intermediate->register_module("dense", torch::nn::Linear(h, o.intermediate_size));
  auto output = register_module("output", std::make_shared<torch::nn::Module>());
  output_dense = output->register_module("dense", torch::nn::Linear(o.intermediate_size, h));
  output_norm = output->register_module("LayerNorm", layer_norm(h, o.layer_norm_eps));
}

torch::Tensor BertLayerImpl::forward(const torch::Tensor& hidden,
                                     const torch::Tensor& additive_mask) {
  const auto b = hidden.size(0), l = hidden.size(1), h = hidden.size(2);
  auto heads = [&](const torch::Tensor& x) {
    return x.view({b, l, num_heads, head_dim}).permute({0, 2, 1, 3});
  };
  const auto q = heads(query(hidden));
  const auto k = heads(key(hidden));
  const auto v = heads(value(hidden));
  auto scores = at::matmul(q, k.transpose(-1, -2)).div_(std::sqrt(static_cast<double>(head_dim)));
  if (additive_mask.defined()) scores.add_(additive_mask);
  auto probs = at::softmax(scores, -1);
  if (attention_dropout > 0.0) probs = at::dropout(probs, attention_dropout, is_training());
  auto context = at::matmul(probs, v).permute({0, 2, 1, 3}).reshape({b, l, h});

  auto attended = attention_dense(context);
  if (hidden_dropout > 0.0) attended = at::dropout(attended, hidden_dropout, is_training());
  attended = attention_norm(attended + hidden);

  auto out = output_dense(at::gelu(intermediate_dense(attended)));
  if (hidden_dropout > 0.0) out = at::dropout(out, hidden_dropout, is_training());
  return output_norm(out + attended);
}

// ---- the model ----------------------------------------------------------------------------------

BertModelImpl::BertModelImpl(BertOptions options) : options_(std::move(options)) {
  options_.validate();
  embeddings = register_module("embeddings", BertEmbeddings(options_));
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  layers = encoder->register_module("layer", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < options_.num_layers; ++i) layers->push_back(BertLayer(options_));
  if (options_.with_pooler) {
    auto pooler = register_module("pooler", std::make_shared<torch::nn::Module>());
    pooler_dense = pooler->register_module(
        "dense", torch::nn::Linear(options_.hidden_size, options_.hidden_size));
  }
  init_weights();
}

void BertModelImpl::init_weights() {
  torch::NoGradGuard no_grad;
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* linear = module->as<torch::nn::Linear>()) {
      linear->weight.normal_(0.0, 0.02);
      if (linear->bias.defined()) linear->bias.zero_();
    } else if (auto* embedding = module->as<torch::nn::Embedding>()) {
      embedding->weight.normal_(0.0, 0.02);
    } else if (auto* norm = module->as<torch::nn::LayerNorm>()) {
      norm->weight.fill_(1.0);
      norm->bias.zero_();
    }
  }
  embeddings->word_embeddings->weight[options_.pad_token_id].zero_();
}

torch::Tensor BertModelImpl::additive_mask(const torch::Tensor& attention_mask) {
  WICO_CHECK(attention_mask.dim() == 2, "attention mask must be [B, L], got ",
             attention_mask.sizes());
  return (1.0 - attention_mask.to(torch::kFloat)).mul_(-10000.0).unsqueeze(1).unsqueeze(2);
}

torch::Tensor BertModelImpl::forward(const torch::Tensor& ids, const torch::Tensor& attention_mask,
                                     const torch::Tensor& token_type_ids) {
  WICO_CHECK(ids.dim() == 2, "token ids must be [B, L], got ", ids.sizes());
  torch::Tensor mask;
  if (attention_mask.defined()) {
    WICO_CHECK(attention_mask.sizes() == ids.sizes(), "attention mask ", attention_mask.sizes(),
               " does not match the token ids ", ids.sizes());
    mask = additive_mask(attention_mask);
  }
  auto hidden = embeddings(ids, token_type_ids);
  for (const auto& layer : *layers) hidden = layer->as<BertLayerImpl>()->forward(hidden, mask);
  return hidden;
}

torch::Tensor BertModelImpl::pool(const torch::Tensor& last_hidden) {
  WICO_CHECK(pooler_dense, "this BERT has no pooler (with_pooler is off)");
  return at::tanh(pooler_dense(last_hidden.select(1, 0)));
}

BertLayer BertModelImpl::layer(std::int64_t i) const {
  WICO_CHECK(i >= 0 && i < options_.num_layers, "BERT layer ", i, " out of range");
  return BertLayer(layers->ptr<BertLayerImpl>(i));
}

std::vector<std::string> BertModelImpl::frozen_parameter_names(std::int64_t train_layers) const {
  std::vector<std::string> out;
  const std::string prefix = "encoder.layer.";
  for (const auto& item : named_parameters()) {
    const auto& name = item.key();
    bool trained = false;
    if (name.rfind(prefix, 0) == 0) {
      const auto index = std::stoll(name.substr(prefix.size()));
      trained = index < train_layers;
    }
    if (!trained) out.push_back(name);
  }
  return out;
}

void BertModelImpl::freeze_except_layers(std::int64_t train_layers) {
  const auto frozen = frozen_parameter_names(train_layers);
  for (auto& item : named_parameters()) {
    const bool freeze = std::find(frozen.begin(), frozen.end(), item.key()) != frozen.end();
    item.value().set_requires_grad(!freeze);
  }
}

std::vector<torch::Tensor> BertModelImpl::layer_parameters(std::int64_t begin,
                                                           std::int64_t end) const {
  std::vector<torch::Tensor> out;
  for (std::int64_t i = std::max<std::int64_t>(begin, 0); i < std::min(end, options_.num_layers);
       ++i) {
    for (const auto& p : layers->ptr(i)->parameters()) out.push_back(p);
  }
  return out;
}

}  // namespace wico::backbones
