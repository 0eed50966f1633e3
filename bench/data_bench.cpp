// `wico bench data`: can the loader keep a training step fed? Measures, in one run, on a
// synthetic set written for the purpose (480 x 480 input from JPEG):
//   1. the loader alone: samples/s with the configured worker threads (data.workers);
//   2. a tiny training step alone (a small conv segmentation net, forward + backward + SGD on a
//      ready batch): samples/s;
//   3. the two together, the step fed by the loader: samples/s, and the share of time spent
//      waiting for data.
// The loader must deliver at least 3x what the step consumes.
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "wico/core/benchmark.h"
#include "wico/core/stopwatch.h"
#include "wico/core/error.h"
#include "wico/data/loader.h"
#include "wico/data/synthetic.h"
#include "wico/data/tokenizer.h"
#include "wico/data/tokenizer_config.h"

namespace wico {

namespace {

using Clock = std::chrono::steady_clock;

// A stand-in for the tiny configs' networks until they exist: four stride-2 conv blocks to 1/16,
// a 1x1 head and bilinear up-sampling, trained with BCE.
struct TinySegNetImpl : torch::nn::Module {
  TinySegNetImpl() {
    int in = 3;
    for (int out : {16, 32, 64, 64}) {
      body->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(2).padding(1)));
      body->push_back(torch::nn::BatchNorm2d(out));
      body->push_back(torch::nn::ReLU());
      in = out;
    }
    register_module("body", body);
    head = register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, 1, 1)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = head(body->forward(x));
    return torch::nn::functional::interpolate(
        y, torch::nn::functional::InterpolateFuncOptions()
               .size(std::vector<int64_t>{x.size(2), x.size(3)})
               .mode(torch::kBilinear)
               .align_corners(false));
  }
  torch::nn::Sequential body;
  torch::nn::Conv2d head{nullptr};
};
TORCH_MODULE(TinySegNet);

}  // namespace

nlohmann::json bench_data(const BenchContext& ctx) {
  const Config& config = ctx.config;
  const int images = ctx.quick ? 24 : 160;
  const ScratchDir scratch("data");
  const auto& root = scratch.path();
  data::generate_synthetic({root, images, 1, ctx.runtime.threads, false});
  const auto refer = data::ReferDataset::load(root, "refcoco", "unc");
  const data::RefDataset dataset(refer, "train", data::RefDataset::Mode::kEvaluation);
  auto tokenizer = data::make_tokenizer_from_config(config, refer);
  data::LoaderOptions options = data::LoaderOptions::from_config(config);
  options.input_size = 480;
  options.shuffle = true;
  options.batch_size = static_cast<int>(config.integer("data.batch_size"));
  const std::int64_t batch = options.batch_size;

  // 1. The loader alone.
  double loader_rate = 0;
  {
    data::Loader loader(dataset, *tokenizer, options);
    loader.start_epoch(0);
    loader.next();  // warm-up: thread start, first decode
    std::int64_t samples = 0;
    const auto t = Clock::now();
    while (auto b = loader.next()) samples += b->size();
    loader_rate = samples / seconds_since(t);
  }

  // 2. The step alone, on one ready batch.
  torch::manual_seed(0);
  TinySegNet net;
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  auto step = [&](const data::Batch& b) {
    sgd.zero_grad();
    auto loss = torch::binary_cross_entropy_with_logits(net->forward(b.images), b.targets);
    loss.backward();
    sgd.step();
  };
  data::Loader one_batch(dataset, *tokenizer, [&] {
    auto o = options;
    o.workers = 0;
    return o;
  }());
  one_batch.start_epoch(0);
  const data::Batch ready = *one_batch.next();
  const double step_seconds = median_seconds([&] { step(ready); }, ctx.repeats, ctx.warmup);
  const double step_rate = batch / step_seconds;

  // 3. Both: the step fed by the loader, sharing the machine as in training.
  double fed_rate = 0, waiting = 0;
  {
    data::Loader loader(dataset, *tokenizer, options);
    loader.start_epoch(1);
    step(*loader.next());
    std::int64_t samples = 0;
    const auto t = Clock::now();
    while (true) {
      const auto w = Clock::now();
      auto b = loader.next();
      waiting += seconds_since(w);
      if (!b) break;
      step(*b);
      samples += b->size();
    }
    const double total = seconds_since(t);
    fed_rate = samples / total;
    waiting /= total;
  }

  std::cout << fmt::format(
      "input 480x480 from JPEG, batch {}, {} loader worker(s), {} LibTorch thread(s), {} samples\n"
      "  loader alone          {:8.1f} samples/s\n"
      "  tiny training step    {:8.1f} samples/s\n"
      "  loader / step         {:8.2f}x  (must be >= 3)\n"
      "  step fed by loader    {:8.1f} samples/s, {:.1f}% of the time waiting for data\n",
      batch, options.workers, ctx.runtime.threads, dataset.size(), loader_rate, step_rate,
      loader_rate / step_rate, fed_rate, 100 * waiting);
  return {{"benchmark", "data"},       {"input_size", 480},
          {"batch_size", batch},       {"workers", options.workers},
          {"threads", ctx.runtime.threads}, {"loader_samples_per_s", loader_rate},
          {"step_samples_per_s", step_rate}, {"ratio", loader_rate / step_rate},
          {"fed_samples_per_s", fed_rate}, {"waiting_share", waiting}};
}

}  // namespace wico
