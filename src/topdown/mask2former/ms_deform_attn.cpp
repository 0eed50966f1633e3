#include "wico/topdown/mask2former/ms_deform_attn.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/autograd.h>
#include <torch/nn/init.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <utility>

#include "wico/core/cpu_features.h"
#include "wico/core/error.h"
#include "wico/nn/linear.h"

namespace wico::topdown {

namespace {

void check_core_shapes(const char* who, const at::Tensor& value, const SpatialShapes& shapes,
                       const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  WICO_CHECK(value.dim() == 4 && sampling_locations.dim() == 6 && attention_weights.dim() == 5, who,
             ": expected value [N, S, M, D], sampling_locations [N, Lq, M, L, P, 2] and "
             "attention_weights [N, Lq, M, L, P], got ",
             value.sizes(), ", ", sampling_locations.sizes(), ", ", attention_weights.sizes());
  const auto n = value.size(0), m = value.size(2), levels = sampling_locations.size(3);
  WICO_CHECK(sampling_locations.size(0) == n && sampling_locations.size(2) == m &&
                 sampling_locations.size(5) == 2 &&
                 attention_weights.sizes() == sampling_locations.sizes().slice(0, 5),
             who, ": sampling_locations ", sampling_locations.sizes(), " and attention_weights ",
             attention_weights.sizes(), " do not fit value ", value.sizes());
  WICO_CHECK(static_cast<std::int64_t>(shapes.size()) == levels, who, ": ", shapes.size(),
             " spatial shapes for ", levels, " levels");
  std::int64_t total = 0;
  for (const auto& [h, w] : shapes) total += h * w;
  WICO_CHECK(total == value.size(1), who, ": the spatial shapes cover ", total,
             " positions, value has ", value.size(1));
}

// The sizes the fused kernels index with.
struct CoreGeometry {
  std::int64_t n, s, m, d, lq, levels, points;
  std::vector<std::int64_t> height, width, start;
};

CoreGeometry geometry_of(const at::Tensor& value, const SpatialShapes& shapes,
                         const at::Tensor& locations) {
  CoreGeometry g{value.size(0),
                 value.size(1),
                 value.size(2),
                 value.size(3),
                 locations.size(1),
                 locations.size(3),
                 locations.size(4),
                 {},
                 {},
                 {}};
  std::int64_t offset = 0;
  for (const auto& [h, w] : shapes) {
    g.height.push_back(h);
    g.width.push_back(w);
    g.start.push_back(offset);
    offset += h * w;
  }
  return g;
}

// One bilinear sample as grid_sample (align_corners=false, zero padding) and the original's
// CUDA kernel take it: pixel coordinates loc * size - 0.5, the four neighbours' weights, each
// neighbour outside the map read as zero. Calls visit(row, col, weight, d_weight/dx, d_weight/dy)
// for the neighbours inside; false when the point is too far out to touch any.
template <typename T, typename Visit>
inline bool for_each_neighbour(T loc_x, T loc_y, std::int64_t h, std::int64_t w, Visit&& visit) {
  const T x = loc_x * static_cast<T>(w) - T(0.5), y = loc_y * static_cast<T>(h) - T(0.5);
  if (!(x > T(-1) && y > T(-1) && x < static_cast<T>(w) && y < static_cast<T>(h))) return false;
  const T fx = std::floor(x), fy = std::floor(y);
  const auto x0 = static_cast<std::int64_t>(fx), y0 = static_cast<std::int64_t>(fy);
  const T lx = x - fx, ly = y - fy, hx = T(1) - lx, hy = T(1) - ly;
  const bool left = x0 >= 0, right = x0 + 1 < w, top = y0 >= 0, bottom = y0 + 1 < h;
  if (top && left) visit(y0, x0, hy * hx, -hy, -hx);
  if (top && right) visit(y0, x0 + 1, hy * lx, hy, -lx);
  if (bottom && left) visit(y0 + 1, x0, ly * hx, -ly, hx);
  if (bottom && right) visit(y0 + 1, x0 + 1, ly * lx, ly, lx);
  return true;
}

// o[:] = sum over levels and points of att * bilinear sample of value[n, :, m, :] at loc: one
// pass over the samples reading each neighbour's D channels where they lie (channels last),
// instead of a grid_sample per level over a [N*M, D, H, W] copy and a weighted sum after it.
// (Measured at paper size: running one head at a time over a head-major copy for cache locality
// gained nothing; the fixed-width AVX2 clone below is what does.)
template <typename T>
inline void sample_head(const CoreGeometry& g, const T* value, std::int64_t n, std::int64_t m,
                        const T* loc, const T* att, T* o) {
  std::fill(o, o + g.d, T(0));
  for (std::int64_t l = 0; l < g.levels; ++l) {
    const std::int64_t h = g.height[l], w = g.width[l];
    const T* base = value + ((n * g.s + g.start[l]) * g.m + m) * g.d;
    for (std::int64_t p = 0; p < g.points; ++p) {
      const std::int64_t i = l * g.points + p;
      const T a = att[i];
      for_each_neighbour(loc[2 * i], loc[2 * i + 1], h, w,
                         [&](std::int64_t r, std::int64_t c, T bw, T, T) {
                           const T* v = base + (r * w + c) * g.m * g.d;
                           const T k = a * bw;
                           for (std::int64_t j = 0; j < g.d; ++j) o[j] += k * v[j];
                         });
    }
  }
}

// One query's softmax weights and sampling locations of one head, from its L * P attention logits
// and pixel offsets and its reference point of each level.
template <typename T>
inline void weights_and_locations(const CoreGeometry& g, const T* ref, const T* z, const T* off,
                                  T* att, T* loc) {
  const std::int64_t samples = g.levels * g.points;
  const T top = *std::max_element(z, z + samples);
  T total = 0;
  for (std::int64_t i = 0; i < samples; ++i) total += att[i] = std::exp(z[i] - top);
  for (std::int64_t i = 0; i < samples; ++i) att[i] /= total;
  for (std::int64_t l = 0; l < g.levels; ++l) {
    const T w = static_cast<T>(g.width[l]), h = static_cast<T>(g.height[l]);
    for (std::int64_t p = 0; p < g.points; ++p) {
      const std::int64_t i = l * g.points + p;
      loc[2 * i] = ref[2 * l] + off[2 * i] / w;
      loc[2 * i + 1] = ref[2 * l + 1] + off[2 * i + 1] / h;
    }
  }
}

// sample_head with the head width fixed at compile time: the output accumulates in registers
// instead of memory the compiler must assume the value rows may alias.
template <typename T, int D>
inline void sample_head_fixed(const CoreGeometry& g, const T* value, std::int64_t n, std::int64_t m,
                              const T* loc, const T* att, T* o) {
  T acc[D] = {};
  for (std::int64_t l = 0; l < g.levels; ++l) {
    const std::int64_t h = g.height[l], w = g.width[l];
    const T* base = value + ((n * g.s + g.start[l]) * g.m + m) * D;
    for (std::int64_t p = 0; p < g.points; ++p) {
      const std::int64_t i = l * g.points + p;
      const T a = att[i];
      for_each_neighbour(loc[2 * i], loc[2 * i + 1], h, w,
                         [&](std::int64_t r, std::int64_t c, T bw, T, T) {
                           const T* v = base + (r * w + c) * g.m * D;
                           const T k = a * bw;
                           for (int j = 0; j < D; ++j) acc[j] += k * v[j];
                         });
    }
  }
  std::copy(acc, acc + D, o);
}

// Queries [begin, end) of deform_forward_from_offsets (kHeadWidth > 0: that head width fixed).
template <typename T, int kHeadWidth>
inline void forward_from_offsets_range(const CoreGeometry& g, const T* value, const T* reference,
                                       std::int64_t reference_rows, const T* offsets,
                                       const T* logits, T* out, std::int64_t begin,
                                       std::int64_t end) {
  const std::int64_t samples = g.levels * g.points;
  std::vector<T> loc(static_cast<std::size_t>(samples * 2)), att(static_cast<std::size_t>(samples));
  for (std::int64_t nq = begin; nq < end; ++nq) {
    const std::int64_t n = nq / g.lq, q = nq % g.lq;
    const T* ref = reference + ((reference_rows == 1 ? 0 : n) * g.lq + q) * g.levels * 2;
    for (std::int64_t m = 0; m < g.m; ++m) {
      const std::int64_t head = nq * g.m + m;
      weights_and_locations(g, ref, logits + head * samples, offsets + head * samples * 2,
                            att.data(), loc.data());
      if constexpr (kHeadWidth > 0) {
        sample_head_fixed<T, kHeadWidth>(g, value, n, m, loc.data(), att.data(),
                                         out + head * g.d);
      } else {
        sample_head(g, value, n, m, loc.data(), att.data(), out + head * g.d);
      }
    }
  }
}

// Queries [begin, end) of deform_forward, from given sampling locations and weights.
template <typename T, int kHeadWidth>
inline void forward_range(const CoreGeometry& g, const T* value, const T* locations,
                          const T* weights, T* out, std::int64_t begin, std::int64_t end) {
  const std::int64_t samples = g.levels * g.points;
  for (std::int64_t nq = begin; nq < end; ++nq) {
    for (std::int64_t m = 0; m < g.m; ++m) {
      const std::int64_t head = nq * g.m + m;
      const T* loc = locations + head * samples * 2;
      const T* att = weights + head * samples;
      if constexpr (kHeadWidth > 0) {
        sample_head_fixed<T, kHeadWidth>(g, value, nq / g.lq, m, loc, att, out + head * g.d);
      } else {
        sample_head(g, value, nq / g.lq, m, loc, att, out + head * g.d);
      }
    }
  }
}

// The paper's head width (256 / 8 heads) in float, compiled for AVX2 + FMA as well: the baseline
// x86-64 build's 4-wide SSE arithmetic bounded the sampling pass (measured: 1.7x the time of
// this clone on an AVX-512 EPYC). Chosen at run time by what the CPU supports.
#ifdef WICO_X86_TARGET_CLONES
__attribute__((target("avx2,fma"))) void forward_from_offsets_range_avx2(
    const CoreGeometry& g, const float* value, const float* reference,
    std::int64_t reference_rows, const float* offsets, const float* logits, float* out,
    std::int64_t begin, std::int64_t end) {
  forward_from_offsets_range<float, 32>(g, value, reference, reference_rows, offsets, logits, out,
                                        begin, end);
}

__attribute__((target("avx2,fma"))) void forward_range_avx2(const CoreGeometry& g,
                                                             const float* value,
                                                             const float* locations,
                                                             const float* weights, float* out,
                                                             std::int64_t begin,
                                                             std::int64_t end) {
  forward_range<float, 32>(g, value, locations, weights, out, begin, end);
}

#endif

// out[n, q, m, :] for every image, query and head from sampling locations and weights.
template <typename T>
void deform_forward(const CoreGeometry& g, const T* value, const T* locations, const T* weights,
                    T* out) {
  at::parallel_for(0, g.n * g.lq, 16, [&](std::int64_t begin, std::int64_t end) {
    if constexpr (std::is_same_v<T, float>) {
      if (g.d == 32) {
#ifdef WICO_X86_TARGET_CLONES
        if (cpu_has_avx2_fma()) {
          forward_range_avx2(g, value, locations, weights, out, begin, end);
          return;
        }
#endif
        forward_range<float, 32>(g, value, locations, weights, out, begin, end);
        return;
      }
    }
    forward_range<T, 0>(g, value, locations, weights, out, begin, end);
  });
}

// The same from the layer's raw outputs: each head's weights the softmax of its L * P logits, its
// locations the query's reference point plus the offsets in pixels of each level, both made
// per head in a few registers' worth of scratch instead of [N, Lq, M, L, P] tensors.
// reference [N or 1, Lq, L, 2] (rows = 1: shared by the images).
template <typename T>
void deform_forward_from_offsets(const CoreGeometry& g, const T* value, const T* reference,
                                 std::int64_t reference_rows, const T* offsets, const T* logits,
                                 T* out) {
  at::parallel_for(0, g.n * g.lq, 16, [&](std::int64_t begin, std::int64_t end) {
    if constexpr (std::is_same_v<T, float>) {
      if (g.d == 32) {
#ifdef WICO_X86_TARGET_CLONES
        if (cpu_has_avx2_fma()) {
          forward_from_offsets_range_avx2(g, value, reference, reference_rows, offsets, logits,
                                          out, begin, end);
          return;
        }
#endif
        forward_from_offsets_range<float, 32>(g, value, reference, reference_rows, offsets,
                                              logits, out, begin, end);
        return;
      }
    }
    forward_from_offsets_range<T, 0>(g, value, reference, reference_rows, offsets, logits, out,
                                     begin, end);
  });
}

// The gradients of deform_forward. Work is split by (image, head): a head's value slice is
// written by that head's samples only, so the scatter into grad_value needs no atomics.
template <typename T>
void deform_backward(const CoreGeometry& g, const T* value, const T* locations, const T* weights,
                     const T* grad_out, T* grad_value, T* grad_locations, T* grad_weights) {
  const std::int64_t samples = g.levels * g.points;
  at::parallel_for(0, g.n * g.m, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t nm = begin; nm < end; ++nm) {
      const std::int64_t n = nm / g.m, m = nm % g.m;
      for (std::int64_t q = 0; q < g.lq; ++q) {
        const std::int64_t head = (n * g.lq + q) * g.m + m;
        const T* go = grad_out + head * g.d;
        const T* loc = locations + head * samples * 2;
        const T* att = weights + head * samples;
        T* gloc = grad_locations + head * samples * 2;
        T* gatt = grad_weights + head * samples;
        for (std::int64_t l = 0; l < g.levels; ++l) {
          const std::int64_t h = g.height[l], w = g.width[l];
          const std::int64_t offset = ((n * g.s + g.start[l]) * g.m + m) * g.d;
          for (std::int64_t p = 0; p < g.points; ++p) {
            const std::int64_t i = l * g.points + p;
            const T a = att[i];
            T sampled_dot = 0, d_dx = 0, d_dy = 0;  // <grad, sample> and its x, y derivatives
            for_each_neighbour(loc[2 * i], loc[2 * i + 1], h, w,
                               [&](std::int64_t r, std::int64_t c, T bw, T dbw_dx, T dbw_dy) {
                                 const std::int64_t at_cell = offset + (r * w + c) * g.m * g.d;
                                 const T* v = value + at_cell;
                                 T* gv = grad_value + at_cell;
                                 const T k = a * bw;
                                 T dot = 0;
                                 for (std::int64_t j = 0; j < g.d; ++j) {
                                   dot += go[j] * v[j];
                                   gv[j] += k * go[j];
                                 }
                                 sampled_dot += bw * dot;
                                 d_dx += dbw_dx * dot;
                                 d_dy += dbw_dy * dot;
                               });
            gatt[i] = sampled_dot;
            gloc[2 * i] = a * d_dx * static_cast<T>(w);
            gloc[2 * i + 1] = a * d_dy * static_cast<T>(h);
          }
        }
      }
    }
  });
}

SpatialShapes shapes_from(const std::vector<std::int64_t>& flat) {
  SpatialShapes shapes;
  for (std::size_t i = 0; i + 1 < flat.size(); i += 2) shapes.push_back({flat[i], flat[i + 1]});
  return shapes;
}

at::Tensor fused_forward(const at::Tensor& value, const SpatialShapes& shapes,
                         const at::Tensor& locations, const at::Tensor& weights) {
  const CoreGeometry g = geometry_of(value, shapes, locations);
  at::Tensor out = at::empty({g.n, g.lq, g.m * g.d}, value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward", [&] {
    deform_forward<scalar_t>(g, value.data_ptr<scalar_t>(), locations.data_ptr<scalar_t>(),
                             weights.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
  });
  return out;
}

// Autograd for the fused kernels (the values, locations and weights all get gradients).
struct FusedDeformAttn : torch::autograd::Function<FusedDeformAttn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& value,
                            const at::Tensor& locations, const at::Tensor& weights,
                            const std::vector<std::int64_t>& flat_shapes) {
    ctx->save_for_backward({value, locations, weights});
    ctx->saved_data["shapes"] = flat_shapes;
    return fused_forward(value, shapes_from(flat_shapes), locations, weights);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &value = saved[0], &locations = saved[1], &weights = saved[2];
    const SpatialShapes shapes = shapes_from(ctx->saved_data["shapes"].toIntVector());
    const CoreGeometry g = geometry_of(value, shapes, locations);
    const at::Tensor grad_out = grads[0].contiguous();
    at::Tensor grad_value = at::zeros_like(value);
    at::Tensor grad_locations = at::empty_like(locations);
    at::Tensor grad_weights = at::empty_like(weights);
    AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward", [&] {
      deform_backward<scalar_t>(g, value.data_ptr<scalar_t>(), locations.data_ptr<scalar_t>(),
                                weights.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(),
                                grad_value.data_ptr<scalar_t>(),
                                grad_locations.data_ptr<scalar_t>(),
                                grad_weights.data_ptr<scalar_t>());
    });
    return {grad_value, grad_locations, grad_weights, at::Tensor()};
  }
};

}  // namespace

at::Tensor ms_deform_attn_core(const at::Tensor& value, const SpatialShapes& shapes,
                               const at::Tensor& sampling_locations,
                               const at::Tensor& attention_weights) {
  check_core_shapes("ms_deform_attn_core", value, shapes, sampling_locations, attention_weights);
  RECORD_FUNCTION("wico::ms_deform_attn_core", std::vector<c10::IValue>());
  const bool on_cpu = value.device().is_cpu() && sampling_locations.device().is_cpu() &&
                      attention_weights.device().is_cpu();
  if (!on_cpu) {
    return ms_deform_attn_core_reference(value, shapes, sampling_locations, attention_weights);
  }
  const auto type = value.scalar_type();
  if (type != at::kFloat && type != at::kDouble) {
    // Half types (grid_sample has no CPU kernel for them) sample in float32.
    return ms_deform_attn_core(value.to(at::kFloat), shapes, sampling_locations.to(at::kFloat),
                               attention_weights.to(at::kFloat))
        .to(type);
  }
  const at::Tensor v = value.contiguous(), loc = sampling_locations.to(type).contiguous(),
                   att = attention_weights.to(type).contiguous();
  const bool needs_grad = at::GradMode::is_enabled() &&
                          (v.requires_grad() || loc.requires_grad() || att.requires_grad());
  if (!needs_grad) return fused_forward(v, shapes, loc, att);
  std::vector<std::int64_t> flat;
  for (const auto& [h, w] : shapes) {
    flat.push_back(h);
    flat.push_back(w);
  }
  return FusedDeformAttn::apply(v, loc, att, flat);
}

at::Tensor ms_deform_attn_from_offsets(const at::Tensor& value, const SpatialShapes& shapes,
                                       const at::Tensor& reference_points,
                                       const at::Tensor& offsets,
                                       const at::Tensor& attention_logits) {
  WICO_CHECK(offsets.dim() == 6 && attention_logits.dim() == 4 && reference_points.dim() == 4 &&
                 reference_points.size(-1) == 2,
             "ms_deform_attn_from_offsets: expected offsets [N, Lq, M, L, P, 2], attention logits "
             "[N, Lq, M, L*P] and reference points [N or 1, Lq, L, 2], got ",
             offsets.sizes(), ", ", attention_logits.sizes(), " and ", reference_points.sizes());
  const auto n = offsets.size(0), lq = offsets.size(1), m = offsets.size(2),
             levels = offsets.size(3), points = offsets.size(4);
  WICO_CHECK(attention_logits.sizes() == at::IntArrayRef({n, lq, m, levels * points}) &&
                 (reference_points.size(0) == 1 || reference_points.size(0) == n) &&
                 reference_points.size(1) == lq && reference_points.size(2) == levels,
             "ms_deform_attn_from_offsets: attention logits ", attention_logits.sizes(),
             " and reference points ", reference_points.sizes(), " do not fit offsets ",
             offsets.sizes());
  std::int64_t total = 0;
  for (const auto& [h, w] : shapes) total += h * w;
  WICO_CHECK(value.dim() == 4 && value.size(0) == n && value.size(2) == m &&
                 value.size(1) == total && static_cast<std::int64_t>(shapes.size()) == levels,
             "ms_deform_attn_from_offsets: value ", value.sizes(), " and ", shapes.size(),
             " spatial shapes covering ", total, " positions do not fit offsets ", offsets.sizes());
  const auto type = value.scalar_type();
  const bool fused = value.device().is_cpu() && (type == at::kFloat || type == at::kDouble) &&
                     offsets.device().is_cpu() && attention_logits.device().is_cpu() &&
                     reference_points.device().is_cpu() &&
                     !(at::GradMode::is_enabled() &&
                       (value.requires_grad() || offsets.requires_grad() ||
                        attention_logits.requires_grad() || reference_points.requires_grad()));
  if (!fused) {
    // The layer's own steps as tensor operations (and autograd).
    const auto weights = attention_logits.softmax(-1).view({n, lq, m, levels, points});
    std::vector<double> wh;
    for (const auto& [h, w] : shapes) {
      wh.push_back(static_cast<double>(w));
      wh.push_back(static_cast<double>(h));
    }
    const auto normalizer = at::tensor(wh, offsets.options()).view({1, 1, 1, levels, 1, 2});
    const auto locations = reference_points.unsqueeze(2).unsqueeze(4) + offsets / normalizer;
    return ms_deform_attn_core(value, shapes, locations, weights);
  }
  RECORD_FUNCTION("wico::ms_deform_attn_core", std::vector<c10::IValue>());
  const at::Tensor v = value.contiguous(), ref = reference_points.to(type).contiguous(),
                   off = offsets.to(type).contiguous(),
                   logits = attention_logits.to(type).contiguous();
  const CoreGeometry g = geometry_of(v, shapes, off);
  at::Tensor out = at::empty({n, lq, m * v.size(3)}, v.options());
  AT_DISPATCH_FLOATING_TYPES(type, "ms_deform_attn_from_offsets", [&] {
    deform_forward_from_offsets<scalar_t>(g, v.data_ptr<scalar_t>(), ref.data_ptr<scalar_t>(),
                                          ref.size(0), off.data_ptr<scalar_t>(),
                                          logits.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor ms_deform_attn_core_reference(const at::Tensor& value, const SpatialShapes& shapes,
                                         const at::Tensor& sampling_locations,
                                         const at::Tensor& attention_weights) {
  check_core_shapes("ms_deform_attn_core_reference", value, shapes, sampling_locations,
                    attention_weights);
  const auto n = value.size(0), m = value.size(2), d = value.size(3);
  const auto lq = sampling_locations.size(1), levels = sampling_locations.size(3),
             points = sampling_locations.size(4);
  std::vector<std::int64_t> sizes;
  for (const auto& [h, w] : shapes) sizes.push_back(h * w);
  const auto value_list = value.split_with_sizes(sizes, 1);
  const auto grids = sampling_locations * 2 - 1;  // grid_sample's [-1, 1]
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
  auto value = nn::linear(input_flatten, value_proj);
  if (padding_mask.defined()) value = value.masked_fill(padding_mask.unsqueeze(-1), 0.0);
  value = value.view({n, s, o.n_heads, o.d_model / o.n_heads});
  // Offsets and attention logits from the same query: in inference one product over both
  // layers' weights (small products run below the BLAS's rate), split after.
  at::Tensor offsets_flat, logits_flat;
  const std::int64_t samples = o.n_heads * o.n_levels * o.n_points;
  if (!at::GradMode::is_enabled()) {
    const auto both =
        nn::linear(query, at::cat({sampling_offsets->weight, attention_weights->weight}),
                   at::cat({sampling_offsets->bias, attention_weights->bias}));
    offsets_flat = both.narrow(-1, 0, samples * 2);
    logits_flat = both.narrow(-1, samples * 2, samples);
  } else {
    offsets_flat = nn::linear(query, sampling_offsets);
    logits_flat = nn::linear(query, attention_weights);
  }
  const auto offsets = offsets_flat.reshape({n, lq, o.n_heads, o.n_levels, o.n_points, 2});
  if (ref_dim == 2 && !at::GradMode::is_enabled()) {
    // Inference: softmax, locations and sampling in one pass.
    return nn::linear(
        ms_deform_attn_from_offsets(value, shapes, reference_points, offsets,
                                    logits_flat.reshape({n, lq, o.n_heads, samples / o.n_heads})),
        output_proj);
  }
  const auto weights = logits_flat.reshape({n, lq, o.n_heads, o.n_levels * o.n_points})
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
  return nn::linear(ms_deform_attn_core(value, shapes, locations, weights), output_proj);
}

}  // namespace wico::topdown
