// Linear sum assignment (minimum-cost bipartite matching), as scipy.optimize.
// linear_sum_assignment: for a rectangular [rows, cols] cost matrix, min(rows, cols) pairs
// (row, col), each row and each column used at most once, with the least total cost, sorted by
// row. Mask2Former's Hungarian matcher uses it to match queries (rows) to ground-truth instances
// (cols).
//
// Algorithm: shortest augmenting paths with row and column potentials (Jonker-Volgenant, in the
// rectangular form of Crouse, "On implementing 2D rectangular assignment algorithms", 2016, which
// scipy also implements), O(n^2 m) for n = min(rows, cols), m = max(rows, cols); the matrix is
// transposed when it has more rows than columns. Ties may be broken differently from scipy, but
// the total cost is the minimum.
//
// Non-finite costs: +inf forbids a pair (a wico::Error when no assignment of min(rows, cols) pairs
// avoids all of them); NaN and -inf are a wico::Error naming the first such position.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace wico::topdown {

using Assignment = std::vector<std::pair<std::int64_t, std::int64_t>>;

// `cost` is row-major, rows * cols values. rows or cols 0 gives an empty assignment.
Assignment linear_sum_assignment(const std::vector<double>& cost, std::int64_t rows,
                                 std::int64_t cols);

// A 2-D float or double tensor (any device: it is copied to the CPU as double).
Assignment linear_sum_assignment(const at::Tensor& cost);

}  // namespace wico::topdown
