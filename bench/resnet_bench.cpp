// `wico bench resnet`: the ResNet-50 trunk (stem and res2..res5, no pooling or fc) forward at
// 480 x 480, batch 1, inference mode, beside Debian's python3-torchvision resnet50 trunk in the
// same run and at the same thread count (as shipped, NCHW, and in channels-last). Ours runs with
// frozen batch norms as is, in channels-last, and channels-last with the norms folded into the
// convolutions (fuse_frozen_norms); the ratio is torchvision's default over our fastest. FLOP
// rates are against the machine's GEMM rate measured here too. --quick: 224 x 224.
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <iostream>

#include "wico/backbones/resnet.h"
#include "wico/core/benchmark.h"

namespace wico {

namespace {

const char* kPythonResNet = R"PY(
import json, time, torch
from torchvision.models import resnet50
torch.set_num_threads(THREADS)
torch.manual_seed(0)
model = resnet50().eval()
def trunk(x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))
def median(x):
    with torch.inference_mode():
        for _ in range(WARMUP):
            trunk(x)
        times = []
        for _ in range(REPEATS):
            s = time.perf_counter(); trunk(x); times.append(time.perf_counter() - s)
    times.sort()
    return times[len(times) // 2]
x = torch.randn(1, 3, SIZE, SIZE)
plain = median(x)
model = model.to(memory_format=torch.channels_last)
channels_last = median(x.contiguous(memory_format=torch.channels_last))
print(json.dumps({"torch": torch.__version__, "seconds": plain,
                  "channels_last_seconds": channels_last}))
)PY";

// Channels-last weights: oneDNN's convolutions then skip reordering activations.
void to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

}  // namespace

nlohmann::json bench_resnet(const BenchContext& ctx) {
  const std::int64_t size = ctx.quick ? 224 : 480;
  const int threads = ctx.runtime.threads;
  const int warmup = std::max(1, ctx.warmup);
  at::set_num_threads(threads);
  const double gemm_rate = gemm_gflops();

  const auto reference = run_python_reference(
      ctx.python, timing_script(kPythonResNet, threads, size, warmup, ctx.repeats));

  torch::manual_seed(0);
  const auto options = backbones::ResNetOptions::resnet50();  // frozen batch norms
  backbones::ResNet model(options);
  model->eval();
  const auto image = torch::randn({1, 3, size, size});
  const auto image_cl = image.contiguous(at::MemoryFormat::ChannelsLast);
  auto time_it = [&](const torch::Tensor& x) {
    c10::InferenceMode guard;
    return median_seconds([&] { model->forward(x); }, ctx.repeats, warmup);
  };
  const double plain = time_it(image);
  to_channels_last(*model);
  const double channels_last = time_it(image_cl);
  model->fuse_frozen_norms();
  const double fused = time_it(image_cl);
  const double ours = std::min({plain, channels_last, fused});
  at::set_num_threads(ctx.runtime.threads);

  const double gflop = backbones::resnet_conv_flops(options, size, size) / 1e9;
  const double theirs = reference.is_null() ? 0.0 : reference.value("seconds", 0.0);
  const double theirs_cl =
      reference.is_null() ? 0.0 : reference.value("channels_last_seconds", 0.0);
  std::cout << fmt::format(
      "ResNet-50 trunk forward, {}x{}, batch 1, {} threads, {:.1f} GFLOP (convolutions); GEMM "
      "rate {:.1f} GFLOP/s\n",
      size, size, threads, gflop, gemm_rate);
  std::cout << fmt::format("{:>36} {:>10} {:>10} {:>10}\n", "", "seconds", "GFLOP/s", "of GEMM");
  auto row = [&](const std::string& label, double seconds) {
    std::cout << fmt::format("{:>36} {:>10.3f} {:>10.1f} {:>9.0f}%\n", label, seconds,
                             gflop / seconds, 100.0 * gflop / seconds / gemm_rate);
  };
  row("wico (frozen BN, NCHW)", plain);
  row("wico (channels-last)", channels_last);
  row("wico (channels-last, BN folded)", fused);
  if (theirs > 0) {
    row("python3-torchvision (NCHW)", theirs);
    if (theirs_cl > 0) row("python3-torchvision (channels-last)", theirs_cl);
    std::cout << fmt::format("speed-up over torchvision: {:.2f}x", theirs / ours);
    if (theirs_cl > 0) {
      std::cout << fmt::format(" ({:.2f}x over its channels-last)", theirs_cl / ours);
    }
    std::cout << "\n";
  } else {
    std::cout << "python3-torchvision: not available, no comparison\n";
  }
  nlohmann::json result = {
      {"benchmark", "resnet"},
      {"model", "resnet50 trunk"},
      {"size", size},
      {"threads", threads},
      {"gflop", gflop},
      {"gemm_gflops", gemm_rate},
      {"wico_seconds", ours},
      {"wico_nchw_seconds", plain},
      {"wico_channels_last_seconds", channels_last},
      {"wico_fused_seconds", fused},
      {"python_seconds", theirs > 0 ? nlohmann::json(theirs) : nullptr},
      {"python_channels_last_seconds", theirs_cl > 0 ? nlohmann::json(theirs_cl) : nullptr},
      {"speedup", theirs > 0 ? nlohmann::json(theirs / ours) : nullptr}};
  if (!reference.is_null()) result["python_torch"] = reference["torch"];
  return result;
}

}  // namespace wico
