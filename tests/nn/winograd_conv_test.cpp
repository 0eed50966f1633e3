#include "wico/nn/winograd_conv.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/conv.h>

#include "wico/core/error.h"
#include "wico/core/runtime.h"

namespace wico::nn {
namespace {

namespace tnn = torch::nn;

// Restores the process-wide choice a test changes.
struct AlgorithmScope {
  explicit AlgorithmScope(ConvAlgorithm a) : saved(conv_algorithm()) { set_conv_algorithm(a); }
  ~AlgorithmScope() { set_conv_algorithm(saved); }
  ConvAlgorithm saved;
};

double relative_error(const at::Tensor& got, const at::Tensor& want) {
  return (got - want).abs().max().item<double>() / want.abs().max().item<double>();
}

tnn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t padding, bool bias) {
  torch::manual_seed(3);
  return tnn::Conv2d(tnn::Conv2dOptions(in, out, 3).padding(padding).bias(bias));
}

#define REQUIRE_WINOGRAD() \
  if (!winograd_available()) GTEST_SKIP() << "this build or CPU has no oneDNN Winograd"

TEST(WinogradConv, ForwardAndGradientsMatchTheDirectConvolution) {
  REQUIRE_WINOGRAD();
  const AlgorithmScope scope(ConvAlgorithm::kWinograd);
  for (const std::int64_t padding : {1, 0}) {
    for (const bool bias : {false, true}) {
      auto c = conv(32, 48, padding, bias);
      torch::manual_seed(4);
      // Odd sizes: tiles of 4 that do not divide the image.
      const auto x = torch::randn({2, 32, 13, 18}).requires_grad_(true);
      ASSERT_TRUE(uses_winograd(c, x));
      const std::uint64_t before = winograd_forward_count();
      const auto y = wico::nn::conv2d(c, x);
      EXPECT_EQ(winograd_forward_count(), before + 1);
      const auto x_ref = x.detach().clone().requires_grad_(true);
      const auto y_ref = c->forward(x_ref);  // LibTorch's direct kernel
      ASSERT_EQ(y.sizes(), y_ref.sizes());
      EXPECT_LT(relative_error(y, y_ref), 1e-5) << "padding " << padding << " bias " << bias;

      const auto g = torch::randn_like(y_ref);
      std::vector<at::Tensor> inputs = {x, c->weight}, inputs_ref = {x_ref, c->weight};
      if (bias) {
        inputs.push_back(c->bias);
        inputs_ref.push_back(c->bias);
      }
      const auto grads = torch::autograd::grad({y}, inputs, {g});
      const auto grads_ref = torch::autograd::grad({y_ref}, inputs_ref, {g});
      EXPECT_LT(relative_error(grads[0], grads_ref[0]), 1e-5) << "input gradient";
      EXPECT_LT(relative_error(grads[1], grads_ref[1]), 1e-5) << "weight gradient";
      if (bias) {
        EXPECT_LT(relative_error(grads[2], grads_ref[2]), 1e-6) << "bias gradient";
      }
    }
  }
}

TEST(WinogradConv, RepeatedBackwardIsBitIdentical) {
  REQUIRE_WINOGRAD();
  const AlgorithmScope scope(ConvAlgorithm::kWinograd);
  auto c = conv(64, 64, 1, false);
  torch::manual_seed(5);
  const auto x = torch::randn({1, 64, 40, 40});
  const auto g = torch::randn({1, 64, 40, 40});
  auto run = [&] {
    const auto xi = x.clone().requires_grad_(true);
    const auto y = wico::nn::conv2d(c, xi);
    const auto grads = torch::autograd::grad({y}, {xi, c->weight}, {g});
    return std::vector<at::Tensor>{y.detach(), grads[0], grads[1]};
  };
  const auto first = run();
  for (int r = 0; r < 3; ++r) {
    const auto again = run();
    for (std::size_t i = 0; i < first.size(); ++i) EXPECT_TRUE(at::equal(first[i], again[i])) << i;
  }
}

TEST(WinogradConv, IneligibleConvolutionsRunTheModulesOwnKernel) {
  const AlgorithmScope scope(ConvAlgorithm::kWinograd);
  torch::manual_seed(6);
  const auto x = torch::randn({1, 32, 16, 16});
  // Strided, dilated, grouped, 1x1, padding 2, reflect padding, float64: none is Winograd's.
  std::vector<tnn::Conv2d> others = {
      tnn::Conv2d(tnn::Conv2dOptions(32, 32, 3).stride(2).padding(1)),
      tnn::Conv2d(tnn::Conv2dOptions(32, 32, 3).dilation(2).padding(2)),
      tnn::Conv2d(tnn::Conv2dOptions(32, 32, 3).groups(2).padding(1)),
      tnn::Conv2d(tnn::Conv2dOptions(32, 32, 1)),
      tnn::Conv2d(tnn::Conv2dOptions(32, 32, 3).padding(2)),
      tnn::Conv2d(tnn::Conv2dOptions(32, 32, 3).padding(1).padding_mode(torch::kReflect))};
  for (std::size_t i = 0; i < others.size(); ++i) {
    EXPECT_FALSE(uses_winograd(others[i], x)) << i;
    const std::uint64_t before = winograd_forward_count();
    EXPECT_TRUE(at::equal(wico::nn::conv2d(others[i], x), others[i]->forward(x))) << i;
    EXPECT_EQ(winograd_forward_count(), before) << i;
  }
  auto c = conv(32, 32, 1, false);
  EXPECT_FALSE(uses_winograd(c, x.to(at::kDouble)));
}

TEST(WinogradConv, TheRuntimeChoiceDecides) {
  auto c = conv(64, 64, 1, false);
  const auto small = torch::randn({1, 64, 16, 16});  // 256 output pixels: under auto's 576
  const auto large = torch::randn({1, 64, 24, 24});
  {
    const AlgorithmScope scope(ConvAlgorithm::kDirect);
    EXPECT_FALSE(uses_winograd(c, large));
  }
  {
    const AlgorithmScope scope(ConvAlgorithm::kAuto);
    EXPECT_FALSE(uses_winograd(c, small));
    EXPECT_EQ(uses_winograd(c, large), winograd_available());
  }
  {
    const AlgorithmScope scope(ConvAlgorithm::kWinograd);
    EXPECT_EQ(uses_winograd(c, small), winograd_available());
  }
}

TEST(WinogradConv, BadInputsAndNamesAreErrors) {
  EXPECT_EQ(parse_conv_algorithm("winograd"), ConvAlgorithm::kWinograd);
  EXPECT_EQ(conv_algorithm_name(parse_conv_algorithm("direct")), "direct");
  try {
    parse_conv_algorithm("fft");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("runtime.conv_algorithm"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("'fft'"), std::string::npos);
  }
  try {
    winograd_conv3x3(torch::randn({1, 16, 8, 8}), torch::randn({16, 16, 5, 5}), {}, 1);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[16, 16, 5, 5]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace wico::nn
