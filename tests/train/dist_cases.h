// What wico_dist_worker and distributed_test.cpp share: the inputs of each multi-process case
// (deterministic, from fixed seeds, so the test can compute the expected results on its own) and
// the file through which the worker hands its tensors back.
#pragma once

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace wico::test {

class ResultWriter {
 public:
  explicit ResultWriter(const std::filesystem::path& file) : out_(file) {
    if (!out_) throw std::runtime_error("cannot write " + file.string());
    out_ << std::setprecision(17);
  }
  void add(const std::string& name, const at::Tensor& tensor) {
    const at::Tensor t = tensor.detach().to(at::kCPU, at::kDouble).contiguous();
    out_ << name << ' ' << t.dim();
    for (const auto size : t.sizes()) out_ << ' ' << size;
    const double* v = t.data_ptr<double>();
    for (std::int64_t i = 0; i < t.numel(); ++i) out_ << ' ' << v[i];
    out_ << '\n';
  }
  void add(const std::string& name, double value) { add(name, at::tensor({value}, at::kDouble)); }

 private:
  std::ofstream out_;
};

// name -> tensor (double, CPU) of a file written by ResultWriter.
inline std::map<std::string, at::Tensor> read_results(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  std::map<std::string, at::Tensor> results;
  std::string name;
  std::int64_t dims = 0;
  while (in >> name >> dims) {
    std::vector<std::int64_t> sizes(static_cast<std::size_t>(dims));
    for (auto& size : sizes) in >> size;
    at::Tensor t = at::empty(sizes, at::kDouble);
    double* v = t.data_ptr<double>();
    for (std::int64_t i = 0; i < t.numel(); ++i) in >> v[i];
    if (!in) throw std::runtime_error("truncated tensor '" + name + "' in " + file.string());
    results[name] = t;
  }
  return results;
}

// ---- average_gradients ----
struct GradCase {
  std::vector<std::int64_t> shape;
  at::ScalarType dtype;
  bool frozen = false;       // requires_grad false: must stay untouched
  int missing_on_rank = -1;  // this rank has no gradient (counts as zeros)
};

// Small enough that the parameters below make several buckets, of two dtypes.
constexpr std::size_t kGradBucketBytes = 32;

inline std::vector<GradCase> grad_cases() {
  return {{{3, 4}, at::kFloat},        {{5}, at::kFloat},           {{2, 2, 2}, at::kDouble},
          {{7}, at::kFloat, true},     {{1}, at::kFloat, false, 0}, {{2, 3}, at::kFloat},
          {{3}, at::kDouble, false, 1}};
}

inline at::Tensor random_tensor(std::uint64_t seed, at::IntArrayRef shape,
                                at::ScalarType dtype = at::kFloat) {
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, generator, at::TensorOptions().dtype(dtype));
}

// Rank `rank`'s gradient of parameter i (when it has one).
inline at::Tensor rank_gradient(int rank, std::size_t i) {
  const GradCase c = grad_cases()[i];
  return random_tensor(1000 * static_cast<std::uint64_t>(rank) + i, c.shape, c.dtype);
}

// ---- sync_batch_norm: a global batch of 6, split unevenly (2 rows on rank 0, 4 on rank 1) ----
struct SyncBnCase {
  at::Tensor input, weight, bias, grad_output;  // full batch
  double momentum = 0.1, eps = 1e-5;
};

inline SyncBnCase sync_bn_case() {
  SyncBnCase c;
  c.input = random_tensor(42, {6, 3, 2, 2}) * 2 + 0.5;
  c.weight = random_tensor(43, {3});
  c.bias = random_tensor(44, {3});
  c.grad_output = random_tensor(45, {6, 3, 2, 2});
  return c;
}

inline std::int64_t sync_bn_begin(int rank) { return rank == 0 ? 0 : 2; }
inline std::int64_t sync_bn_rows(int rank) { return rank == 0 ? 2 : 4; }

}  // namespace wico::test
