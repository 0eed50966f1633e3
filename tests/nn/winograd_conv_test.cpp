#include "wico/nn/winograd_conv.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
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

// Both Winograd kernels, by the runtime choice that forces each.
class WinogradKernels : public ::testing::TestWithParam<ConvAlgorithm> {
 protected:
  void SetUp() override {
    if (GetParam() == ConvAlgorithm::kOneDnnWinograd && !onednn_winograd_available()) {
      GTEST_SKIP() << "this build or CPU has no oneDNN Winograd";
    }
  }
  ConvKernel expected_kernel() const {
    return GetParam() == ConvAlgorithm::kWinograd ? ConvKernel::kWinograd
                                                  : ConvKernel::kOneDnnWinograd;
  }
};

TEST_P(WinogradKernels, ForwardAndGradientsMatchTheDirectConvolution) {
  const AlgorithmScope scope(GetParam());
  struct Case {
    std::int64_t batch, in, out, height, width;
  };
  // Odd sizes (tiles of 4 that do not divide the image), a single tile, a 1-pixel output.
  const std::vector<Case> cases = {{2, 32, 48, 13, 18}, {1, 8, 5, 4, 4}, {1, 3, 4, 3, 3}};
  for (const auto& k : cases) {
    for (const std::int64_t padding : {1, 0}) {
      for (const bool bias : {false, true}) {
        auto c = conv(k.in, k.out, padding, bias);
        torch::manual_seed(4);
        const auto x = torch::randn({k.batch, k.in, k.height, k.width}).requires_grad_(true);
        const std::string where = c10::str("input ", x.sizes(), " padding ", padding, " bias ",
                                           bias);
        ASSERT_EQ(conv_kernel_for(c, x), expected_kernel()) << where;
        const std::uint64_t before = winograd_forward_count();
        const auto y = wico::nn::conv2d(c, x);
        EXPECT_EQ(winograd_forward_count(), before + 1);
        const auto x_ref = x.detach().clone().requires_grad_(true);
        const auto y_ref = c->forward(x_ref);  // LibTorch's direct kernel
        ASSERT_EQ(y.sizes(), y_ref.sizes()) << where;
        EXPECT_LT(relative_error(y, y_ref), 1e-5) << where;
        {
          // Without autograd (inference): the same kernel through its no-grad path.
          const torch::NoGradGuard no_grad;
          EXPECT_TRUE(at::equal(wico::nn::conv2d(c, x), y.detach())) << where;
        }

        const auto g = torch::randn_like(y_ref);
        std::vector<at::Tensor> inputs = {x, c->weight}, inputs_ref = {x_ref, c->weight};
        if (bias) {
          inputs.push_back(c->bias);
          inputs_ref.push_back(c->bias);
        }
        const auto grads = torch::autograd::grad({y}, inputs, {g});
        const auto grads_ref = torch::autograd::grad({y_ref}, inputs_ref, {g});
        EXPECT_LT(relative_error(grads[0], grads_ref[0]), 1e-5) << "input gradient, " << where;
        EXPECT_LT(relative_error(grads[1], grads_ref[1]), 1e-5) << "weight gradient, " << where;
        if (bias) {
          EXPECT_LT(relative_error(grads[2], grads_ref[2]), 1e-6) << "bias gradient, " << where;
        }
      }
    }
  }
}

TEST_P(WinogradKernels, RepeatedBackwardIsBitIdentical) {
  const AlgorithmScope scope(GetParam());
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

TEST_P(WinogradKernels, InferenceThenTrainingOnTheSameShape) {
  // Evaluation under InferenceMode between training steps: nothing the kernel keeps for reuse
  // may be an inference tensor that a training step then writes into.
  const AlgorithmScope scope(GetParam());
  auto c = conv(32, 32, 1, true);
  torch::manual_seed(7);
  const auto x = torch::randn({1, 32, 20, 20});
  at::Tensor inferred;
  {
    const c10::InferenceMode inference;
    inferred = wico::nn::conv2d(c, x);
  }
  const auto xi = x.clone().requires_grad_(true);
  const auto y = wico::nn::conv2d(c, xi);
  EXPECT_TRUE(at::equal(y.detach(), inferred));
  const auto grads = torch::autograd::grad({y.sum()}, {xi, c->weight});
  const auto x_ref = x.clone().requires_grad_(true);
  const auto grads_ref = torch::autograd::grad({c->forward(x_ref).sum()}, {x_ref, c->weight});
  EXPECT_LT(relative_error(grads[0], grads_ref[0]), 1e-5);
  EXPECT_LT(relative_error(grads[1], grads_ref[1]), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Kernels, WinogradKernels,
                         ::testing::Values(ConvAlgorithm::kWinograd,
                                           ConvAlgorithm::kOneDnnWinograd),
                         [](const auto& info) { return conv_algorithm_name(info.param); });

TEST(WinogradConv, OneOutputTileByHand) {
  // A 6x6 input of 0..35 and a kernel with one non-zero tap at (0, 2): the valid correlation is
  // the input shifted, out[i][j] = 2 * x[i][j + 2], so every output is known exactly.
  const auto x = torch::arange(36, torch::kFloat).view({1, 1, 6, 6});
  auto w = torch::zeros({1, 1, 3, 3});
  w[0][0][0][2] = 2.0f;
  const auto y = winograd_conv3x3(x, w, {}, 0);
  ASSERT_EQ(y.sizes(), (std::vector<std::int64_t>{1, 1, 4, 4}));
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      EXPECT_NEAR(y[0][0][i][j].item<float>(), 2.0f * static_cast<float>(6 * i + j + 2), 1e-4)
          << i << "," << j;
    }
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
  auto c = conv(128, 128, 1, false);
  const auto small = torch::randn({1, 128, 16, 16});  // 256 output pixels: under auto's 576
  const auto large = torch::randn({1, 128, 24, 24});
  auto narrow = conv(64, 128, 1, false);  // 64 input channels: under ours' 128
  const auto narrow_large = torch::randn({1, 64, 40, 40});
  const bool onednn = onednn_winograd_available();
  {
    const AlgorithmScope scope(ConvAlgorithm::kDirect);
    EXPECT_EQ(conv_kernel_for(c, large), ConvKernel::kDirect);
  }
  {
    const AlgorithmScope scope(ConvAlgorithm::kAuto);
    EXPECT_EQ(conv_kernel_for(c, small), ConvKernel::kDirect);
    EXPECT_EQ(conv_kernel_for(c, large),
              onednn ? ConvKernel::kOneDnnWinograd : ConvKernel::kWinograd);
    if (!onednn) {
      EXPECT_EQ(conv_kernel_for(narrow, narrow_large), ConvKernel::kDirect);
    }
  }
  {
    const AlgorithmScope scope(ConvAlgorithm::kWinograd);
    EXPECT_EQ(conv_kernel_for(c, small), ConvKernel::kWinograd);
    EXPECT_EQ(conv_kernel_for(narrow, narrow_large), ConvKernel::kWinograd);
  }
  {
    const AlgorithmScope scope(ConvAlgorithm::kOneDnnWinograd);
    EXPECT_EQ(conv_kernel_for(c, small),
              onednn ? ConvKernel::kOneDnnWinograd : ConvKernel::kDirect);
  }
}

TEST(WinogradConv, BadInputsAndNamesAreErrors) {
  EXPECT_EQ(parse_conv_algorithm("winograd"), ConvAlgorithm::kWinograd);
  EXPECT_EQ(parse_conv_algorithm("onednn_winograd"), ConvAlgorithm::kOneDnnWinograd);
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
  try {
    winograd_conv3x3(torch::randn({1, 16, 8, 8}), torch::randn({4, 16, 3, 3}),
                     torch::randn({5}), 1);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bias [5]"), std::string::npos) << e.what();
  }
  try {
    onednn_winograd_conv3x3(torch::randn({1, 16, 8, 8}).to(at::kDouble),
                            torch::randn({16, 16, 3, 3}), {}, 1);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("onednn_winograd_conv3x3"), std::string::npos);
  }
}

}  // namespace
}  // namespace wico::nn
