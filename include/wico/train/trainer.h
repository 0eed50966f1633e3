// The training engine: one loop for every model behind nn::RisModel (a branch alone or a WiCo
// pair). It owns the run directory's training outputs: log lines, metrics.jsonl (one record per
// logging step and per validation), checkpoints (last K and the best by a chosen validation
// metric), and the final evaluation. On several processes (c10d), rank 0 alone writes.
//
// Exactness: the data order is a function of (seed, epoch), the position in an epoch is part of
// every checkpoint and the generators' states too, so N steps + resume + M steps gives the same
// parameters as N + M straight steps (bit for bit on CPU).
#pragma once
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "wico/core/config.h"
#include "wico/train/checkpoint.h"

namespace wico::nn {
class RisModel;
}

namespace wico::train {

// Throws ConfigError when the model has frozen batch norms and every one of them is still the
// identity (no weights loaded into a frozen trunk); the trainer checks it before a fresh run.
void require_loaded_frozen_norms(torch::nn::Module& model);

class Distributed;

struct TrainResult {
  TrainState state;
  int stopped_by_signal = 0;  // SIGINT or SIGTERM when the run was interrupted, else 0
  std::filesystem::path last_checkpoint;
  double best_metric = 0;  // of the best checkpoint (when validation ran)
};

// Stop requests: the trainer's signal handlers set it; tests may set it directly.
std::atomic<int>& stop_request();

class Trainer {
 public:
  // `run_dir` is runs/<name>; `resume`: continue from its newest checkpoint (the config must be
  // the one it was written with). `dist` may be null for a single process.
  Trainer(Config config, std::filesystem::path run_dir, bool resume, Distributed* dist = nullptr);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains until train.iterations / train.epochs are done or a stop is requested. Handles
  // SIGINT/SIGTERM while it runs: the current step finishes, a checkpoint is written and the
  // result says which signal stopped it.
  TrainResult run();

  // The model being trained (built by run()); null before.
  std::shared_ptr<nn::RisModel> model() const;

  // Called after every optimiser step with the iteration just finished (tests, tools).
  void on_step(std::function<void(std::int64_t iteration)> callback);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wico::train
