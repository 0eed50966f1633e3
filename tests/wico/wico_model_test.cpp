#include "wico/wico/wico_model.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_util.h"
#include "topdown/toy_batch.h"
#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/data/loader.h"

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
  EXPECT_EQ(out.losses.count("top_down.td_class"), 0u);  // wico.branch_weight 0
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
  // Average of Eq. 1's top-down map (mask x score) and the bottom-up probabilities.
  const auto& td = out.probabilities.at("top_down");
  const auto expected = (td * out.confidences.at("top_down").view({2, 1, 1, 1}) + out.probabilities.at("bottom_up")) / 2;
  EXPECT_TRUE(torch::allclose(out.probabilities.at("fused"), expected, 1e-5, 1e-6));
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

TEST(WicoModel, BranchConfigErrorsNameTheBranch) {
  const auto missing = test::thrown_message<ConfigError>([] { WicoModel m(pair("nope.yaml", kLavt)); });
  EXPECT_NE(missing.find("wico.branches[0]: no config file nope.yaml"), std::string::npos) << missing;
  const auto size = test::thrown_message<ConfigError>(
      [] { WicoModel m(pair(kTopDown, kLavt, {"data.input_size=96"})); });
  EXPECT_NE(size.find("sets data.input_size unlike the pair"), std::string::npos) << size;
}

}  // namespace
}  // namespace wico::model
