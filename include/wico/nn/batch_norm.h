// Batch norm over channels of [N, C, *] whose statistics can span all processes of a
// data-parallel run (train.batch_norm: sync). Same parameters and buffers as
// torch::nn::BatchNorm2d (weight, bias, running_mean, running_var, num_batches_tracked), so
// weights load by name either way. Models that want synchronisable batch norm use this module;
// the trainer installs the synchronising function for the run.
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <functional>

namespace wico::nn {

// (input, weight, bias, running_mean, running_var, momentum, eps) -> output, in training mode.
using BatchNormSync = std::function<at::Tensor(const at::Tensor&, const at::Tensor&,
                                               const at::Tensor&, at::Tensor, at::Tensor, double,
                                               double)>;

// Installs (or, with an empty function, removes) the process-wide synchronising function used by
// every BatchNorm in training mode. Not thread-safe: set it before training starts.
void set_batch_norm_sync(BatchNormSync sync);
bool batch_norm_is_synced();

class BatchNormImpl : public torch::nn::Module {
 public:
  explicit BatchNormImpl(std::int64_t channels, double eps = 1e-5, double momentum = 0.1);
  at::Tensor forward(const at::Tensor& input);

  at::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  double eps_, momentum_;
};
TORCH_MODULE(BatchNorm);

}  // namespace wico::nn
