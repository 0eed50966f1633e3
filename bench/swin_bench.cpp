// `wico bench swin`: Swin-B (window 12, LAVT's backbone) forward at 480 x 480, batch 1, inference
// mode, beside Debian's python3-torchvision SwinTransformer of the same size (window 12: its
// swin_b() fixes the window at 7, so the class is built directly) in the same run and at the same
// thread count. Reports the ratio and both FLOP rates against the machine's GEMM rate measured
// here too. --quick: Swin-T, window 7, 224 x 224.
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <iostream>

#include "wico/backbones/swin.h"
#include "wico/core/benchmark.h"

namespace wico {

namespace {

using backbones::SwinOptions;


const char* kPythonSwin = R"PY(
import json, time, torch
from torchvision.models.swin_transformer import SwinTransformer
torch.set_num_threads(THREADS)
torch.manual_seed(0)
model = SwinTransformer(patch_size=[4, 4], embed_dim=EMBED, depths=DEPTHS, num_heads=HEADS,
                        window_size=[WINDOW, WINDOW], stochastic_depth_prob=0.3).eval()
x = torch.randn(1, 3, SIZE, SIZE)
with torch.inference_mode():
    def run():
        return model.norm(model.features(x))  # the backbone: no pooling, no head
    for _ in range(WARMUP):
        run()
    times = []
    for _ in range(REPEATS):
        s = time.perf_counter(); run(); times.append(time.perf_counter() - s)
times.sort()
print(json.dumps({"torch": torch.__version__, "seconds": times[len(times) // 2]}))
)PY";

std::string list(const std::vector<std::int64_t>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

}  // namespace

nlohmann::json bench_swin(const BenchContext& ctx) {
  const SwinOptions options = ctx.quick ? SwinOptions::tiny(7) : SwinOptions::base(12);
  const std::int64_t size = ctx.quick ? 224 : 480;
  const std::string name = ctx.quick ? "Swin-T/7" : "Swin-B/12";
  const int threads = ctx.runtime.threads;
  at::set_num_threads(threads);

  // The machine's GEMM rate at this thread count (the peak the model's rate is compared with).
  const double gemm_rate = gemm_gflops();

  std::string script = kPythonSwin;
  auto replace = [&](const std::string& key, const std::string& value) {
    script.replace(script.find(key), key.size(), value);
  };
  replace("THREADS", std::to_string(threads));
  replace("EMBED", std::to_string(options.embed_dim));
  replace("DEPTHS", list(options.depths));
  replace("HEADS", list(options.num_heads));
  replace("WINDOW", std::to_string(options.window_size));
  replace("WINDOW", std::to_string(options.window_size));
  replace("SIZE", std::to_string(size));
  replace("SIZE", std::to_string(size));
  replace("WARMUP", std::to_string(std::max(1, ctx.warmup)));
  replace("REPEATS", std::to_string(ctx.repeats));
  const auto reference = run_python_reference(ctx.python, script);

  torch::manual_seed(0);
  backbones::SwinTransformer swin(options);
  swin->eval();
  const auto image = torch::randn({1, 3, size, size});
  double ours = 0;
  {
    c10::InferenceMode guard;
    ours = median_seconds([&] { swin->forward(image); }, ctx.repeats, std::max(1, ctx.warmup));
  }
  at::set_num_threads(ctx.runtime.threads);

  const double gflop = backbones::swin_matmul_flops(options, size, size) / 1e9;
  const double theirs = reference.is_null() ? 0.0 : reference.value("seconds", 0.0);
  std::cout << fmt::format(
      "{} forward, {}x{}, batch 1, {} threads, {:.1f} GFLOP (matrix "
      "products); GEMM rate {:.1f} GFLOP/s\n",
      name, size, size, threads, gflop, gemm_rate);
  std::cout << fmt::format("{:>20} {:>10} {:>10} {:>10}\n", "", "seconds", "GFLOP/s", "of GEMM");
  std::cout << fmt::format("{:>20} {:>10.3f} {:>10.1f} {:>9.0f}%\n", "wico", ours, gflop / ours,
                           100.0 * gflop / ours / gemm_rate);
  if (theirs > 0) {
    std::cout << fmt::format("{:>20} {:>10.3f} {:>10.1f} {:>9.0f}%\n", "python3-torchvision",
                             theirs, gflop / theirs, 100.0 * gflop / theirs / gemm_rate);
    std::cout << fmt::format("speed-up over torchvision: {:.2f}x\n", theirs / ours);
  } else {
    std::cout << "python3-torchvision: not available, no comparison\n";
  }
  nlohmann::json result = {{"benchmark", "swin"},
                           {"model", name},
                           {"size", size},
                           {"threads", threads},
                           {"gflop", gflop},
                           {"gemm_gflops", gemm_rate},
                           {"wico_seconds", ours},
                           {"python_seconds", theirs > 0 ? nlohmann::json(theirs) : nullptr},
                           {"speedup", theirs > 0 ? nlohmann::json(theirs / ours) : nullptr}};
  if (!reference.is_null()) result["python_torch"] = reference["torch"];
  return result;
}

}  // namespace wico
