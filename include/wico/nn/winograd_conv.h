// 3x3 stride-1 convolutions through oneDNN's Winograd F(4x4, 3x3) kernels, forward and backward.
//
// LibTorch's CPU convolutions run oneDNN's direct algorithm; for 3x3 kernels Winograd's minimal
// filtering does the same convolution with 2.25x fewer multiplications (36 instead of 144 per 4x4
// output tile and channel pair), at a relative error of about 1e-6 in float32. The decoders of the
// bottom-up backends spend half of their work in such convolutions at 1/4 resolution. The module
// keeps its torch::nn::Conv2d (same parameters, same names, same state dict); only the kernel
// that computes it changes, and every case Winograd cannot take (CUDA, other dtypes, strides,
// dilation, groups, shapes oneDNN rejects, a build without oneDNN) runs the module's own
// forward.
#pragma once

#include <torch/nn/modules/conv.h>

#include <cstdint>

namespace wico::nn {

// runtime.conv_algorithm (wico/core/runtime.h) chooses: auto (Winograd where oneDNN provides it on
// this CPU and the output has at least 24x24 pixels), direct (LibTorch's own kernel, as the
// Python originals run), winograd (wherever oneDNN accepts the shape).

// True when this build links oneDNN and oneDNN has a Winograd kernel for this CPU.
bool winograd_available();

// The convolution `conv` computes on x, through Winograd when the process-wide choice and the
// shape allow it, else through conv->forward(x). Differentiable in x and the weights (and bias).
torch::Tensor conv2d(const torch::nn::Conv2d& conv, const torch::Tensor& x);

// How many convolutions (forward passes) Winograd has computed in this process.
std::uint64_t winograd_forward_count();

// True when conv2d(conv, x) would run Winograd for this input.
bool uses_winograd(const torch::nn::Conv2d& conv, const torch::Tensor& x);

// Winograd directly: input [N, C, H, W] float32 on CPU, weight [O, C, 3, 3], padding 0 or 1 on
// every side, stride 1. Throws wico::Error when oneDNN cannot take it.
torch::Tensor winograd_conv3x3(const torch::Tensor& input, const torch::Tensor& weight,
                               const torch::Tensor& bias, std::int64_t padding);

}  // namespace wico::nn
