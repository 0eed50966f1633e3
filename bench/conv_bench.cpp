// `wico bench conv`: 3x3 stride-1 convolutions through LibTorch's direct kernel (what the Python
// originals run) against our Winograd and oneDNN's (wico/nn/winograd_conv.h), forward and
// forward + backward, on the shapes the models run at paper size (LAVT's decoder and ResNet-50's 3x3s at a
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
      {"tiny", 1, 32, 32, 16},
  };
  if (ctx.quick)
    shapes = {{"LAVT decoder conv2_3 (1/8)", 1, 512, 512, 60}, {"small", 1, 64, 64, 32}};
  const ConvAlgorithm saved = conv_algorithm();
  const bool onednn = nn::onednn_winograd_available();
  nlohmann::json result = {{"benchmark", "conv"},
                           {"onednn_winograd_available", onednn},
                           {"rows", nlohmann::json::array()}};
  std::cout << fmt::format("{:<28} {:>22} {:>9} {:>9} {:>6} {:>9} {:>9} {:>6} {:>8} {:>9} {:>9} "
                           "{:>6}\n",
                           "shape", "N x C -> O @ HxW", "fwd dir", "fwd wino", "ratio",
                           "step dir", "step wino", "ratio", "rel diff", "fwd 1dnn",
                           "step 1dnn", "auto");
  auto kernel_name = [](nn::ConvKernel k) {
    return k == nn::ConvKernel::kWinograd         ? "wino"
           : k == nn::ConvKernel::kOneDnnWinograd ? "1dnn"
                                                  : "dir";
  };
  torch::manual_seed(0);
  for (const auto& s : shapes) {
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(s.in, s.out, 3).padding(1).bias(false));
    const auto x = torch::randn({s.batch, s.in, s.size, s.size});
    set_conv_algorithm(ConvAlgorithm::kAuto);
    const nn::ConvKernel auto_picks = nn::conv_kernel_for(conv, x);
    set_conv_algorithm(ConvAlgorithm::kOneDnnWinograd);
    const bool onednn_takes_it = nn::uses_winograd(conv, x);
    const auto [fwd_direct, step_direct] = time_conv(conv, x, ConvAlgorithm::kDirect, ctx);
    const auto [fwd_wino, step_wino] = time_conv(conv, x, ConvAlgorithm::kWinograd, ctx);
    double diff = 0;
    {
      const torch::NoGradGuard no_grad;
      const auto direct = conv->forward(x);  // time_conv left the choice at our Winograd
      diff = (nn::conv2d(conv, x) - direct).abs().max().item<double>() /
             direct.abs().max().item<double>();
    }
    double fwd_onednn = 0, step_onednn = 0;
    if (onednn_takes_it) {
      std::tie(fwd_onednn, step_onednn) =
          time_conv(conv, x, ConvAlgorithm::kOneDnnWinograd, ctx);
    }
    const std::string dims =
        fmt::format("{} x {} -> {} @ {}x{}", s.batch, s.in, s.out, s.size, s.size);
    auto ratio = [](double a, double b) { return b > 0 ? fmt::format("{:.2f}x", a / b) : "-"; };
    auto seconds = [](double t) { return t > 0 ? fmt::format("{:.4f}s", t) : "-"; };
    std::cout << fmt::format(
        "{:<28} {:>22} {:>8.4f}s {:>8.4f}s {:>6} {:>8.4f}s {:>8.4f}s {:>6} {:>8.1e} {:>9} {:>9} "
        "{:>6}\n",
        s.where, dims, fwd_direct, fwd_wino, ratio(fwd_direct, fwd_wino), step_direct, step_wino,
        ratio(step_direct, step_wino), diff, seconds(fwd_onednn), seconds(step_onednn),
        kernel_name(auto_picks));
    result["rows"].push_back({{"shape", s.where},
                              {"batch", s.batch},
                              {"in", s.in},
                              {"out", s.out},
                              {"size", s.size},
                              {"forward_direct_s", fwd_direct},
                              {"forward_winograd_s", fwd_wino},
                              {"step_direct_s", step_direct},
                              {"step_winograd_s", step_wino},
                              {"forward_onednn_winograd_s", fwd_onednn},
                              {"step_onednn_winograd_s", step_onednn},
                              {"relative_difference", diff},
                              {"auto", kernel_name(auto_picks)}});
  }
  set_conv_algorithm(saved);
  if (!onednn) {
    std::cout << "oneDNN's Winograd is not available in this build or on this CPU (it needs "
                 "AVX-512): auto chooses between ours and the direct kernel.\n";
  }
  return result;
}

}  // namespace wico
