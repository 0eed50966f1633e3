// `wico bench wico`: the extra cost of CFI + GSI per sample relative to the two branches (Table 3's
// speed column), at paper size (configs/wico/lavt_mattnet.yaml: LAVT Swin-B + BERT-base,
// Mask2Former R50 + MAttNet, CFI 3 layers, GSI) at 480x480, batch 1, inference mode: the median
// seconds of each part of the same forwards, measured in one run.
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <iostream>

#include "wico/core/benchmark.h"
#include "wico/core/config.h"
#include "wico/data/loader.h"
#include "wico/nn/ris_model.h"
#include "wico/wico/wico_model.h"

namespace wico {

nlohmann::json bench_wico(const BenchContext& ctx) {
  const std::string file =
      ctx.quick ? "configs/tiny/wico_lavt_mattnet.yaml" : "configs/wico/lavt_mattnet.yaml";
  const Config config = Config::load(file, {"train.init=[]"});
  at::set_num_threads(ctx.runtime.threads);
  torch::manual_seed(0);
  model::WicoModel model(config);
  model.eval();
  const std::int64_t size = config.integer("data.input_size"), words = 20;
  data::Batch batch;
  batch.images = torch::randn({1, 3, size, size});
  batch.token_ids = torch::randint(1000, 5000, {1, words}, torch::kLong);
  batch.attention_mask = torch::ones({1, words}, torch::kLong);
  batch.info.resize(1);
  c10::InferenceMode guard;
  std::map<std::string, std::vector<double>> parts;
  for (int i = 0; i < ctx.warmup + ctx.repeats; ++i) {
    const nn::RisOutput out = model.forward(batch, false);
    if (i < ctx.warmup) continue;
    for (const auto& [name, s] : out.seconds) parts[name].push_back(s);
  }
  const auto& names = model.branch_names();
  const double a = median(parts[names[0]]), b = median(parts[names[1]]), w = median(parts["wico"]);
  const double share = w / (a + b);
  std::cout << fmt::format(
      "WiCo {} ({}), {}x{}, batch 1, {} threads, median of {}\n"
      "  {:<10} {:8.3f} s\n  {:<10} {:8.3f} s\n  {:<10} {:8.3f} s  (CFI + GSI + blend)\n"
      "  extra cost of CFI + GSI: {:.1f}% of the two branches (goal <= 10%; the paper's about 8%)\n"
      "  peak resident memory {:.0f} MB\n",
      ctx.quick ? "tiny" : "paper size", file, size, size, ctx.runtime.threads, ctx.repeats,
      names[0], a, names[1], b, "wico", w, 100.0 * share, peak_resident_mb());
  return {{"config", file},       {"size", size},  {names[0], a}, {names[1], b},
          {"wico", w},            {"share", share}, {"resident_mb_peak", peak_resident_mb()}};
}

}  // namespace wico
