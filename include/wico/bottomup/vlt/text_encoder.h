// VLT's text branch (henghuiding/Vision-Language-Transformer model/language_backbone.py; MCN's
// build_nlp_model): fixed word vectors -> a bidirectional GRU with the directions summed -> a
// per-channel softmax attention over the words for the sentence vector
// (../shared/specs/vlt.md section 2).
//
// KerasGru is Keras 2.3.1's GRU as VLT uses it: reset_after=False, activation tanh,
// recurrent_activation sigmoid, bias on (the input bias only), zero initial state, no masking
// (padded steps run through the recurrence like words). Per step, with the column blocks of
// `kernel` [in, 3u], `recurrent_kernel` [u, 3u] and `bias` [3u] ordered [z | r | h]:
//   z = sigmoid(x Wz + bz + h Uz), r = sigmoid(x Wr + br + h Ur),
//   h~ = tanh(x Wh + bh + (r * h) Uh), h' = z * h + (1 - z) * h~.
// The parameters keep Keras's names and layouts, so an h5 file's GRU weights load unchanged.
// Dropout (Keras's `dropout`, 0.1 in VLT) is one Bernoulli mask on the input per sequence and
// direction, the same at every step, in training only.
//
// VltTextEncoder: Bidirectional(GRU(units, return_sequences=True, dropout), merge_mode='sum')
// (the backward GRU reads the sequence from its end, pads first, and its outputs are put back in
// time order before the sum) gives fq_word [B, T, u]; the sentence vector is
// fq = sum_t softmax_t(Dropout(tanh(Dense(fq_word))))_t * fq_word_t, the softmax taken over the
// T steps separately for each channel, pads included.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

namespace wico::bottomup::vlt {

class KerasGruImpl : public torch::nn::Module {
 public:
  KerasGruImpl(std::int64_t input_dim, std::int64_t units, double dropout = 0.0);
  // x [B, T, input_dim] -> every step's state [B, T, units]; reverse: read from the last step
  // (the outputs stay in the order they were produced, as Keras's go_backwards).
  at::Tensor forward(const at::Tensor& x, bool reverse = false);
  // Keras's initialisers: glorot_uniform kernel, orthogonal recurrent kernel, zero bias.
  void reset_parameters();

  at::Tensor kernel, recurrent_kernel, bias;

 private:
  std::int64_t units_;
  double dropout_;
};
TORCH_MODULE(KerasGru);

struct VltTextOutput {
  at::Tensor words;     // fq_word [B, T, units]
  at::Tensor sentence;  // fq [B, units]
};

class VltTextEncoderImpl : public torch::nn::Module {
 public:
  // VLT: 300-d GloVe vectors, 1024 units, dropout 0.1.
  VltTextEncoderImpl(std::int64_t input_dim = 300, std::int64_t units = 1024,
                     double dropout = 0.1);
  // vectors [B, T, input_dim] (zero rows for pads and unknown words).
  VltTextOutput forward(const at::Tensor& vectors);

  KerasGru forward_gru{nullptr}, backward_gru{nullptr};
  torch::nn::Linear attention{nullptr};  // the word-attention Dense(units) before the tanh

 private:
  double dropout_;
};
TORCH_MODULE(VltTextEncoder);

}  // namespace wico::bottomup::vlt
