#include "wico/train/optim.h"

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/normalization.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/nn/batch_norm.h"

namespace wico::train {

std::vector<GroupRule> parse_group_rules(const std::vector<std::string>& entries) {
  std::vector<GroupRule> rules;
  for (const auto& entry : entries) {
    const auto eq = entry.rfind('=');
    GroupRule rule;
    try {
      if (eq == std::string::npos || eq == 0) throw std::invalid_argument("no '='");
      rule.entry = entry;
      rule.pattern = entry.substr(0, eq);
      std::size_t used = 0;
      rule.lr_multiplier = std::stod(entry.substr(eq + 1), &used);
      if (used != entry.size() - eq - 1 || rule.lr_multiplier < 0) {
        throw std::invalid_argument("bad multiplier");
      }
      rule.regex = std::regex(rule.pattern);
    } catch (const std::exception&) {
      throw ConfigError("train.param_groups entry '" + entry +
                        "': expected 'regex=multiplier' with a valid regex and a multiplier >= 0 "
                        "(0 freezes), e.g. 'backbone\\.=0.1'");
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

namespace {

std::vector<std::regex> parse_patterns(const std::vector<std::string>& patterns,
                                       const std::string& key) {
  std::vector<std::regex> out;
  for (const auto& p : patterns) {
    try {
      out.emplace_back(p);
    } catch (const std::regex_error& e) {
      throw ConfigError(key + " entry '" + p + "' is not a valid regex: " + e.what());
    }
  }
  return out;
}

bool matches_any(const std::string& name, const std::vector<std::regex>& patterns) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::regex& r) { return std::regex_search(name, r); });
}

bool is_norm(const torch::nn::Module& m) {
  return dynamic_cast<const torch::nn::BatchNorm1dImpl*>(&m) ||
         dynamic_cast<const torch::nn::BatchNorm2dImpl*>(&m) ||
         dynamic_cast<const torch::nn::BatchNorm3dImpl*>(&m) ||
         dynamic_cast<const torch::nn::GroupNormImpl*>(&m) ||
         dynamic_cast<const torch::nn::LayerNormImpl*>(&m) ||
         dynamic_cast<const torch::nn::LocalResponseNormImpl*>(&m) ||
         dynamic_cast<const nn::BatchNormImpl*>(&m);
}

// Full names of the parameters that train.no_decay_modules exempts by their module's kind, as
// detectron2's build_optimizer does by isinstance (norm_module_types, nn.Embedding).
std::set<std::string> exempt_by_module(torch::nn::Module& model,
                                       const std::vector<std::string>& kinds) {
  const bool norms = std::count(kinds.begin(), kinds.end(), "norm") > 0;
  const bool embeddings = std::count(kinds.begin(), kinds.end(), "embedding") > 0;
  std::set<std::string> names;
  if (!norms && !embeddings) return names;
  auto add = [&](const std::string& prefix, const torch::nn::Module& m) {
    const bool is_exempt = (norms && is_norm(m)) ||
                           (embeddings && dynamic_cast<const torch::nn::EmbeddingImpl*>(&m));
    if (!is_exempt) return;
    for (const auto& p : m.named_parameters(/*recurse=*/false)) {
      names.insert(prefix.empty() ? p.key() : prefix + "." + p.key());
    }
  };
  add("", model);  // include_self would need the model held in a shared_ptr
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    add(item.key(), *item.value());
  }
  return names;
}

}  // namespace

OptimizerSetup build_optimizer(torch::nn::Module& model, const Config& config) {
  const auto rules = parse_group_rules(config.texts("train.param_groups"));
  const auto frozen_patterns = parse_patterns(config.texts("train.freeze"), "train.freeze");
  const auto no_decay = parse_patterns(config.texts("train.no_decay"), "train.no_decay");
  const auto exempt = exempt_by_module(model, config.texts("train.no_decay_modules"));
  const double lr = config.real("train.lr");
  const double wd = config.real("train.weight_decay");

  OptimizerSetup setup;
  // Groups keyed by (rule index or -1, no-decay), in order of first appearance, so the group
  // order is a function of the model's parameter order alone.
  std::vector<std::pair<int, bool>> order;
  std::map<std::pair<int, bool>, std::vector<at::Tensor>> tensors;
  std::map<std::pair<int, bool>, std::vector<std::string>> names;
  for (auto& item : model.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    at::Tensor& p = item.value();
    int rule = -1;
    for (std::size_t r = 0; r < rules.size(); ++r) {
      if (std::regex_search(name, rules[r].regex)) {
        rule = static_cast<int>(r);
        break;
      }
    }
    const double multiplier = rule < 0 ? 1.0 : rules[static_cast<std::size_t>(rule)].lr_multiplier;
    if (!p.requires_grad() || multiplier == 0.0 || matches_any(name, frozen_patterns)) {
      p.set_requires_grad(false);
      setup.frozen.push_back(name);
      continue;
    }
    const std::pair<int, bool> key{rule, exempt.count(name) > 0 || matches_any(name, no_decay)};
    if (!tensors.count(key)) order.push_back(key);
    tensors[key].push_back(p);
    names[key].push_back(name);
  }
  WICO_CHECK(!order.empty(), "every parameter of the model is frozen (train.freeze, "
                             "train.param_groups); nothing to train");

  const bool adamw = config.text("train.optimizer") == "adamw";
  const auto& betas = config.reals("train.betas");
  const double eps = config.real("train.eps");
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (const auto& key : order) {
    ParamGroupInfo info;
    const GroupRule* rule = key.first < 0 ? nullptr : &rules[static_cast<std::size_t>(key.first)];
    info.name = rule ? rule->entry : "base";
    if (key.second) info.name += " (no decay)";
    info.lr_multiplier = rule ? rule->lr_multiplier : 1.0;
    info.base_lr = lr * info.lr_multiplier;
    info.weight_decay = key.second ? 0.0 : wd;
    info.parameters = names[key];
    std::unique_ptr<torch::optim::OptimizerOptions> options;
    if (adamw) {
      options = std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(info.base_lr)
              .betas({betas.at(0), betas.at(1)})
              .eps(eps)
              .weight_decay(info.weight_decay));
    } else {
      options = std::make_unique<torch::optim::AdamOptions>(
          torch::optim::AdamOptions(info.base_lr)
              .betas({betas.at(0), betas.at(1)})
              .eps(eps)
              .weight_decay(info.weight_decay));
    }
    groups.emplace_back(tensors[key], std::move(options));
    setup.groups.push_back(std::move(info));
  }
  if (adamw) {
    setup.optimizer = std::make_unique<torch::optim::AdamW>(
        std::move(groups), torch::optim::AdamWOptions(lr).weight_decay(wd));
  } else {
    setup.optimizer = std::make_unique<torch::optim::Adam>(
        std::move(groups), torch::optim::AdamOptions(lr).weight_decay(wd));
  }
  return setup;
}

double Schedule::factor(std::int64_t iteration) const {
  double f = 1.0;
  switch (kind) {
    case Kind::kConstant: break;
    case Kind::kPoly:
      f = std::pow(std::max(0.0, 1.0 - static_cast<double>(iteration) /
                                           static_cast<double>(std::max<std::int64_t>(total, 1))),
                   poly_power);
      break;
    case Kind::kMultistep:
      for (std::int64_t m : milestones) {
        if (iteration >= m) f *= gamma;
      }
      break;
    case Kind::kExponential:
      // MAttNet's train.py: lr0 * 0.1^((iter - start) / every) once iter > start (true division).
      if (iteration > decay_start) {
        f = std::pow(gamma, static_cast<double>(iteration - decay_start) /
                                static_cast<double>(decay_every));
      }
      break;
  }
  if (iteration < warmup) {
    const double t = static_cast<double>(iteration) / static_cast<double>(warmup);
    f *= warmup_factor + (1.0 - warmup_factor) * t;
  }
  return f;
}

Schedule Schedule::from_config(const Config& config, std::int64_t total_steps,
                               std::int64_t steps_per_epoch) {
  Schedule s;
  const std::string& kind = config.text("train.schedule");
  s.kind = kind == "poly"          ? Kind::kPoly
           : kind == "multistep"   ? Kind::kMultistep
           : kind == "exponential" ? Kind::kExponential
                                   : Kind::kConstant;
  s.decay_start = config.integer("train.decay_start");
  s.decay_every = config.integer("train.decay_every");
  s.poly_power = config.real("train.poly_power");
  s.gamma = config.real("train.gamma");
  s.warmup = config.integer("train.warmup_iterations");
  s.warmup_factor = config.real("train.warmup_factor");
  s.total = total_steps;
  const bool epochs = config.integer("train.epochs") > 0;
  s.multipliers_from = config.integer("train.param_groups_from") * (epochs ? steps_per_epoch : 1);
  for (std::int64_t m : config.integers("train.milestones")) {
    s.milestones.push_back(epochs ? m * steps_per_epoch : m);
  }
  if (s.kind == Kind::kMultistep && s.milestones.empty()) {
    throw ConfigError("train.schedule multistep needs train.milestones (" +
                      std::string(epochs ? "epochs" : "iterations") + ")");
  }
  return s;
}

void set_learning_rates(torch::optim::Optimizer& optimizer,
                        const std::vector<ParamGroupInfo>& groups, double factor,
                        bool multipliers) {
  auto& param_groups = optimizer.param_groups();
  WICO_CHECK(param_groups.size() == groups.size(), "optimizer has ", param_groups.size(),
             " groups, expected ", groups.size());
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const double base = multipliers ? groups[g].base_lr : groups[g].base_lr / groups[g].lr_multiplier;
    param_groups[g].options().set_lr(base * factor);
  }
}

double learning_rate(const torch::optim::Optimizer& optimizer, std::size_t group) {
  return optimizer.param_groups().at(group).options().get_lr();
}

}  // namespace wico::train
