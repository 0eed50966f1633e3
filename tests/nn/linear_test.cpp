// wico::nn::linear: the oneDNN matmul backend against LibTorch's at::linear (shapes of the
// paper-size Mask2Former, 3-d inputs, no bias, non-contiguous inputs), which calls reach it (not
// ones that need gradients, not under autocast, not with the BLAS backend), and the backend
// setting's parsing.
#include "wico/nn/linear.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "wico/core/error.h"
#include "wico/core/runtime.h"

namespace wico::nn {
namespace {

class Linear : public ::testing::Test {
 protected:
  void TearDown() override { set_linear_backend(LinearBackend::kAuto); }
};

double relative_error(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / (b.abs().max().item<double>() + 1e-12);
}

TEST_F(Linear, OneDnnEqualsAtLinear) {
  if (!onednn_linear_available()) GTEST_SKIP() << "built without oneDNN";
  set_linear_backend(LinearBackend::kOneDnn);
  ASSERT_TRUE(linear_uses_onednn());
  torch::manual_seed(0);
  const at::NoGradGuard no_grad;
  struct Case { std::vector<std::int64_t> x; std::int64_t out; bool bias; };
  for (const Case& c : {Case{{1, 4725, 256}, 1024, true}, Case{{100, 2048}, 256, true},
                        Case{{2, 7, 33}, 5, false}, Case{{3}, 4, true}}) {
    const at::Tensor x = at::randn(c.x), w = at::randn({c.out, c.x.back()});
    const at::Tensor b = c.bias ? at::randn({c.out}) : at::Tensor();
    const std::int64_t before = onednn_linear_calls();
    const at::Tensor ours = linear(x, w, b);
    EXPECT_EQ(onednn_linear_calls(), before + 1);
    EXPECT_EQ(ours.sizes(), at::linear(x, w, b).sizes());
    EXPECT_LT(relative_error(ours, at::linear(x, w, b)), 1e-5) << c.x;
  }
  // A transposed (non-contiguous) input and a weight chunk, as MultiheadAttention's in_proj.
  const at::Tensor x = at::randn({64, 3, 16}).transpose(0, 1);
  const auto w = at::randn({48, 16}).chunk(3);
  EXPECT_LT(relative_error(linear(x, w[1], at::Tensor()), at::linear(x, w[1])), 1e-5);
}

TEST_F(Linear, GradientsAutocastAndTheBlasBackendTakeAtLinear) {
  if (!onednn_linear_available()) GTEST_SKIP() << "built without oneDNN";
  set_linear_backend(LinearBackend::kOneDnn);
  torch::nn::Linear layer(8, 4);
  const at::Tensor x = at::randn({5, 8});
  std::int64_t before = onednn_linear_calls();
  const at::Tensor y = linear(x, layer);  // the layer's weight requires grad
  EXPECT_TRUE(y.requires_grad());
  EXPECT_EQ(onednn_linear_calls(), before);
  y.sum().backward();
  EXPECT_TRUE(layer->weight.grad().defined());
  {
    const at::NoGradGuard no_grad;
    (void)linear(x, layer);
    EXPECT_EQ(onednn_linear_calls(), before + 1);
    before = onednn_linear_calls();
    at::autocast::set_cpu_enabled(true);
    (void)linear(x, layer);
    at::autocast::set_cpu_enabled(false);
    EXPECT_EQ(onednn_linear_calls(), before);
    set_linear_backend(LinearBackend::kBlas);
    EXPECT_FALSE(linear_uses_onednn());
    (void)linear(x, layer);
    EXPECT_EQ(onednn_linear_calls(), before);
    (void)linear(x.to(at::kDouble), layer->weight.to(at::kDouble), at::Tensor());
    EXPECT_EQ(onednn_linear_calls(), before);
  }
}

TEST_F(Linear, BackendNamesAreChecked) {
  EXPECT_EQ(parse_linear_backend("onednn"), LinearBackend::kOneDnn);
  EXPECT_EQ(linear_backend_name(parse_linear_backend("blas")), "blas");
  EXPECT_THROW(parse_linear_backend("mkl"), ConfigError);
}

}  // namespace
}  // namespace wico::nn
