// Checkpoints: everything needed to continue a run exactly (model parameters and buffers,
// optimiser state, random generator states, the position in the data, the resolved config and
// its hash) in one file, written atomically. A directory of them keeps the last K and the best.
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "wico/core/config.h"


namespace wico::train {

// Where a run is: optimiser steps done and the data position of the next step.
struct TrainState {
  std::int64_t iteration = 0;       // optimiser steps done
  std::int64_t epoch = 0;           // epoch of the next batch
  std::int64_t batch_in_epoch = 0;  // batches of `epoch` already consumed
  double best_metric = -std::numeric_limits<double>::infinity();
  std::int64_t best_iteration = -1;
};

// Parameters and buffers by their full dotted names.
std::map<std::string, at::Tensor> model_state(const torch::nn::Module& model);

// Copies `state` into `model`. With a `prefix`, only entries under "prefix." are taken, with the
// prefix removed (a branch loaded from its own checkpoint: prefix "" of its file into a
// submodule is done by passing the submodule). Missing or unexpected entries and shape
// mismatches are one wico::Error listing them, naming `source`; `strict` false only logs the
// missing and unexpected ones.
void load_model_state(torch::nn::Module& model, const std::map<std::string, at::Tensor>& state,
                      const std::string& source, bool strict = true);

// Loads train.init's entries into `model`: 'checkpoint' (the whole model) or 'part=checkpoint'
// (the submodule named `part`, e.g. a WiCo pair's alpha / beta from each branch's own run).
void load_initial_weights(torch::nn::Module& model, const Config& config);
// True when one train.init entry loads the whole model (a checkpoint or map=NAME:file without a
// part): then the components' published starting points need not be read.
bool init_replaces_whole_model(const Config& config);

// Writes a checkpoint atomically (a failed write keeps the previous file). Refuses to write a
// model with a non-finite parameter.
void save_checkpoint(const std::filesystem::path& path, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const TrainState& state,
                     const Config& config);

class Checkpoint {
 public:
  // Reads `path`; a missing, truncated or corrupt file is a wico::Error naming it.
  static Checkpoint read(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const TrainState& state() const { return state_; }
  const std::string& config_yaml() const { return config_yaml_; }
  const std::string& config_hash() const { return config_hash_; }
  const std::map<std::string, at::Tensor>& model() const { return model_; }

  // The config it was written with (checked by this build's schema), plus `overrides`.
  Config config(const std::vector<std::string>& overrides = {}) const;
  // Throws a ConfigError listing the keys that differ when `config` is not the one this
  // checkpoint was written with.
  void require_same_config(const Config& config) const;
  void load_model(torch::nn::Module& model, bool strict = true) const;
  void load_optimizer(torch::optim::Optimizer& optimizer);
  // Restores the CPU (and, when present, CUDA) generator states saved with it.
  void restore_rng() const;

 private:
  std::filesystem::path path_;
  TrainState state_;
  std::string config_yaml_, config_hash_;
  std::map<std::string, at::Tensor> model_;
  std::optional<torch::serialize::InputArchive> optimizer_;
  std::map<std::string, at::Tensor> rng_;
};

// runs/<name>/checkpoints: iter_<N>.pt files, best.pt, and the pruning of old ones.
class CheckpointDir {
 public:
  explicit CheckpointDir(std::filesystem::path dir, int keep_last = 3);
  std::filesystem::path path_for(std::int64_t iteration) const;
  std::filesystem::path best() const { return dir_ / "best.pt"; }
  // iter_*.pt files, oldest first.
  std::vector<std::filesystem::path> list() const;
  std::optional<std::filesystem::path> latest() const;
  // Removes all but the newest keep_last iteration checkpoints (best.pt is separate).
  void prune() const;
  // Removes the temporary files of checkpoint writes that a killed process left behind
  // (<name>.tmp.<pid>.<n> of a process that no longer runs); returns how many.
  int remove_stale_temporaries() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  int keep_last_;
};

}  // namespace wico::train
