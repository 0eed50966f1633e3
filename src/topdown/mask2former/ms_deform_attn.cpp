#include "wico/topdown/mask2former/ms_deform_attn.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/utils.h>

#include <cmath>
#include <string>
#include <utility>

#include "wico/core/error.h"

namespace wico::topdown {

at::Tensor ms_deform_attn_core(const at::Tensor& value, const SpatialShapes& shapes,
                               const at::Tensor& sampling_locations,
                               const at::Tensor& attention_weights) {
  WICO_CHECK(value.dim() == 4 && sampling_locations.dim() == 6 && attention_weights.dim() == 5,
             "ms_deform_attn_core: expected value [N, S, M, D], sampling_locations [N, Lq, M, L, P,"
             " 2] and attention_weights [N, Lq, M, L, P], got ",
             value.sizes(), ", ", sampling_locations.sizes(), ", ", attention_weights.sizes());
  const auto n = value.size(0), m = value.size(2), d = value.size(3);
  const auto lq = sampling_locations.size(1), levels = sampling_locations.size(3),
             points = sampling_locations.size(4);
  std::vector<std::int64_t> sizes;
  for (const auto& [h, w] : shapes) sizes.push_back(h * w);
  WICO_CHECK(static_cast<std::int64_t>(shapes.size()) == levels,
             "ms_deform_attn_core: ", shapes.size(), " spatial shapes for ", levels, " levels");
  const auto value_list = value.split_with_sizes(sizes, 1);  // checks that they sum to S
  const auto grids = sampling_locations * 2 - 1;             // grid_sample's [-1, 1]
  // [N, Lq, M, L, P] -> [N*M, 1, Lq, L, P]
  const auto weights = attention_weights.transpose(1, 2).reshape({n * m, 1, lq, levels, points});
  at::Tensor out;  // [N*M, D, Lq]
  for (std::int64_t l = 0; l < levels; ++l) {
    // [N, HW, M, D] -> [N*M, D, H, W]
    const auto value_l =
        value_list[l].flatten(2).transpose(1, 2).reshape({n * m, d, shapes[l][0], shapes[l][1]});
    // [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
    const auto grid_l = grids.select(3, l).transpose(1, 2).flatten(0, 1);
    // bilinear, zeros padding, align_corners=false -> [N*M, D, Lq, P]
    const auto sampled = at::grid_sampler(value_l, grid_l, 0, 0, false);
    // Weighted per level and accumulated: the original stacks all levels first, the same sum
    // in another order without the [N*M, D, Lq, L*P] copy.
    const auto part = (sampled * weights.select(3, l)).sum(-1);
    out = l == 0 ? part : out + part;
  }
  out = out.view({n, m * d, lq});
  return out.transpose(1, 2).contiguous();
}

void MSDeformAttnOptions::validate() const {
  auto fail = [](const std::string& what) { throw ConfigError("MSDeformAttn options: " + what); };
  if (d_model < 1 || n_levels < 1 || n_heads < 1 || n_points < 1) {
    fail("d_model (" + std::to_string(d_model) + "), n_levels (" + std::to_string(n_levels) +
         "), n_heads (" + std::to_string(n_heads) + ") and n_points (" + std::to_string(n_points) +
         ") must be positive");
  }
  if (d_model % n_heads != 0) {
    fail("d_model (" + std::to_string(d_model) + ") must be divisible by n_heads (" +
         std::to_string(n_heads) + ")");
  }
}

MSDeformAttnImpl::MSDeformAttnImpl(MSDeformAttnOptions options) : options_(std::move(options)) {
  options_.validate();
  const auto& o = options_;
  const auto samples = o.n_heads * o.n_levels * o.n_points;
  sampling_offsets = register_module("sampling_offsets", torch::nn::Linear(o.d_model, samples * 2));
  attention_weights = register_module("attention_weights", torch::nn::Linear(o.d_model, samples));
  value_proj = register_module("value_proj", torch::nn::Linear(o.d_model, o.d_model));
  output_proj = register_module("output_proj", torch::nn::Linear(o.d_model, o.d_model));
  reset_parameters();
}

void MSDeformAttnImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  const auto& o = options_;
  sampling_offsets->weight.zero_();
  const auto thetas =
      at::arange(o.n_heads, at::kFloat) * (2.0 * M_PI / static_cast<double>(o.n_heads));
  auto grid = at::stack({thetas.cos(), thetas.sin()}, -1);
  grid = (grid / std::get<0>(grid.abs().max(-1, /*keepdim=*/true)))
             .view({o.n_heads, 1, 1, 2})
             .repeat({1, o.n_levels, o.n_points, 1});
  for (std::int64_t i = 0; i < o.n_points; ++i) {
    grid.select(2, i).mul_(static_cast<double>(i + 1));
  }
  sampling_offsets->bias.copy_(grid.view(-1));
  attention_weights->weight.zero_();
  attention_weights->bias.zero_();
  torch::nn::init::xavier_uniform_(value_proj->weight);
  value_proj->bias.zero_();
  torch::nn::init::xavier_uniform_(output_proj->weight);
  output_proj->bias.zero_();
}

at::Tensor MSDeformAttnImpl::forward(const at::Tensor& query, const at::Tensor& reference_points,
                                     const at::Tensor& input_flatten, const SpatialShapes& shapes,
                                     const at::Tensor& padding_mask) {
  const auto& o = options_;
  WICO_CHECK(query.dim() == 3 && query.size(2) == o.d_model && input_flatten.dim() == 3 &&
                 input_flatten.size(2) == o.d_model && input_flatten.size(0) == query.size(0),
             "MSDeformAttn: expected query [N, Lq, ", o.d_model, "] and input [N, S, ", o.d_model,
             "], got ", query.sizes(), " and ", input_flatten.sizes());
  WICO_CHECK(static_cast<std::int64_t>(shapes.size()) == o.n_levels,
             "MSDeformAttn: ", shapes.size(), " spatial shapes for n_levels ", o.n_levels);
  std::int64_t total = 0;
  for (const auto& [h, w] : shapes) total += h * w;
  WICO_CHECK(total == input_flatten.size(1), "MSDeformAttn: the spatial shapes cover ", total,
             " positions, the input has ", input_flatten.size(1));
  const auto ref_dim = reference_points.size(-1);
  WICO_CHECK(reference_points.dim() == 4 && reference_points.size(1) == query.size(1) &&
                 reference_points.size(2) == o.n_levels && (ref_dim == 2 || ref_dim == 4),
             "MSDeformAttn: expected reference_points [N, ", query.size(1), ", ", o.n_levels,
             ", 2 or 4], got ", reference_points.sizes());

  const auto n = query.size(0), lq = query.size(1), s = input_flatten.size(1);
  auto value = value_proj->forward(input_flatten);
  if (padding_mask.defined()) value = value.masked_fill(padding_mask.unsqueeze(-1), 0.0);
  value = value.view({n, s, o.n_heads, o.d_model / o.n_heads});
  const auto offsets =
      sampling_offsets->forward(query).view({n, lq, o.n_heads, o.n_levels, o.n_points, 2});
  const auto weights = attention_weights->forward(query)
                           .view({n, lq, o.n_heads, o.n_levels * o.n_points})
                           .softmax(-1)
                           .view({n, lq, o.n_heads, o.n_levels, o.n_points});
  // reference_points[:, :, None, :, None, :]
  const auto ref = reference_points.unsqueeze(2).unsqueeze(4);
  at::Tensor locations;
  if (ref_dim == 2) {
    // Offsets are in pixels of each level: divide by its (W, H).
    std::vector<float> wh;
    for (const auto& [h, w] : shapes) {
      wh.push_back(static_cast<float>(w));
      wh.push_back(static_cast<float>(h));
    }
    const auto normalizer = at::tensor(wh, offsets.options()).view({1, 1, 1, o.n_levels, 1, 2});
    locations = ref + offsets / normalizer;
  } else {
    locations = ref.narrow(-1, 0, 2) +
                offsets / static_cast<double>(o.n_points) * ref.narrow(-1, 2, 2) * 0.5;
  }
  return output_proj->forward(ms_deform_attn_core(value, shapes, locations, weights));
}

}  // namespace wico::topdown
