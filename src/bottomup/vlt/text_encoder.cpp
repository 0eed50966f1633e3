#include "wico/bottomup/vlt/text_encoder.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>
#include <vector>

#include "wico/core/error.h"

namespace wico::bottomup::vlt {

KerasGruImpl::KerasGruImpl(std::int64_t input_dim, std::int64_t units, double dropout)
    : units_(units), dropout_(dropout) {
  WICO_CHECK(input_dim > 0 && units > 0 && dropout >= 0 && dropout < 1,
             "KerasGru: input_dim and units must be positive and dropout in [0, 1), got ",
             input_dim, ", ", units, ", ", dropout);
  kernel = register_parameter("kernel", at::empty({input_dim, 3 * units}));
  recurrent_kernel = register_parameter("recurrent_kernel", at::empty({units, 3 * units}));
  bias = register_parameter("bias", at::empty({3 * units}));
  reset_parameters();
}

void KerasGruImpl::reset_parameters() {
  const at::NoGradGuard no_grad;
  // glorot_uniform over the whole [in, 3u] kernel (fan_in = in, fan_out = 3u).
  const double limit = std::sqrt(6.0 / static_cast<double>(kernel.size(0) + kernel.size(1)));
  kernel.uniform_(-limit, limit);
  // Keras's orthogonal initialiser on the [u, 3u] matrix: orthonormal rows.
  torch::nn::init::orthogonal_(recurrent_kernel);
  bias.zero_();
}

at::Tensor KerasGruImpl::forward(const at::Tensor& x, bool reverse) {
  WICO_CHECK(x.dim() == 3 && x.size(2) == kernel.size(0), "KerasGru expects [B, T, ",
             kernel.size(0), "], got ", x.sizes());
  const std::int64_t b = x.size(0), steps = x.size(1), u = units_;
  at::Tensor input = x;
  if (is_training() && dropout_ > 0) {
    // One mask per sequence, shared by every step.
    const at::Tensor keep = at::empty({b, 1, x.size(2)}, x.options()).bernoulli_(1.0 - dropout_);
    input = x * keep / (1.0 - dropout_);
  }
  const at::Tensor projected = at::matmul(input, kernel) + bias;  // [B, T, 3u]: x W + b
  const at::Tensor u_zr = recurrent_kernel.narrow(1, 0, 2 * u);
  const at::Tensor u_h = recurrent_kernel.narrow(1, 2 * u, u);
  at::Tensor h = at::zeros({b, u}, x.options());
  std::vector<at::Tensor> states;
  states.reserve(static_cast<std::size_t>(steps));
  for (std::int64_t i = 0; i < steps; ++i) {
    const std::int64_t t = reverse ? steps - 1 - i : i;
    const at::Tensor xt = projected.select(1, t);
    const at::Tensor zr = at::sigmoid(xt.narrow(1, 0, 2 * u) + at::matmul(h, u_zr));
    const at::Tensor z = zr.narrow(1, 0, u), r = zr.narrow(1, u, u);
    const at::Tensor candidate = at::tanh(xt.narrow(1, 2 * u, u) + at::matmul(r * h, u_h));
    h = z * h + (1 - z) * candidate;
    states.push_back(h);
  }
  return at::stack(states, 1);
}

VltTextEncoderImpl::VltTextEncoderImpl(std::int64_t input_dim, std::int64_t units, double dropout)
    : dropout_(dropout) {
  forward_gru = register_module("forward_gru", KerasGru(input_dim, units, dropout));
  backward_gru = register_module("backward_gru", KerasGru(input_dim, units, dropout));
  attention = register_module("attention", torch::nn::Linear(units, units));
}

VltTextOutput VltTextEncoderImpl::forward(const at::Tensor& vectors) {
  VltTextOutput out;
  // Keras's Bidirectional reverses the backward layer's outputs back to time order.
  out.words = forward_gru->forward(vectors) + backward_gru->forward(vectors, true).flip({1});
  at::Tensor scores = at::tanh(attention->forward(out.words));
  if (is_training() && dropout_ > 0) scores = at::dropout(scores, dropout_, true);
  const at::Tensor weights = at::softmax(scores, 1);  // over the steps, per channel
  out.sentence = (weights * out.words).sum(1);
  return out;
}

}  // namespace wico::bottomup::vlt
