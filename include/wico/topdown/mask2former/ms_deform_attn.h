// Multi-scale deformable attention (Zhu et al., Deformable DETR, ICLR 2021) as Mask2Former's
// ops/modules/ms_deform_attn.py. The sampling core runs on CPU as one fused pass over the
// samples (forward and backward, the original CUDA kernel's algorithm: each neighbour's channels
// read where they lie, no per-level copies; half types computed in float32); on other devices
// as the original's PyTorch reference ms_deform_attn_core_pytorch (one bilinear grid_sample per
// level, zero padding, align_corners=false). Both give the same numbers (tested
// against each other and against the original's reference).
//
// Parameter names are the original's: sampling_offsets.{weight,bias}, attention_weights.*,
// value_proj.*, output_proj.*.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <vector>

namespace wico::topdown {

// (H, W) of every level, in the order the levels are concatenated in the flattened input
// (the original's input_spatial_shapes; kept on the host so no device sync is needed).
using SpatialShapes = std::vector<std::array<std::int64_t, 2>>;

// Sum over levels and points of attention-weighted bilinear samples:
//   value [N, S, M, D] (S = sum H*W), sampling_locations [N, Lq, M, L, P, 2] as (x, y) in [0, 1]
//   (0: the first pixel's outer edge), attention_weights [N, Lq, M, L, P] -> [N, Lq, M*D].
// Samples outside the map read zeros.
at::Tensor ms_deform_attn_core(const at::Tensor& value, const SpatialShapes& shapes,
                               const at::Tensor& sampling_locations,
                               const at::Tensor& attention_weights);
// The layer's inference step from its raw outputs, as one pass on the CPU: each head's weights
// the softmax of its L*P attention logits, its locations reference + offsets / (W_l, H_l), then
// the core above. value [N, S, M, D], reference_points [N or 1, Lq, L, 2] as (x, y) in [0, 1],
// offsets [N, Lq, M, L, P, 2] in pixels of each level, attention_logits [N, Lq, M, L*P] ->
// [N, Lq, M*D]. With gradients, or off the CPU, or in half types: those steps as tensor
// operations (the same numbers).
at::Tensor ms_deform_attn_from_offsets(const at::Tensor& value, const SpatialShapes& shapes,
                                      const at::Tensor& reference_points,
                                      const at::Tensor& offsets,
                                      const at::Tensor& attention_logits);
// The same through grid_sample, as the original's ms_deform_attn_core_pytorch (any device and
// floating type grid_sample takes there); what ms_deform_attn_core runs off the CPU.
at::Tensor ms_deform_attn_core_reference(const at::Tensor& value, const SpatialShapes& shapes,
                                         const at::Tensor& sampling_locations,
                                         const at::Tensor& attention_weights);

struct MSDeformAttnOptions {
  std::int64_t d_model = 256;
  std::int64_t n_levels = 4;
  std::int64_t n_heads = 8;
  std::int64_t n_points = 4;  // per head and level
  void validate() const;      // ConfigError naming the bad value
};

class MSDeformAttnImpl : public torch::nn::Module {
 public:
  explicit MSDeformAttnImpl(MSDeformAttnOptions options);

  // query [N, Lq, C]; reference_points [N or 1, Lq, L, 2] as (x, y) in [0, 1], or [.., 4] boxes
  // (cx, cy, w, h) whose size scales the offsets; input_flatten [N, S, C]; padding_mask [N, S]
  // bool, true for padding (zeroes those values), may be undefined -> [N, Lq, C].
  at::Tensor forward(const at::Tensor& query, const at::Tensor& reference_points,
                     const at::Tensor& input_flatten, const SpatialShapes& shapes,
                     const at::Tensor& padding_mask = {});

  // The original's init: sampling_offsets weight 0 and bias head h's unit direction
  // (cos, sin)(2 pi h / M) scaled to the square's edge, times point index + 1; attention_weights
  // 0 (uniform softmax); value_proj and output_proj Xavier uniform, bias 0. The constructor
  // applies it.
  void reset_parameters();

  const MSDeformAttnOptions& options() const { return options_; }

  torch::nn::Linear sampling_offsets{nullptr};   // C -> M * L * P * 2
  torch::nn::Linear attention_weights{nullptr};  // C -> M * L * P (softmax over L * P)
  torch::nn::Linear value_proj{nullptr}, output_proj{nullptr};

 private:
  MSDeformAttnOptions options_;
};
TORCH_MODULE(MSDeformAttn);

}  // namespace wico::topdown
