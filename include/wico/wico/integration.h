// How a pair's two results become one (the rows of the paper's Table 2): fixed rules on the
// branches' maps (intersection, union, average) or learned confidences (si: one value per
// branch; gsi: a Gaussian per branch, sampled in training).
#pragma once
#include <ATen/core/Tensor.h>

#include <string>

namespace wico::model {

enum class Integration { kIntersection, kUnion, kAverage, kScore, kGaussianScore };

// "intersection", "union", "average", "si", "gsi"; anything else is a ConfigError naming
// wico.integration and the choices.
Integration parse_integration(const std::string& name);
std::string integration_name(Integration integration);
// si and gsi learn per-branch confidences (score heads).
inline bool learns_confidences(Integration i) {
  return i == Integration::kScore || i == Integration::kGaussianScore;
}

// The fixed rules on two maps [B, 1, H, W] with values in [0, 1]: element-wise min (a pixel is
// foreground when both are), max, or mean.
at::Tensor combine_fixed(Integration integration, const at::Tensor& a, const at::Tensor& b);

}  // namespace wico::model
