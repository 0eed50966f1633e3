#include "wico/topdown/instances.h"

#include <ATen/ATen.h>

namespace wico::topdown {

at::Tensor boxes_of_masks(const at::Tensor& masks, double threshold) {
  const at::NoGradGuard no_grad;
  const std::int64_t h = masks.size(-2), w = masks.size(-1);
  const at::Tensor on = masks > threshold;                    // [..., h, w]
  const at::Tensor rows = on.any(-1), cols = on.any(-2);      // [..., h], [..., w]
  const auto opts = masks.options().dtype(at::kFloat);
  const at::Tensor ys = at::arange(h, opts), xs = at::arange(w, opts);
  // First and last occupied row/column; the box covers whole pixels (x2 = last + 1).
  const at::Tensor big = at::full({}, 1e9, opts);
  const at::Tensor y1 = at::where(rows, ys, big).amin(-1);
  const at::Tensor y2 = at::where(rows, ys + 1, -big).amax(-1);
  const at::Tensor x1 = at::where(cols, xs, big).amin(-1);
  const at::Tensor x2 = at::where(cols, xs + 1, -big).amax(-1);
  at::Tensor boxes = at::stack({x1 / w, y1 / h, x2 / w, y2 / h}, -1);
  const at::Tensor empty = rows.any(-1).logical_not().unsqueeze(-1);
  return boxes.masked_fill(empty, 0.0);
}

}  // namespace wico::topdown
