// Linear layers (y = x W^T + b) with the inference-time matrix product on the backend
// runtime.linear_backend picks (wico/core/runtime.h): oneDNN's matmul on the operands as they
// lie (row-major x, the [out, in] weight read as its transpose, no reorders or layout copies;
// one primitive per shape, made once), or LibTorch's at::linear. Anything that needs a gradient
// (GradMode on and an operand requiring grad), CPU autocast, other devices and types, and builds
// without oneDNN take at::linear, so training is exactly LibTorch's.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/linear.h>

namespace wico::nn {

// True when the build has oneDNN (libdnnl-dev).
bool onednn_linear_available();
// True when wico::nn::linear sends inference products to oneDNN under the current backend
// setting (kAuto: this CPU has AVX-512).
bool linear_uses_onednn();

// x [..., in], weight [out, in], bias [out] or undefined -> [..., out].
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {});
// The same with a module's weight and bias (its forward, on the chosen backend).
at::Tensor linear(const at::Tensor& x, const torch::nn::Linear& layer);

// How many products oneDNN has run in this process (tests, benchmarks).
std::int64_t onednn_linear_calls();

}  // namespace wico::nn
