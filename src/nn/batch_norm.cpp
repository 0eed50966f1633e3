#include "wico/nn/batch_norm.h"

#include <ATen/ATen.h>

namespace wico::nn {

namespace {

BatchNormSync& sync_function() {
  static BatchNormSync sync;
  return sync;
}

}  // namespace

void set_batch_norm_sync(BatchNormSync sync) { sync_function() = std::move(sync); }

bool batch_norm_is_synced() { return static_cast<bool>(sync_function()); }

BatchNormImpl::BatchNormImpl(std::int64_t channels, double eps, double momentum)
    : eps_(eps), momentum_(momentum) {
  weight = register_parameter("weight", at::ones({channels}));
  bias = register_parameter("bias", at::zeros({channels}));
  running_mean = register_buffer("running_mean", at::zeros({channels}));
  running_var = register_buffer("running_var", at::ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", at::zeros({}, at::kLong));
}

at::Tensor BatchNormImpl::forward(const at::Tensor& input) {
  if (is_training()) {
    num_batches_tracked.add_(1);
    if (sync_function()) {
      return sync_function()(input, weight, bias, running_mean, running_var, momentum_, eps_);
    }
  }
  return at::batch_norm(input, weight, bias, running_mean, running_var, is_training(), momentum_,
                        eps_, /*cudnn_enabled=*/true);
}

}  // namespace wico::nn
