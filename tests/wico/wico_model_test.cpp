#include "wico/wico/wico_model.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_util.h"
#include "topdown/toy_batch.h"
#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/data/loader.h"
#include "wico/data/synthetic.h"
#include "wico/train/trainer.h"

namespace wico::model {
namespace {

const std::string kTopDown = WICO_SOURCE_DIR "/configs/tiny/topdown.yaml";
const std::string kLavt = WICO_SOURCE_DIR "/configs/tiny/lavt.yaml";

// The tiny pair at 64x64 with narrower branches (applied to both through wico.branch_set).
Config pair(const std::string& a, const std::string& b, std::vector<std::string> extra = {}) {
  std::vector<std::string> overrides = {
      "wico.branches=[" + a + ", " + b + "]",
      "wico.branch_set=[data.input_size=64, mask2former.encoder_layers=1, "
      "mask2former.decoder_layers=2, mask2former.queries=6, mask2former.points=256, "
      "top_down.top_k=4]",
      "data.input_size=64", "wico.cfi_dim=16", "wico.cfi_layers=1", "wico.cfi_heads=2",
      "wico.cfi_ffn=32", "wico.score_hidden=16", "train.init=[]"};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return Config::load(WICO_SOURCE_DIR "/configs/tiny/wico_lavt_mattnet.yaml", overrides);
}

std::shared_ptr<nn::RisModel> part(WicoModel& model, const std::string& name) {
  return std::dynamic_pointer_cast<nn::RisModel>(model.named_children()[name]);
}

TEST(WicoModel, MixedPairWithCfiAndGsiGivesEveryResultAndLoss) {
  torch::manual_seed(0);
  WicoModel model(pair(kTopDown, kLavt));
  EXPECT_EQ(model.branch_names()[0], "top_down");
  EXPECT_EQ(model.branch_names()[1], "bottom_up");
  const data::Batch batch = test::toy_instance_batch();
  const nn::RisOutput out = model.forward(batch, true);
  for (const char* name : {"top_down", "bottom_up", "fused"}) {
    ASSERT_TRUE(out.probabilities.count(name)) << name;
    EXPECT_EQ(out.probabilities.at(name).sizes(), (torch::IntArrayRef{2, 1, 64, 64})) << name;
  }
  for (const char* name : {"seg", "iou_top_down", "iou_bottom_up", "cfi_ce"}) {
    ASSERT_TRUE(out.losses.count(name)) << name;
    EXPECT_TRUE(std::isfinite(out.losses.at(name).item<double>())) << name;
  }
  // The branches' own losses (wico.branch_weight 1 by default), named by branch.
  EXPECT_EQ(out.losses.count("top_down.td_class"), 1u);
  EXPECT_EQ(out.losses.count("bottom_up.seg"), 1u);
  EXPECT_EQ(model.forward(batch, true).losses.size(), out.losses.size());
  const nn::RisOutput without = WicoModel(pair(kTopDown, kLavt, {"wico.branch_weight=0"})).forward(batch, true);
  EXPECT_EQ(without.losses.count("top_down.td_class"), 0u);
  torch::Tensor total = torch::zeros({});
  for (const auto& [k, v] : out.losses) total = total + v;
  total.backward();
  for (const auto& p : model.named_parameters()) {
    if (p.key().rfind("cfi.", 0) == 0 || p.key().rfind("score_", 0) == 0) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
    }
  }
  EXPECT_EQ(model.threshold("fused"), 0.35);
  EXPECT_EQ(model.threshold("bottom_up"), 0.5);
}

TEST(WicoModel, AtTheStartTheBottomUpResultIsTheBackendsOwn) {
  torch::manual_seed(1);
  WicoModel model(pair(kTopDown, kLavt));
  model.eval();
  torch::NoGradGuard no_grad;
  const data::Batch batch = test::toy_instance_batch();
  const nn::RisOutput out = model.forward(batch, false);
  const nn::RisOutput own = part(model, "beta")->forward(batch, false);
  EXPECT_TRUE(torch::allclose(out.probabilities.at("bottom_up"), own.probabilities.at("bottom_up"), 1e-5, 1e-6));
  // Evaluation uses mu: two forwards agree.
  const nn::RisOutput again = model.forward(batch, false);
  EXPECT_TRUE(torch::equal(out.probabilities.at("fused"), again.probabilities.at("fused")));
}

TEST(WicoModel, FixedRulesNeedNoScoreHeads) {
  torch::manual_seed(2);
  WicoModel model(pair(kTopDown, kLavt, {"wico.integration=average", "wico.cfi=false"}));
  model.eval();
  torch::NoGradGuard no_grad;
  const data::Batch batch = test::toy_instance_batch();
  const nn::RisOutput out = model.forward(batch, true);
  EXPECT_EQ(out.losses.count("iou_top_down"), 0u);
  EXPECT_EQ(out.losses.count("cfi_ce"), 0u);
  for (const auto& p : model.named_parameters()) EXPECT_EQ(p.key().rfind("score_", 0), std::string::npos) << p.key();
  // Average of Eq. 1's top-down map (mask x score: wico.td_map score) and the bottom-up
  // probabilities.
  const auto& td = out.probabilities.at("top_down");
  const auto& bu = out.probabilities.at("bottom_up");
  const auto expected = (td * out.confidences.at("top_down").view({2, 1, 1, 1}) + bu) / 2;
  EXPECT_TRUE(torch::allclose(out.probabilities.at("fused"), expected, 1e-5, 1e-6));
  // With wico.td_map binary: the chosen mask itself.
  torch::manual_seed(2);
  WicoModel binary(pair(kTopDown, kLavt, {"wico.integration=average", "wico.cfi=false", "wico.td_map=binary"}));
  binary.eval();
  const nn::RisOutput b = binary.forward(batch, false);
  EXPECT_TRUE(torch::allclose(b.probabilities.at("fused"),
                              (b.probabilities.at("top_down") + b.probabilities.at("bottom_up")) / 2, 1e-5, 1e-6));
}

TEST(WicoModel, IntersectionAndUnionTakeEachBranchsOwnBinaryResult) {
  for (const char* rule : {"intersection", "union"}) {
    torch::manual_seed(4);
    WicoModel model(pair(kTopDown, kLavt, {std::string("wico.integration=") + rule, "wico.cfi=false"}));
    model.eval();
    torch::NoGradGuard no_grad;
    const nn::RisOutput out = model.forward(test::toy_instance_batch(), false);
    // Each branch is foreground above its own threshold (0.5), as in its own report and MER.
    const auto td = out.probabilities.at("top_down") > model.threshold("top_down");
    const auto bu = out.probabilities.at("bottom_up") > model.threshold("bottom_up");
    const auto expected = (std::string(rule) == "union" ? td.logical_or(bu) : td.logical_and(bu)).to(torch::kFloat);
    EXPECT_TRUE(torch::equal(out.probabilities.at("fused"), expected)) << rule;
  }
}

TEST(WicoModel, TheSegmentationLossReachesTheConfidencesOnlyWhenAsked) {
  for (const bool reach : {false, true}) {
    torch::manual_seed(5);
    WicoModel model(pair(kTopDown, kLavt, {"wico.cfi=false", std::string("wico.confidence_from_seg=") + (reach ? "true" : "false")}));
    const nn::RisOutput out = model.forward(test::toy_instance_batch(), true);
    ASSERT_TRUE(out.spreads.count("top_down") && out.spreads.count("bottom_up"));
    // log sigma starts at wico.initial_log_sigma (-3) for every sample.
    EXPECT_TRUE(torch::allclose(out.spreads.at("bottom_up"), torch::full({2}, std::exp(-3.0f))));
    out.losses.at("seg").backward();
    double head_gradient = 0;
    for (const auto& p : model.named_parameters()) {
      if (p.key().rfind("score_", 0) == 0 && p.value().grad().defined()) head_gradient += p.value().grad().abs().sum().item<double>();
    }
    if (reach) {
      EXPECT_GT(head_gradient, 0.0);
    } else {
      EXPECT_EQ(head_gradient, 0.0);
    }
  }
}

TEST(WicoModel, TopDownScoreHeadCanSeeTheCandidateScoreStatistics) {
  torch::manual_seed(6);
  WicoModel plain(pair(kTopDown, kLavt, {"wico.cfi=false"}));
  WicoModel stats(pair(kTopDown, kLavt, {"wico.cfi=false", "wico.td_score_stats=true"}));
  const auto width = [](WicoModel& m) { return m.named_parameters()["score_alpha.fc1.weight"].size(1); };
  EXPECT_EQ(width(stats), width(plain) + 3);  // max, margin, entropy
  EXPECT_EQ(stats.named_parameters()["score_beta.fc1.weight"].size(1),
            plain.named_parameters()["score_beta.fc1.weight"].size(1));
  const nn::RisOutput out = stats.forward(test::toy_instance_batch(), true);
  EXPECT_TRUE(std::isfinite(out.losses.at("iou_top_down").item<double>()));
}

TEST(WicoModel, PairsOfOneKindIntegrateWithoutCfi) {
  torch::manual_seed(3);
  WicoModel model(pair(kTopDown, kTopDown, {"wico.cfi=false", "wico.integration=si"}));
  EXPECT_EQ(model.branch_names()[0], "top_down_a");
  EXPECT_EQ(model.branch_names()[1], "top_down_b");
  const nn::RisOutput out = model.forward(test::toy_instance_batch(), true);
  EXPECT_TRUE(out.losses.count("iou_top_down_a"));
  EXPECT_TRUE(out.probabilities.count("top_down_b"));
  const auto message = test::thrown_message<ConfigError>([] { WicoModel m(pair(kLavt, kLavt)); });
  EXPECT_NE(message.find("wico.cfi needs one top-down and one bottom-up branch"), std::string::npos) << message;
}

// Frozen branches (Table 2's rows without CFI) compute the same function at every step: their
// dropouts (MAttNet's, 0.5 on the words) are off, not only their batch norms.
TEST(WicoModel, FrozenBranchesGiveTheSameOutputAtEveryTrainingStep) {
  test::TempDir dir;
  data::generate_synthetic({dir.path() / "data", 12, 3, 1, false});
  const data::Batch probe = test::toy_instance_batch();
  for (const std::string mode : {"eval", "train"}) {
    std::vector<std::string> extra = {
        "data.root=" + (dir.path() / "data").string(), "data.batch_size=2", "data.workers=1",
        "runtime.device=cpu", "train.iterations=2", "train.val_every=-1", "train.warmup_iterations=0",
        "log.progress=off", "wico.cfi=false", "wico.branch_weight=0", "train.freeze=[^alpha\\., ^beta\\.]",
        "train.batch_norm=frozen", "train.frozen_modules=" + mode};
    train::Trainer trainer(pair(kTopDown, kLavt, extra), dir.path() / ("run_" + mode), false);
    std::vector<at::Tensor> scores;
    trainer.on_step([&](std::int64_t) {
      auto model = std::dynamic_pointer_cast<WicoModel>(trainer.model());
      ASSERT_TRUE(model);
      torch::NoGradGuard no_grad;
      scores.push_back(part(*model, "alpha")->forward(probe, false).confidences.at("top_down").clone());
      EXPECT_TRUE(model->is_training());  // the score heads train
    });
    trainer.run();
    ASSERT_EQ(scores.size(), 2u);
    if (mode == "eval") {
      EXPECT_TRUE(torch::equal(scores[0], scores[1])) << scores[0] << scores[1];
    } else {
      EXPECT_FALSE(torch::equal(scores[0], scores[1]));  // dropout on: the check can fail
    }
  }
}

// The paper-size pairs as `wico tables --configs configs/paper` builds them (the branches from
// configs/paper, whose top-down branch resizes by the shortest edge on its own): the pair's
// wico.branch_set puts both branches in the pair's frame, so the pair builds.
TEST(WicoModel, PaperPairsBuildFromTheTablesBranchConfigs) {
  for (const std::string backend : {"lavt", "cris"}) {
    const Config config = Config::load(
        WICO_SOURCE_DIR "/configs/paper/wico_" + backend + "_mattnet.yaml",
        {"wico.branches=[" WICO_SOURCE_DIR "/configs/paper/topdown.yaml, " WICO_SOURCE_DIR
         "/configs/paper/" + backend + ".yaml]",
         "train.init=[]"});
    EXPECT_NO_THROW(WicoModel model(config)) << backend;
  }
}

TEST(WicoModel, BranchConfigErrorsNameTheBranch) {
  const auto missing = test::thrown_message<ConfigError>([] { WicoModel m(pair("nope.yaml", kLavt)); });
  EXPECT_NE(missing.find("wico.branches[0]: no config file nope.yaml"), std::string::npos) << missing;
  const auto size = test::thrown_message<ConfigError>(
      [] { WicoModel m(pair(kTopDown, kLavt, {"data.input_size=96"})); });
  EXPECT_NE(size.find("sets data.input_size unlike the pair"), std::string::npos) << size;
}

}  // namespace
}  // namespace wico::model
