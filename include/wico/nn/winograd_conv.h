// 3x3 stride-1 convolutions through Winograd's minimal filtering F(4x4, 3x3), forward and
// backward: the same convolution with 4x fewer multiplications (36 instead of 144 per 4x4 output
// tile and channel pair), at a relative error of about 1e-6 in float32. The decoders of the
// bottom-up backends spend half of their work in such convolutions at 1/4 resolution.
//
// Two implementations: our own (winograd_gemm.cpp: tile transforms in plain loops and 36 matrix
// products through the BLAS, on any CPU) and oneDNN's Winograd kernels (AVX-512 CPUs only). The
// module keeps its torch::nn::Conv2d (same parameters, same names, same state dict); only the
// kernel that computes it changes, and every case Winograd cannot take (CUDA, other dtypes,
// strides, dilation, groups, other paddings) runs the module's own forward.
#pragma once

#include <torch/nn/modules/conv.h>

#include <cstdint>

namespace wico::nn {

// runtime.conv_algorithm (wico/core/runtime.h) chooses between them and LibTorch's direct kernel.
enum class ConvKernel { kDirect, kWinograd, kOneDnnWinograd };

// True when this build links oneDNN and oneDNN has a Winograd kernel for this CPU.
bool onednn_winograd_available();

// The kernel conv2d(conv, x) runs for this input under the process-wide choice.
ConvKernel conv_kernel_for(const torch::nn::Conv2d& conv, const torch::Tensor& x);
bool uses_winograd(const torch::nn::Conv2d& conv, const torch::Tensor& x);  // either Winograd

// The convolution `conv` computes on x, through the kernel conv_kernel_for picks. Differentiable
// in x, the weights and the bias.
torch::Tensor conv2d(const torch::nn::Conv2d& conv, const torch::Tensor& x);

// How many convolutions (forward passes) either Winograd has computed in this process.
std::uint64_t winograd_forward_count();

// Our Winograd directly: input [N, C, H, W] float32 on CPU, weight [O, C, 3, 3], bias [O] or
// undefined, padding 0 or 1 on every side, stride 1. Throws wico::Error naming the shapes
// otherwise.
torch::Tensor winograd_conv3x3(const torch::Tensor& input, const torch::Tensor& weight,
                               const torch::Tensor& bias, std::int64_t padding);

// oneDNN's Winograd directly, same contract; throws wico::Error when oneDNN cannot take it.
torch::Tensor onednn_winograd_conv3x3(const torch::Tensor& input, const torch::Tensor& weight,
                                      const torch::Tensor& bias, std::int64_t padding);

}  // namespace wico::nn
