// LAVT (Yang et al., CVPR 2022; yz93/LAVT-RIS) as a bottom-up backend: a Swin Transformer whose
// every stage is followed by a pixel-word attention module (PWAM) and a language gate, a BERT
// text encoder, and the progressive conv-BN-ReLU decoder. E_p is the decoder's last feature map
// (hidden 512 at paper size, 1/4 of the input); decode() is its final 1x1 conv, whose two class
// logits become one foreground logit l1 - l0 (softmax(l)[1] == sigmoid(l1 - l0) exactly).
//
// Parameter names follow the original's state_dict: backbone.* (with each stage's
// backbone.layers.i.fusion.* and backbone.layers.i.res_gate.*), classifier.* (conv1_4, bn1_4, ...,
// conv1_1) and text_encoder.* (HuggingFace BERT without the pooler).
//
// Quirks kept from the original: the stage outputs fed to the decoder are the PWAM outputs (not
// the gated sum), normalised by norm_i; language keys and values are multiplied by the padding
// mask and padded words get -10000 before the softmax; only BERT layers 0-9 are trained
// (lavt.bert_train_layers).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/batchnorm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "wico/backbones/bert.h"
#include "wico/backbones/swin.h"
#include "wico/bottomup/backend.h"
#include "wico/io/pretrained.h"
#include "wico/nn/batch_norm.h"

namespace wico {
class Schema;
}

namespace wico::bottomup {

struct LavtOptions {
  backbones::SwinOptions swin = backbones::SwinOptions::base(12);
  backbones::BertOptions bert = [] {
    auto b = backbones::BertOptions::base();
    b.with_pooler = false;  // LAVT sets BERT's pooler to None
    return b;
  }();
  std::int64_t bert_train_layers = 10;  // -1: all of BERT, embeddings included
  std::vector<std::int64_t> fusion_heads = {1, 1, 1, 1};
  double fusion_dropout = 0.0;
  std::string loss = "ce";                   // ce (the original), bce or ce_dice
  std::vector<double> class_weights = {0.9, 1.1};  // ce: background, foreground
  std::string bert_mode = "eval";  // BERT's mode while training (the original: eval)
  std::string swin_pretrained, bert_pretrained;  // published weights ('' = none)
  static LavtOptions from_config(const Config& config);
};

// Queries from pixels, keys and values from words (LAVT's SpatialImageLanguageAttention).
class PixelWordAttentionImpl : public torch::nn::Module {
 public:
  PixelWordAttentionImpl(std::int64_t visual_dim, std::int64_t language_dim, std::int64_t key_dim,
                         std::int64_t value_dim, std::int64_t heads);
  // x [B, HW, Cv], words [B, Cl, L], word_mask [B, L, 1] (1 real) -> [B, HW, value_dim]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& words,
                        const torch::Tensor& word_mask);

 private:
  std::int64_t key_dim_, value_dim_, heads_;
  torch::nn::Sequential f_key_, f_query_, f_value_, W_;
};
TORCH_MODULE(PixelWordAttention);

// PWAM: vis_project(x) * attention(x, words), then project_mm.
class PwamImpl : public torch::nn::Module {
 public:
  PwamImpl(std::int64_t dim, std::int64_t language_dim, std::int64_t heads, double dropout);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& words,
                        const torch::Tensor& word_mask);

 private:
  torch::nn::Sequential vis_project_, project_mm_;
  PixelWordAttention image_lang_att_{nullptr};
};
TORCH_MODULE(Pwam);

// LAVT's SimpleDecoding: [c4, c3] -> hidden, + c2, + c1, each fusion conv3x3-BN-ReLU twice.
class LavtDecoderImpl : public torch::nn::Module {
 public:
  LavtDecoderImpl(std::int64_t c4_dims, std::int64_t factor = 2);
  // The features of stages 4, 3, 2, 1 -> E_p [B, hidden, H1, W1] (before the 1x1 classifier).
  torch::Tensor forward(torch::Tensor c4, const torch::Tensor& c3, const torch::Tensor& c2,
                        const torch::Tensor& c1);
  torch::nn::Conv2d classifier() const { return conv1_1_; }
  std::int64_t hidden() const { return hidden_; }

 private:
  torch::Tensor fuse(int level, torch::Tensor x, const torch::Tensor& skip);
  std::int64_t hidden_;
  std::vector<torch::nn::Conv2d> conv_a_, conv_b_;
  std::vector<wico::nn::BatchNorm> bn_a_, bn_b_;
  torch::nn::Conv2d conv1_1_{nullptr};
};
TORCH_MODULE(LavtDecoder);

// The lavt.* configuration keys (listed in src/bottomup/backends.cpp).
void add_lavt_keys(Schema& schema);

class LavtBackend : public BottomUpBackend, public io::PretrainedWeights {
 public:
  explicit LavtBackend(LavtOptions options);
  // Keeps BERT in evaluation mode when lavt.bert_mode is eval.
  void train(bool on = true) override;
  std::vector<io::ImportReport> load_pretrained() override;
  BottomUpOutput forward(const data::Batch& batch) override;
  at::Tensor decode(const at::Tensor& pixel_embeddings) override;
  at::Tensor loss(const at::Tensor& logits, const at::Tensor& targets) override;
  std::int64_t embedding_dim() const override { return decoder_->hidden(); }
  bool align_corners() const override { return true; }
  // The four stage features given images and words (for tests and the benchmark).
  std::vector<torch::Tensor> encode(const torch::Tensor& images, const torch::Tensor& token_ids,
                                    const torch::Tensor& attention_mask);

  backbones::SwinTransformer& swin() { return swin_; }
  backbones::BertModel& bert() { return bert_; }
  const LavtOptions& options() const { return options_; }

 private:
  LavtOptions options_;
  backbones::SwinTransformer swin_{nullptr};
  backbones::BertModel bert_{nullptr};
  std::vector<Pwam> fusion_;
  std::vector<torch::nn::Sequential> res_gate_;
  LavtDecoder decoder_{nullptr};
};

}  // namespace wico::bottomup
