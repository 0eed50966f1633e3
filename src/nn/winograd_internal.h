// What the two Winograd implementations (winograd_conv.cpp: oneDNN's and the choice of kernel;
// winograd_gemm.cpp: ours) share. Not installed: include/wico/nn/winograd_conv.h is the API.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>

namespace wico::nn::detail {

// Forward passes either Winograd has computed (winograd_forward_count()).
std::atomic<std::uint64_t>& winograd_counter();

// Throws wico::Error, naming `caller` and the shapes, unless input is a float32 CPU [N, C, H, W]
// of at least 3x3 with the padding, weight a float32 CPU [O, C, 3, 3], bias a float32 [O] or
// undefined, and padding 0 or 1.
void check_conv3x3_arguments(const char* caller, const at::Tensor& input,
                             const at::Tensor& weight, const at::Tensor& bias,
                             std::int64_t padding);

}  // namespace wico::nn::detail
