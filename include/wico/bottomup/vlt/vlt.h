// VLT (Ding et al., ICCV 2021; henghuiding/Vision-Language-Transformer model/vlt_model.py and
// model/transfromer_model.py with keras-transformer 0.38; ../shared/specs/vlt.md sections 1-7):
// Darknet-53 with six YOLOv3 head CBLs (backbones/darknet.h) and the GloVe Bi-GRU text branch
// (text_encoder.h), then
//   fusion   MCN's simple fusion: Fv' = Fv0 + CBL3(CBL1(Fv0)), gated by the sentence,
//            Fm = LeakyReLU(BN(Fv' * LeakyReLU(BN1d(Dense(fq)))))            [B, J, S/32]
//   neck     up / pool / concat / 1x1 to the query input Q [B, J/2, S/16] and the transformer
//            input F_tf [B, d, S/16]
//   queries  the Query Generation Module: Q with coordinates -> 3 CBL3 -> Conv1 to Nq maps,
//            each flattened and projected to d (Dense over the S/16 x S/16 positions), then
//            attention of every query over the words (Dense+ReLU pre-projections, a Keras
//            multi-head attention with ReLU on all four projections) and a residual to the
//            query vectors
//   encoder / decoder  keras-transformer's post-norm layers (LayerNorm eps 1e-14, dropout on
//            each sublayer's output only, ReLU after every attention projection, causal decoder
//            self-attention), 1-d interleaved sine positions added once at each input
//   balance  the Query Balance Module: a sigmoid confidence per query scaling its output
//   head     each query's response as a map (Dense to the positions, ReLU), the Nq maps fused
//            by a CBL3, then CBL3 x2 and three x2 nearest upsamplings with a CBL3 after each,
//            and a 3x3 convolution to one logit at S/2.
// Every CBL is Darknet's (Keras BN eps 1e-3 / momentum 0.99, LeakyReLU 0.1); concat orders are
// the original's. Widths: J = the backbone's last width (32w: 1024), d = `hidden` (256); the neck's
// last CBL before the transformer projection is `tf_width` wide (256, a literal in the original).
//
// Module names are ours; io/name_maps.cpp's vlt_keras map gives each its Keras layer
// (conv2d_k / batch_normalization_k / dense_k / multi_head_attention_1 / Encoder-1-... ).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

#include "wico/backbones/darknet.h"
#include "wico/bottomup/vlt/text_encoder.h"

namespace wico::bottomup::vlt {

struct VltOptions {
  backbones::DarknetOptions darknet;  // width 32, blocks 1 2 8 8 4, 6 head CBLs, 56 frozen
  std::int64_t input_size = 416;      // the only size a trained model takes (Dense over S/16^2)
  std::int64_t word_dim = 300;        // GloVe
  std::int64_t rnn_units = 1024;      // the Bi-GRU (rnn_hidden_size)
  std::int64_t hidden = 256;          // hidden_dim = transformer_hidden_dim
  std::int64_t tf_width = 256;        // the neck CBL before the projection to `hidden`
  std::int64_t queries = 16;          // num_query
  std::int64_t heads = 8;
  std::int64_t encoder_layers = 2, decoder_layers = 2;
  std::int64_t ffn = 256;             // keras-transformer's FeedForward units (= hidden_dim)
  double dropout = 0.1;               // transformer sublayers
  double rnn_dropout = 0.1;           // the GRU's input mask and the word attention's dropout
  double layer_norm_eps = 1e-14;      // keras-layer-normalization: K.epsilon()^2
  std::int64_t output_stride = 2;     // seg_out_stride: 2, 4 or 8

  std::int64_t fusion_width() const { return darknet.stage_channels(4); }  // J (jemb_dim)
  std::int64_t feature_size() const { return input_size / 16; }           // 26 at 416
  std::int64_t positions() const { return feature_size() * feature_size(); }
  void validate() const;  // ConfigError naming the bad value
};

// Keras's MultiHeadAttention (keras-multi-head 0.28, activation relu): q, k, v and the output
// each Dense + ReLU, heads of hidden / heads channels (head h: channels [h * dh, (h + 1) * dh)),
// softmax(q k^T / sqrt(dh)); causal: keys after the query get -10000 before the softmax
// (keras-self-attention's history_only).
class KerasAttentionImpl : public torch::nn::Module {
 public:
  KerasAttentionImpl(std::int64_t dim, std::int64_t heads);
  // q [B, Lq, d], k and v [B, Lk, d] -> [B, Lq, d]
  at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     bool causal = false);
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, output{nullptr};

 private:
  std::int64_t heads_;
};
TORCH_MODULE(KerasAttention);

// keras-position-wise-feed-forward: ReLU(x W1 + b1) W2 + b2, no inner dropout.
class KerasFeedForwardImpl : public torch::nn::Module {
 public:
  KerasFeedForwardImpl(std::int64_t dim, std::int64_t units);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Linear inner{nullptr}, outer{nullptr};
};
TORCH_MODULE(KerasFeedForward);

class VltEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit VltEncoderLayerImpl(const VltOptions& o);
  at::Tensor forward(const at::Tensor& x);
  KerasAttention self_attention{nullptr};
  torch::nn::LayerNorm self_norm{nullptr};
  KerasFeedForward ffn{nullptr};
  torch::nn::LayerNorm ffn_norm{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(VltEncoderLayer);

class VltDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit VltDecoderLayerImpl(const VltOptions& o);
  at::Tensor forward(const at::Tensor& y, const at::Tensor& memory);
  KerasAttention self_attention{nullptr};   // causal
  torch::nn::LayerNorm self_norm{nullptr};
  KerasAttention cross_attention{nullptr};  // "MultiHeadQueryAttention"
  torch::nn::LayerNorm cross_norm{nullptr};
  KerasFeedForward ffn{nullptr};
  torch::nn::LayerNorm ffn_norm{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(VltDecoderLayer);

// keras-pos-embd's TrigPosEmbedding table [length, dim]: sin at even channels, cos at odd,
// PE[p, 2i] = sin(p / 10000^(2i / dim)), PE[p, 2i + 1] = cos(p / 10000^(2i / dim)).
at::Tensor vlt_positions(std::int64_t length, std::int64_t dim);

// Keras's concat_coord: x [B, C, H, W] -> [B, C + 6, H, W] with x, x, x, y, y, y appended,
// x = 2j / (W - 1) - 1 along the width, y = 2i / (H - 1) - 1 along the height.
at::Tensor vlt_concat_coord(const at::Tensor& x);

// Glorot-uniform kernels and zero biases for every Conv2d and Linear under `module`, Keras's
// defaults (fan_in = k^2 * in, fan_out = k^2 * out); BatchNorm and LayerNorm at 1 / 0. The
// attention and feed-forward layers, which Keras initialises glorot_normal (a normal truncated at
// 2 sigma, sigma = sqrt(2 / (fan_in + fan_out)) / 0.8796), get that.
void keras_initialize(torch::nn::Module& module);

struct VltOutput {
  at::Tensor pixel_embeddings;  // the last head CBL's output [B, hidden, S/2, S/2]
  at::Tensor logits;            // [B, 1, S/2, S/2]
  at::Tensor query_confidence;  // the QBM's [B, Nq]
};

class VltNetImpl : public torch::nn::Module {
 public:
  explicit VltNetImpl(VltOptions options);
  // images [B, 3, S, S], word vectors [B, T, word_dim] (zero rows for pads and unknown words).
  VltOutput forward(const at::Tensor& images, const at::Tensor& word_vectors);
  // The final 3x3 convolution: pixel embeddings -> logits.
  at::Tensor decode(const at::Tensor& pixel_embeddings);
  const VltOptions& options() const { return options_; }

  backbones::Darknet backbone{nullptr};
  VltTextEncoder text{nullptr};
  // fusion
  backbones::ConvBnLeaky fusion_reduce{nullptr}, fusion_expand{nullptr};
  torch::nn::Linear fusion_gate{nullptr};
  torch::nn::BatchNorm1d fusion_gate_norm{nullptr};
  torch::nn::BatchNorm2d fusion_norm{nullptr};
  // neck, in the original's creation order
  backbones::ConvBnLeaky mid_lateral{nullptr}, mid_out{nullptr}, query_lateral{nullptr},
      query_out{nullptr}, tf_reduce{nullptr}, tf_expand{nullptr}, tf_lateral{nullptr},
      tf_out{nullptr}, tf_proj{nullptr};
  // Query Generation Module
  torch::nn::ModuleList query_convs{nullptr};
  torch::nn::Conv2d query_maps{nullptr};
  torch::nn::Linear query_vectors{nullptr}, word_features{nullptr}, query_in{nullptr},
      key_in{nullptr}, value_in{nullptr};
  KerasAttention word_attention{nullptr};
  // transformer
  torch::nn::ModuleList encoder{nullptr}, decoder{nullptr};
  // Query Balance Module and responses
  torch::nn::Linear balance_query{nullptr}, balance_output{nullptr}, balance_fuse{nullptr},
      balance_confidence{nullptr}, responses{nullptr};
  // mask head: the Nq-map fusion CBL and the decoding CBLs, then the logit convolution
  torch::nn::ModuleList head{nullptr};
  torch::nn::Conv2d head_out{nullptr};

 private:
  VltOptions options_;
};
TORCH_MODULE(VltNet);

}  // namespace wico::bottomup::vlt
