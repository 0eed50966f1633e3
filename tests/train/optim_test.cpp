#include "wico/train/optim.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>

#include "test_util.h"
#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/nn/batch_norm.h"

namespace wico::train {
namespace {

struct TwoPartNet : torch::nn::Module {
  TwoPartNet() {
    backbone = register_module("backbone", torch::nn::Linear(4, 4));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({4})));
    head = register_module("head", torch::nn::Linear(4, 1));
  }
  torch::nn::Linear backbone{nullptr}, head{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};

TEST(Optim, GroupsByPatternWithMultipliersFreezingAndNoDecay) {
  TwoPartNet net;
  const Config c = Config::defaults({"train.lr=0.01", "train.weight_decay=0.05",
                                     "train.param_groups=['backbone\\.=0.1', 'head\\.bias=0']",
                                     "train.no_decay=['norm\\.']"});
  OptimizerSetup s = build_optimizer(net, c);
  ASSERT_EQ(s.groups.size(), 3u);
  EXPECT_EQ(s.groups[0].name, "backbone\\.=0.1");
  EXPECT_DOUBLE_EQ(s.groups[0].base_lr, 0.001);
  EXPECT_DOUBLE_EQ(s.groups[0].weight_decay, 0.05);
  EXPECT_EQ(s.groups[0].parameters, (std::vector<std::string>{"backbone.weight", "backbone.bias"}));
  EXPECT_EQ(s.groups[1].name, "base (no decay)");
  EXPECT_DOUBLE_EQ(s.groups[1].weight_decay, 0.0);
  EXPECT_EQ(s.groups[2].parameters, (std::vector<std::string>{"head.weight"}));
  EXPECT_EQ(s.frozen, (std::vector<std::string>{"head.bias"}));
  EXPECT_FALSE(net.head->bias.requires_grad());
  EXPECT_TRUE(net.head->weight.requires_grad());
  EXPECT_DOUBLE_EQ(learning_rate(*s.optimizer, 0), 0.001);
  set_learning_rates(*s.optimizer, s.groups, 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(*s.optimizer, 0), 0.0005);
  EXPECT_DOUBLE_EQ(learning_rate(*s.optimizer, 2), 0.005);
}

// CRIS's first epoch: its optimiser is built with lr 1e-4 for every group and the backbone's
// 0.1 arrives with the first MultiStepLR step, so train.param_groups_from 1 runs every group at
// train.lr for the first epoch's steps, then each at its multiplier.
TEST(Optim, MultipliersApplyFromParamGroupsFrom) {
  TwoPartNet net;
  const Config c = Config::defaults({"train.lr=1e-4", "train.epochs=50", "train.schedule=multistep",
                                     "train.milestones=[35]", "train.param_groups=['backbone\\.=0.1']",
                                     "train.param_groups_from=1"});
  OptimizerSetup s = build_optimizer(net, c);
  const Schedule schedule = Schedule::from_config(c, 50 * 10, /*steps_per_epoch=*/10);
  EXPECT_EQ(schedule.multipliers_from, 10);
  auto rates_at = [&](std::int64_t step) {
    set_learning_rates(*s.optimizer, s.groups, schedule.factor(step), schedule.multipliers_apply(step));
    return std::make_pair(learning_rate(*s.optimizer, 0), learning_rate(*s.optimizer, 1));
  };
  for (const std::int64_t step : {0, 9}) {  // epoch 1: both at 1e-4
    const auto epoch1 = rates_at(step);
    EXPECT_DOUBLE_EQ(epoch1.first, 1e-4);
    EXPECT_DOUBLE_EQ(epoch1.second, 1e-4);
  }
  const auto epoch2 = rates_at(10);                      // epochs 2-35: 1e-5 / 1e-4
  EXPECT_DOUBLE_EQ(epoch2.first, 1e-5);
  EXPECT_DOUBLE_EQ(epoch2.second, 1e-4);
  const auto epoch36 = rates_at(350);                    // epochs 36-50: 1e-6 / 1e-5
  EXPECT_DOUBLE_EQ(epoch36.first, 1e-6);
  EXPECT_DOUBLE_EQ(epoch36.second, 1e-5);
  // Without the key the multipliers apply from the first step.
  const Config d = Config::defaults({"train.lr=1e-4", "train.param_groups=['backbone\\.=0.1']"});
  EXPECT_TRUE(Schedule::from_config(d, 100, 10).multipliers_apply(0));
}

// The layout detectron2's build_optimizer sees in Mask2Former: norms inside a Sequential, an
// Embedding, and a bare Parameter that is neither.
struct NormsAndEmbeddings : torch::nn::Module {
  NormsAndEmbeddings() {
    input_proj = register_module("input_proj", torch::nn::Sequential(
                                                   torch::nn::Conv2d(4, 8, 1),
                                                   torch::nn::GroupNorm(2, 8)));
    query_feat = register_module("query_feat", torch::nn::Embedding(3, 8));
    level_embed = register_parameter("level_embed", torch::zeros({2, 8}));
    bn = register_module("bn", wico::nn::BatchNorm(8));
    head = register_module("head", torch::nn::Linear(8, 1));
  }
  torch::nn::Sequential input_proj{nullptr};
  torch::nn::Embedding query_feat{nullptr};
  at::Tensor level_embed;
  wico::nn::BatchNorm bn{nullptr};
  torch::nn::Linear head{nullptr};
};

TEST(Optim, NoDecayByModuleKindAsDetectron2) {
  NormsAndEmbeddings net;
  auto decay_of = [](const OptimizerSetup& s) {
    std::map<std::string, double> decay;
    for (const auto& g : s.groups) {
      for (const auto& p : g.parameters) decay[p] = g.weight_decay;
    }
    return decay;
  };
  const auto both = decay_of(build_optimizer(
      net, Config::defaults({"train.weight_decay=0.05",
                             "train.no_decay_modules=[norm, embedding]"})));
  const std::map<std::string, double> expected = {
      {"input_proj.0.weight", 0.05}, {"input_proj.0.bias", 0.05}, {"input_proj.1.weight", 0.0},
      {"input_proj.1.bias", 0.0},    {"query_feat.weight", 0.0},  {"level_embed", 0.05},
      {"bn.weight", 0.0},            {"bn.bias", 0.0},            {"head.weight", 0.05},
      {"head.bias", 0.05}};
  EXPECT_EQ(both, expected);
  const auto norms = decay_of(build_optimizer(
      net, Config::defaults({"train.weight_decay=0.05", "train.no_decay_modules=[norm]"})));
  EXPECT_DOUBLE_EQ(norms.at("query_feat.weight"), 0.05);
  EXPECT_DOUBLE_EQ(norms.at("input_proj.1.weight"), 0.0);
  EXPECT_THROW(Config::defaults({"train.no_decay_modules=[norms]"}), ConfigError);
}

TEST(Optim, FreezePatternAndEverythingFrozenIsAnError) {
  TwoPartNet net;
  OptimizerSetup s = build_optimizer(net, Config::defaults({"train.freeze=['^backbone']"}));
  EXPECT_EQ(s.frozen.size(), 2u);
  EXPECT_FALSE(net.backbone->weight.requires_grad());
  TwoPartNet other;
  EXPECT_THROW(build_optimizer(other, Config::defaults({"train.freeze=['.']"})), Error);
}

TEST(Optim, BadGroupEntriesNameTheEntry) {
  const std::string m = test::thrown_message<ConfigError>(
      [] { parse_group_rules({"backbone=abc"}); });
  EXPECT_NE(m.find("'backbone=abc'"), std::string::npos) << m;
  EXPECT_THROW(parse_group_rules({"no-equals-sign"}), ConfigError);
  EXPECT_THROW(parse_group_rules({"([=0.1"}), ConfigError);
  EXPECT_THROW(parse_group_rules({"x=-1"}), ConfigError);
  TwoPartNet net;
  EXPECT_THROW(build_optimizer(net, Config::defaults({"train.freeze=['(']"})), ConfigError);
}

TEST(Optim, AdamWDecouplesWeightDecay) {
  // One AdamW step on a zero gradient moves a weight only by lr * wd * w.
  auto w = torch::full({1}, 2.0, torch::requires_grad());
  torch::optim::AdamW opt({w}, torch::optim::AdamWOptions(0.1).weight_decay(0.5));
  w.mutable_grad() = torch::zeros({1});
  opt.step();
  EXPECT_NEAR(w.item<double>(), 2.0 - 0.1 * 0.5 * 2.0, 1e-7);
}

TEST(Schedule, PolyMultistepWarmup) {
  Schedule poly;
  poly.kind = Schedule::Kind::kPoly;
  poly.total = 100;
  poly.poly_power = 0.9;
  EXPECT_DOUBLE_EQ(poly.factor(0), 1.0);
  EXPECT_NEAR(poly.factor(50), std::pow(0.5, 0.9), 1e-12);
  EXPECT_DOUBLE_EQ(poly.factor(100), 0.0);

  Schedule multi;
  multi.kind = Schedule::Kind::kMultistep;
  multi.milestones = {10, 20};
  multi.gamma = 0.1;
  EXPECT_DOUBLE_EQ(multi.factor(9), 1.0);
  EXPECT_NEAR(multi.factor(10), 0.1, 1e-15);
  EXPECT_NEAR(multi.factor(25), 0.01, 1e-15);

  Schedule warm;
  warm.warmup = 10;
  warm.warmup_factor = 0.001;
  EXPECT_DOUBLE_EQ(warm.factor(0), 0.001);
  EXPECT_NEAR(warm.factor(5), 0.001 + 0.999 * 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(warm.factor(10), 1.0);
}

// MAttNet's decay: lr0 * 0.1^((iter - 8000) / 8000) after iteration 8000, continuously.
TEST(Schedule, ExponentialDecayAsMattnet) {
  const Config c = Config::defaults({"train.iterations=50000", "train.schedule=exponential",
                                     "train.decay_start=8000", "train.decay_every=8000"});
  const Schedule s = Schedule::from_config(c, 50000, 1);
  EXPECT_DOUBLE_EQ(s.factor(0), 1.0);
  EXPECT_DOUBLE_EQ(s.factor(8000), 1.0);
  EXPECT_NEAR(s.factor(12000), std::pow(0.1, 0.5), 1e-12);
  EXPECT_NEAR(s.factor(16000), 0.1, 1e-12);
  EXPECT_NEAR(s.factor(40000), 1e-4, 1e-15);
}

TEST(Schedule, EpochMilestonesBecomeSteps) {
  const Config c = Config::defaults({"train.epochs=50", "train.schedule=multistep",
                                     "train.milestones=[35]"});
  const Schedule s = Schedule::from_config(c, 50 * 7, 7);
  EXPECT_EQ(s.milestones, (std::vector<std::int64_t>{245}));
  EXPECT_THROW(Schedule::from_config(Config::defaults({"train.schedule=multistep"}), 10, 1),
               ConfigError);
}

}  // namespace
}  // namespace wico::train
