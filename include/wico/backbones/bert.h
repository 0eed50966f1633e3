// BERT encoder, as HuggingFace's BertModel (the transformers 3.0.2 copy in LAVT's bert/): the
// embeddings (word + position + token type, LayerNorm eps 1e-12, dropout), N post-norm layers
// (self-attention with the additive padding mask (1 - mask) * -10000, dense + residual
// LayerNorm; intermediate GELU (erf); output dense + residual LayerNorm) and an optional pooler
// (tanh(dense(h[:, 0]))). LAVT uses the last hidden state with the pooler removed.
//
// Parameter names are HuggingFace's state_dict names without the "bert." prefix:
// embeddings.word_embeddings.weight, embeddings.LayerNorm.weight,
// encoder.layer.0.attention.self.query.weight, encoder.layer.0.attention.output.dense.weight,
// encoder.layer.0.attention.output.LayerNorm.weight, encoder.layer.0.intermediate.dense.weight,
// encoder.layer.0.output.dense.weight, encoder.layer.0.output.LayerNorm.weight,
// pooler.dense.weight. (Newer HF files also hold an embeddings.position_ids buffer: it is
// arange(max_positions), not a parameter, and is not needed here.)
//
// Fine-tuning as LAVT: its optimiser holds encoder layers 0-9 only (embeddings, layers 10-11 and
// the pooler never change): freeze_except_layers(10) does the same by requires_grad.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

namespace wico::backbones {

struct BertOptions {
  std::int64_t vocab_size = 30522;
  std::int64_t hidden_size = 768;
  std::int64_t num_layers = 12;
  std::int64_t num_heads = 12;
  std::int64_t intermediate_size = 3072;
  std::int64_t max_positions = 512;
  std::int64_t type_vocab_size = 2;
  std::int64_t pad_token_id = 0;
  double layer_norm_eps = 1e-12;
  double hidden_dropout = 0.1;
  double attention_dropout = 0.1;
  bool with_pooler = true;

  static BertOptions base();  // bert-base-uncased: the defaults above
  // A CPU test size: vocab 128, hidden 32, 2 layers, 4 heads, intermediate 64, 32 positions.
  static BertOptions tiny();
  // base or tiny; anything else is a ConfigError.
  static BertOptions preset(const std::string& name);
  void validate() const;  // ConfigError when heads do not divide the hidden size, ...
};

class BertEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit BertEmbeddingsImpl(const BertOptions& options);
  // ids [B, L] int64; token_type_ids [B, L] or undefined (all 0) -> [B, L, H]
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& token_type_ids = {});
  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr},
      token_type_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};  // NOLINT: HF's name
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(BertEmbeddings);

// One encoder layer. The HF nesting (attention.self.query, attention.output.dense, ...) is kept
// in the registered names; the members below are handles to those modules.
class BertLayerImpl : public torch::nn::Module {
 public:
  explicit BertLayerImpl(const BertOptions& options);
  // hidden [B, L, H]; additive_mask [B, 1, 1, L] (0 or -10000) or undefined.
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& additive_mask = {});

  std::int64_t num_heads, head_dim;
  double attention_dropout, hidden_dropout;
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr};  // attention.self.*
  torch::nn::Linear attention_dense{nullptr};                      // attention.output.dense
  torch::nn::LayerNorm attention_norm{nullptr};                    // attention.output.LayerNorm
  torch::nn::Linear intermediate_dense{nullptr};                   // intermediate.dense
  torch::nn::Linear output_dense{nullptr};                         // output.dense
  torch::nn::LayerNorm output_norm{nullptr};                       // output.LayerNorm
};
TORCH_MODULE(BertLayer);

class BertModelImpl : public torch::nn::Module {
 public:
  explicit BertModelImpl(BertOptions options);

  // ids [B, L] int64, attention_mask [B, L] (1 real, 0 padding; any numeric or bool type, or
  // undefined for all real) -> the last hidden state [B, L, H].
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& attention_mask = {},
                        const torch::Tensor& token_type_ids = {});
  // The pooler on a last hidden state: tanh(dense(h[:, 0])) -> [B, H]. Needs with_pooler.
  torch::Tensor pool(const torch::Tensor& last_hidden);
  // HF's extended mask: [B, L] -> [B, 1, 1, L] float, (1 - mask) * -10000.
  static torch::Tensor additive_mask(const torch::Tensor& attention_mask);

  // Names of the parameters LAVT does not train when only layers [0, train_layers) are
  // fine-tuned: the embeddings, layers >= train_layers and the pooler.
  std::vector<std::string> frozen_parameter_names(std::int64_t train_layers) const;
  // Sets requires_grad(false) on exactly those parameters (and true on the others).
  void freeze_except_layers(std::int64_t train_layers);
  // The parameters of encoder layers [begin, end), for an optimiser group.
  std::vector<torch::Tensor> layer_parameters(std::int64_t begin, std::int64_t end) const;

  const BertOptions& options() const { return options_; }
  BertLayer layer(std::int64_t i) const;

  // HF's _init_weights: Linear and Embedding weights normal(0, 0.02), biases 0, LayerNorms 1 / 0,
  // the padding row of the word embeddings 0. The constructor applies it.
  void init_weights();

  BertEmbeddings embeddings{nullptr};
  torch::nn::ModuleList layers{nullptr};    // registered as encoder.layer
  torch::nn::Linear pooler_dense{nullptr};  // pooler.dense; null without the pooler

 private:
  BertOptions options_;
};
TORCH_MODULE(BertModel);

}  // namespace wico::backbones
