// Linear sum assignment: total cost equal to brute force over all permutations on random small
// matrices (square and rectangular both ways, ties, negative values, forbidden +inf pairs),
// hand cases with known answers, the result's shape, and the errors.
#include "wico/topdown/assignment.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "test_util.h"
#include "wico/core/error.h"

namespace wico::topdown {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Matrix {
  std::int64_t rows, cols;
  std::vector<double> values;
  double at(std::int64_t i, std::int64_t j) const { return values[i * cols + j]; }
};

// The least total over all assignments of min(rows, cols) pairs (nullopt when every one uses a
// +inf pair), by enumerating permutations of the longer side.
std::optional<double> brute_force(const Matrix& m) {
  const bool wide = m.rows <= m.cols;
  const std::int64_t n = std::min(m.rows, m.cols), longer = std::max(m.rows, m.cols);
  std::vector<std::int64_t> perm(longer);
  std::iota(perm.begin(), perm.end(), 0);
  std::optional<double> best;
  do {
    double total = 0.0;
    for (std::int64_t k = 0; k < n; ++k) total += wide ? m.at(k, perm[k]) : m.at(perm[k], k);
    if (std::isinf(total)) continue;
    if (!best || total < *best) best = total;
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

// Checks the assignment's form (min(rows, cols) pairs sorted by row, in range, each row and column
// once) and returns its total.
double checked_total(const Matrix& m, const Assignment& a) {
  EXPECT_EQ(static_cast<std::int64_t>(a.size()), std::min(m.rows, m.cols));
  std::set<std::int64_t> rows, cols;
  double total = 0.0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    const auto [i, j] = a[k];
    EXPECT_TRUE(i >= 0 && i < m.rows && j >= 0 && j < m.cols) << i << ", " << j;
    if (!(i >= 0 && i < m.rows && j >= 0 && j < m.cols)) return kInf;
    if (k > 0) {
      EXPECT_LT(a[k - 1].first, i) << "not sorted by row";
    }
    EXPECT_TRUE(rows.insert(i).second) << "row " << i << " twice";
    EXPECT_TRUE(cols.insert(j).second) << "column " << j << " twice";
    total += m.at(i, j);
  }
  return total;
}

TEST(LinearSumAssignment, MatchesBruteForceOnRandomMatrices) {
  std::mt19937 rng(20261125);
  std::uniform_int_distribution<int> size(1, 7), small_int(-3, 3), kind(0, 2);
  std::normal_distribution<double> normal(0.0, 10.0);
  std::bernoulli_distribution forbid(0.4);
  int cases = 0, with_inf = 0, infeasible = 0;
  for (int trial = 0; trial < 1500; ++trial) {
    Matrix m{size(rng), size(rng), {}};
    const int k = kind(rng);  // 0: few distinct integers (ties), 1: real, 2: integers with +inf
    for (std::int64_t e = 0; e < m.rows * m.cols; ++e) {
      if (k == 1) {
        m.values.push_back(normal(rng));
      } else {
        m.values.push_back(k == 2 && forbid(rng) ? kInf : small_int(rng));
      }
    }
    const auto expected = brute_force(m);
    ++cases;
    if (k == 2) ++with_inf;
    if (!expected) {
      ++infeasible;
      EXPECT_THROW(linear_sum_assignment(m.values, m.rows, m.cols), Error)
          << m.rows << " x " << m.cols;
      continue;
    }
    const auto a = linear_sum_assignment(m.values, m.rows, m.cols);
    EXPECT_NEAR(checked_total(m, a), *expected, 1e-9)
        << "trial " << trial << ", " << m.rows << " x " << m.cols;
    // The tensor overload (double, and the transposed float matrix) agrees.
    const auto t = at::tensor(m.values, at::kDouble).reshape({m.rows, m.cols});
    EXPECT_EQ(linear_sum_assignment(t), a);
    if (k != 1) {
      Matrix mt{m.cols, m.rows, std::vector<double>(m.values.size())};
      for (std::int64_t i = 0; i < m.rows; ++i)
        for (std::int64_t j = 0; j < m.cols; ++j) mt.values[j * m.rows + i] = m.at(i, j);
      const auto at_t = linear_sum_assignment(t.t().to(at::kFloat));
      EXPECT_NEAR(checked_total(mt, at_t), *expected, 1e-9);
    }
  }
  // The random mix covers what it should.
  EXPECT_EQ(cases, 1500);
  EXPECT_GT(with_inf, 300);
  EXPECT_GT(infeasible, 10);
  EXPECT_LT(infeasible, with_inf / 2);
}

TEST(LinearSumAssignment, HandCases) {
  // scipy's documentation example: rows 0 1 2 -> columns 1 0 2, total 5.
  EXPECT_EQ(linear_sum_assignment({4, 1, 3, 2, 0, 5, 3, 2, 2}, 3, 3),
            (Assignment{{0, 1}, {1, 0}, {2, 2}}));
  // Greedy (row 0 takes its cheapest, column 0) is wrong: 1 + 100 > 2 + 3.
  EXPECT_EQ(linear_sum_assignment({1, 2, 3, 100}, 2, 2), (Assignment{{0, 1}, {1, 0}}));
  // Wide: 2 rows, 4 columns; the best columns are 3 and 1.
  EXPECT_EQ(linear_sum_assignment({5, 4, 9, 1, 7, 2, 8, 3}, 2, 4), (Assignment{{0, 3}, {1, 1}}));
  // Tall: 4 queries, 2 instances; query 2 is best for both, the best total is 0.7 + 0.1 (query 1
  // takes instance 1), pairs sorted by row.
  EXPECT_EQ(linear_sum_assignment({0.5, 0.9, 0.8, 0.7, 0.1, 0.6, 0.9, 0.95}, 4, 2),
            (Assignment{{1, 1}, {2, 0}}));
  // A single row picks its cheapest column; negative costs are fine.
  EXPECT_EQ(linear_sum_assignment({3, -2, 0, -1}, 1, 4), (Assignment{{0, 1}}));
  // +inf forbids: the diagonal is cheap but forbidden at (1, 1).
  EXPECT_EQ(linear_sum_assignment({0, 1, 1, kInf}, 2, 2), (Assignment{{0, 1}, {1, 0}}));
  // A tall matrix where one row is entirely forbidden: that row stays unmatched.
  EXPECT_EQ(linear_sum_assignment({kInf, kInf, 4, 5, 1, 9}, 3, 2), (Assignment{{1, 1}, {2, 0}}));
  // Large magnitudes: the diagonal's 1e12 - 1e12 = 0 beats 1 + 1.
  EXPECT_EQ(linear_sum_assignment({1e12, 1, 1, -1e12}, 2, 2), (Assignment{{0, 0}, {1, 1}}));
}

TEST(LinearSumAssignment, EmptyMatrices) {
  EXPECT_TRUE(linear_sum_assignment({}, 0, 0).empty());
  EXPECT_TRUE(linear_sum_assignment({}, 0, 5).empty());
  EXPECT_TRUE(linear_sum_assignment({}, 100, 0).empty());
  EXPECT_TRUE(linear_sum_assignment(at::zeros({100, 0})).empty());  // no ground truth
  EXPECT_TRUE(linear_sum_assignment(at::zeros({0, 3}, at::kFloat)).empty());
}

TEST(LinearSumAssignment, MaskFormerShape) {
  // 100 queries x 3 instances: each instance matched to the query built to fit it.
  auto cost = at::rand({100, 3}, at::kFloat) + 1.0;
  cost.index_put_({17, 2}, 0.0);
  cost.index_put_({42, 0}, 0.1);
  cost.index_put_({99, 1}, 0.2);
  EXPECT_EQ(linear_sum_assignment(cost), (Assignment{{17, 2}, {42, 0}, {99, 1}}));
}

TEST(LinearSumAssignment, Errors) {
  const auto nan = std::numeric_limits<double>::quiet_NaN();
  auto message = test::thrown_message<Error>([&] {
    linear_sum_assignment({0, 1, 2, 3, 4, nan}, 2, 3);
  });
  EXPECT_NE(message.find("(1, 2)"), std::string::npos) << message;
  EXPECT_NE(message.find("nan"), std::string::npos) << message;
  message = test::thrown_message<Error>([&] { linear_sum_assignment({0, -kInf, 2, 3}, 2, 2); });
  EXPECT_NE(message.find("(0, 1)"), std::string::npos) << message;
  // NaN in a tensor too, float.
  auto t = at::zeros({3, 4}, at::kFloat);
  t.index_put_({2, 1}, std::nanf(""));
  message = test::thrown_message<Error>([&] { linear_sum_assignment(t); });
  EXPECT_NE(message.find("(2, 1)"), std::string::npos) << message;
  // No complete assignment: both rows can only take column 0.
  message = test::thrown_message<Error>([&] { linear_sum_assignment({1, kInf, 2, kInf}, 2, 2); });
  EXPECT_NE(message.find("+inf"), std::string::npos) << message;
  // Wrong sizes and types.
  EXPECT_THROW(linear_sum_assignment({1, 2, 3}, 2, 2), Error);
  EXPECT_THROW(linear_sum_assignment(at::zeros({2, 2, 2})), Error);
  EXPECT_THROW(linear_sum_assignment(at::zeros({4})), Error);
  EXPECT_THROW(linear_sum_assignment(at::zeros({2, 2}, at::kLong)), Error);
  EXPECT_THROW(linear_sum_assignment(at::Tensor()), Error);
}

}  // namespace
}  // namespace wico::topdown
