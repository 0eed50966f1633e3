#include "wico/topdown/assignment.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "wico/core/error.h"

namespace wico::topdown {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Finds the shortest augmenting path from row `start` to a free column, in the reduced costs
// cost[i][j] - u[i] - v[j] (all >= 0). Returns the free column reached (the sink) and the path's
// length in `min_value`, or -1 when every remaining column is at infinite distance.
std::int64_t augmenting_path(const std::vector<double>& cost, std::int64_t rows, std::int64_t cols,
                             std::int64_t start, const std::vector<double>& u,
                             const std::vector<double>& v, std::vector<std::int64_t>& path,
                             const std::vector<std::int64_t>& row4col,
                             std::vector<double>& shortest, std::vector<char>& seen_row,
                             std::vector<char>& seen_col, std::vector<std::int64_t>& remaining,
                             double& min_value) {
  (void)rows;
  min_value = 0.0;
  // Columns not yet reached; scanned in reverse order as scipy does.
  std::int64_t num_remaining = cols;
  for (std::int64_t k = 0; k < cols; ++k) remaining[k] = cols - k - 1;
  std::fill(seen_row.begin(), seen_row.end(), 0);
  std::fill(seen_col.begin(), seen_col.end(), 0);
  std::fill(shortest.begin(), shortest.end(), kInf);

  std::int64_t i = start;
  std::int64_t sink = -1;
  while (sink == -1) {
    seen_row[i] = 1;
    std::int64_t index = -1;
    double lowest = kInf;
    const double* row = cost.data() + i * cols;
    for (std::int64_t k = 0; k < num_remaining; ++k) {
      const std::int64_t j = remaining[k];
      const double r = min_value + row[j] - u[i] - v[j];
      if (r < shortest[j]) {
        path[j] = i;
        shortest[j] = r;
      }
      // Prefer a free column among equally near ones: it ends the search sooner.
      if (shortest[j] < lowest || (shortest[j] == lowest && row4col[j] == -1)) {
        lowest = shortest[j];
        index = k;
      }
    }
    min_value = lowest;
    if (!(min_value < kInf)) return -1;  // only forbidden pairs left
    const std::int64_t j = remaining[index];
    if (row4col[j] == -1) {
      sink = j;
    } else {
      i = row4col[j];
    }
    seen_col[j] = 1;
    remaining[index] = remaining[--num_remaining];
  }
  return sink;
}

// rows <= cols.
std::vector<std::int64_t> solve_wide(const std::vector<double>& cost, std::int64_t rows,
                                     std::int64_t cols) {
  std::vector<double> u(rows, 0.0), v(cols, 0.0), shortest(cols, kInf);
  std::vector<std::int64_t> path(cols, -1), col4row(rows, -1), row4col(cols, -1), remaining(cols);
  std::vector<char> seen_row(rows), seen_col(cols);

  for (std::int64_t current = 0; current < rows; ++current) {
    double min_value = 0.0;
    const std::int64_t sink = augmenting_path(cost, rows, cols, current, u, v, path, row4col,
                                              shortest, seen_row, seen_col, remaining, min_value);
    WICO_CHECK(sink >= 0, "linear_sum_assignment: the cost matrix (", rows, " x ", cols,
               ", after transposing to rows <= cols) has no complete assignment avoiding its +inf"
               " entries (row ",
               current, " cannot be matched)");
    // Update the potentials (keeps reduced costs non-negative and matched pairs at zero).
    u[current] += min_value;
    for (std::int64_t i = 0; i < rows; ++i) {
      if (seen_row[i] && i != current) u[i] += min_value - shortest[col4row[i]];
    }
    for (std::int64_t j = 0; j < cols; ++j) {
      if (seen_col[j]) v[j] -= min_value - shortest[j];
    }
    // Augment along the path back to `current`.
    std::int64_t j = sink;
    while (true) {
      const std::int64_t i = path[j];
      row4col[j] = i;
      std::swap(col4row[i], j);
      if (i == current) break;
    }
  }
  return col4row;
}

}  // namespace

Assignment linear_sum_assignment(const std::vector<double>& cost, std::int64_t rows,
                                 std::int64_t cols) {
  WICO_CHECK(rows >= 0 && cols >= 0, "linear_sum_assignment: negative size ", rows, " x ", cols);
  WICO_CHECK(static_cast<std::int64_t>(cost.size()) == rows * cols,
             "linear_sum_assignment: ", cost.size(), " costs for a ", rows, " x ", cols, " matrix");
  for (std::int64_t k = 0; k < rows * cols; ++k) {
    const double c = cost[k];
    WICO_CHECK(!std::isnan(c) && c != -kInf, "linear_sum_assignment: cost (", k / cols, ", ",
               k % cols, ") is ", c, " (only finite values and +inf, forbidden, are allowed)");
  }
  Assignment result;
  if (rows == 0 || cols == 0) return result;

  const bool transpose = rows > cols;
  if (!transpose) {
    const auto col4row = solve_wide(cost, rows, cols);
    result.reserve(rows);
    for (std::int64_t i = 0; i < rows; ++i) result.emplace_back(i, col4row[i]);
    return result;
  }
  std::vector<double> transposed(cost.size());
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t j = 0; j < cols; ++j) transposed[j * rows + i] = cost[i * cols + j];
  }
  const auto row4col = solve_wide(transposed, cols, rows);  // original column -> original row
  result.reserve(cols);
  for (std::int64_t j = 0; j < cols; ++j) result.emplace_back(row4col[j], j);
  std::sort(result.begin(), result.end());
  return result;
}

Assignment linear_sum_assignment(const at::Tensor& cost) {
  WICO_CHECK(cost.defined(), "linear_sum_assignment: undefined cost tensor");
  WICO_CHECK(cost.dim() == 2, "linear_sum_assignment: the cost must be a 2-D matrix, got shape ",
             cost.sizes());
  WICO_CHECK(cost.is_floating_point(),
             "linear_sum_assignment: the cost must be floating point, got ", cost.scalar_type());
  const auto c = cost.detach().to(at::kCPU, at::kDouble).contiguous();
  const auto* data = c.data_ptr<double>();
  std::vector<double> values(data, data + c.numel());
  return linear_sum_assignment(values, c.size(0), c.size(1));
}

}  // namespace wico::topdown
