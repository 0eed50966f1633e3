// Optimiser and learning-rate schedule from the config: AdamW or Adam over parameter groups chosen
// by name patterns (train.param_groups "regex=multiplier", 0 freezes), parameters frozen by
// pattern (train.freeze), weight decay off by pattern (train.no_decay), and a schedule
// (constant, poly, multistep) with an optional linear warm-up.
#pragma once
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <memory>
#include <regex>
#include <string>
#include <vector>

namespace wico {
class Config;
}

namespace wico::train {

// One "regex=multiplier" entry of train.param_groups; the first rule whose regex matches a
// parameter's full name (std::regex_search) decides its learning-rate multiplier.
struct GroupRule {
  std::string entry;  // as written
  std::string pattern;
  std::regex regex;
  double lr_multiplier = 1.0;
};
// Parses train.param_groups; a malformed entry is a ConfigError naming it.
std::vector<GroupRule> parse_group_rules(const std::vector<std::string>& entries);

struct ParamGroupInfo {
  std::string name;  // "base", "backbone.*=0.1", or either with " (no decay)"
  double base_lr = 0;         // train.lr times the group's multiplier
  double lr_multiplier = 1;   // the train.param_groups multiplier (1 for "base")
  double weight_decay = 0;
  std::vector<std::string> parameters;
};

struct OptimizerSetup {
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::vector<ParamGroupInfo> groups;  // one per optimiser param group, same order
  std::vector<std::string> frozen;     // parameters excluded from training
};

// Freezes (requires_grad false) what train.freeze and zero multipliers name, then builds the
// optimiser over the rest. Also used to list the groups (`wico train --dry-run`).
OptimizerSetup build_optimizer(torch::nn::Module& model, const Config& config);

// The learning-rate factor of optimiser step `iteration` (0-based) of a run of `total` steps.
struct Schedule {
  enum class Kind { kConstant, kPoly, kMultistep, kExponential };
  Kind kind = Kind::kConstant;
  double poly_power = 0.9;
  std::vector<std::int64_t> milestones;  // in steps (converted from epochs for epoch runs)
  double gamma = 0.1;
  std::int64_t decay_start = 0, decay_every = 1;  // exponential: gamma^((step - start) / every)
  std::int64_t warmup = 0;  // steps of linear warm-up
  double warmup_factor = 0.001;
  std::int64_t total = 1;
  // train.param_groups_from in steps: before it every group runs at train.lr (CRIS's first
  // epoch, where its MultiStepLR has not yet applied the backbone's 0.1).
  std::int64_t multipliers_from = 0;

  double factor(std::int64_t iteration) const;
  bool multipliers_apply(std::int64_t iteration) const { return iteration >= multipliers_from; }
  // train.schedule and friends; `steps_per_epoch` converts epoch milestones for epoch runs.
  static Schedule from_config(const Config& config, std::int64_t total_steps,
                              std::int64_t steps_per_epoch);
};

// Sets every group's learning rate to its base rate times `factor` (without `multipliers`:
// train.lr times `factor` for every group).
void set_learning_rates(torch::optim::Optimizer& optimizer,
                        const std::vector<ParamGroupInfo>& groups, double factor,
                        bool multipliers = true);
double learning_rate(const torch::optim::Optimizer& optimizer, std::size_t group);

}  // namespace wico::train
