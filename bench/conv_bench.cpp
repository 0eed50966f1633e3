// `wico bench conv`: 3x3 stride-1 convolutions through LibTorch's direct kernel (what the Python
// originals run) against oneDNN's Winograd (wico/nn/winograd_conv.h), forward and forward +
// backward, on the shapes the models run at paper size (LAVT's decoder and ResNet-50's 3x3s at a
// 480x480 input) and small ones; with the relative difference of the outputs and what
// runtime.conv_algorithm=auto picks for each.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/autograd.h>
#include <torch/nn/modules/conv.h>

#include <iostream>

#include "wico/core/benchmark.h"
#include "wico/core/runtime.h"
#include "wico/nn/winograd_conv.h"

namespace wico {

namespace {

struct ConvShape {
  const char* where;
  std::int64_t batch, in, out, size;
};

// Seconds of one forward (and of forward + backward) of `conv` on x with `algorithm`.
std::pair<double, double> time_conv(const torch::nn::Conv2d& conv, const torch::Tensor& x,
                                    ConvAlgorithm algorithm, const BenchContext& ctx) {
  set_conv_algorithm(algorithm);
  const double forward = median_seconds(
      [&] {
        const torch::NoGradGuard no_grad;
        (void)nn::conv2d(conv, x);
      },
      ctx.repeats, ctx.warmup);
  const auto xg = x.detach().clone().requires_grad_(true);
  const double step = median_seconds(
      [&] {
        const auto y = nn::conv2d(conv, xg);
        (void)torch::autograd::grad({y}, {xg, conv->weight}, {torch::ones_like(y)});
      },
      ctx.repeats, ctx.warmup);
  return {forward, step};
}

}  // namespace

nlohmann::json bench_conv(const BenchContext& ctx) {
  std::vector<ConvShape> shapes = {
      {"LAVT decoder conv1_4 (1/16)", 1, 1536, 512, 30},
      {"LAVT decoder conv1_3 (1/8)", 1, 768, 512, 60},
      {"LAVT decoder conv1_2 (1/4)", 1, 640, 512, 120},
      {"LAVT decoder conv2_2 (1/4)", 1, 512, 512, 120},
      {"ResNet-50 res2 3x3", 1, 64, 64, 120},
      {"ResNet-50 res4 3x3", 1, 256, 256, 30},
      {"ResNet-50 res5 3x3", 1, 512, 512, 15},
      {"small", 1, 64, 64, 32},
  };
  if (ctx.quick)
    shapes = {{"LAVT decoder conv2_3 (1/8)", 1, 512, 512, 60}, {"small", 1, 64, 64, 32}};
  const ConvAlgorithm saved = conv_algorithm();
  nlohmann::json result = {{"benchmark", "conv"},
                           {"winograd_available", nn::winograd_available()},
                           {"rows", nlohmann::json::array()}};
  std::cout << fmt::format("{:<30} {:>22} {:>9} {:>9} {:>7} {:>10} {:>10} {:>7} {:>9} {:>5}\n",
                           "shape", "N x C -> O @ HxW", "fwd dir", "fwd wino", "ratio", "step dir",
                           "step wino", "ratio", "rel diff", "auto");
  torch::manual_seed(0);
  for (const auto& s : shapes) {
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(s.in, s.out, 3).padding(1).bias(false));
    const auto x = torch::randn({s.batch, s.in, s.size, s.size});
    set_conv_algorithm(ConvAlgorithm::kAuto);
    const bool auto_picks = nn::uses_winograd(conv, x);
    set_conv_algorithm(ConvAlgorithm::kWinograd);
    const bool possible = nn::uses_winograd(conv, x);
    const auto [fwd_direct, step_direct] = time_conv(conv, x, ConvAlgorithm::kDirect, ctx);
    double fwd_wino = 0, step_wino = 0, diff = 0;
    if (possible) {
      std::tie(fwd_wino, step_wino) = time_conv(conv, x, ConvAlgorithm::kWinograd, ctx);
      const torch::NoGradGuard no_grad;
      const auto direct = conv->forward(x);  // time_conv left the choice at Winograd
      diff = (nn::conv2d(conv, x) - direct).abs().max().item<double>() /
             direct.abs().max().item<double>();
    }
    const std::string dims =
        fmt::format("{} x {} -> {} @ {}x{}", s.batch, s.in, s.out, s.size, s.size);
    auto ratio = [](double a, double b) { return b > 0 ? fmt::format("{:.2f}x", a / b) : "-"; };
    std::cout << fmt::format(
        "{:<30} {:>22} {:>8.4f}s {:>8.4f}s {:>7} {:>9.4f}s {:>9.4f}s {:>7} {:>9.1e} {:>5}\n",
        s.where, dims, fwd_direct, fwd_wino, ratio(fwd_direct, fwd_wino), step_direct, step_wino,
        ratio(step_direct, step_wino), diff, auto_picks ? "wino" : "dir");
    result["rows"].push_back({{"shape", s.where},
                              {"batch", s.batch},
                              {"in", s.in},
                              {"out", s.out},
                              {"size", s.size},
                              {"forward_direct_s", fwd_direct},
                              {"forward_winograd_s", fwd_wino},
                              {"step_direct_s", step_direct},
                              {"step_winograd_s", step_wino},
                              {"relative_difference", diff},
                              {"auto_winograd", auto_picks}});
  }
  set_conv_algorithm(saved);
  if (!nn::winograd_available()) {
    std::cout << "oneDNN's Winograd is not available in this build or on this CPU: every 3x3 "
                 "convolution runs the direct kernel.\n";
  }
  return result;
}

}  // namespace wico
