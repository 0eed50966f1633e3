#include "wico/topdown/top_down.h"

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <torch/torch.h>

#include "test_util.h"
#include "topdown/toy_batch.h"
#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/data/loader.h"
#include "wico/topdown/mask2former/mask2former.h"
#include "wico/train/optim.h"
#include "wico/train/trainer.h"

namespace wico::topdown {
namespace {

using torch::indexing::Slice;

// The tiny sizes of configs/tiny/topdown.yaml (smaller still where a test allows).
std::vector<std::string> tiny_overrides() {
  return {"text.tokenizer=wordpiece",       "top_down.num_classes=6",
          "top_down.top_k=4",               "mask2former.backbone=resnet18",
          "mask2former.backbone_width=8",   "mask2former.backbone_norm=batch",
          "mask2former.hidden_dim=32",      "mask2former.heads=4",
          "mask2former.groups=8",           "mask2former.encoder_layers=1",
          "mask2former.encoder_ffn=64",     "mask2former.queries=6",
          "mask2former.decoder_layers=2",   "mask2former.decoder_ffn=64",
          "mask2former.points=256",         "mattnet.pool5_dim=32", "mattnet.fc7_dim=64",
          "mattnet.word_embedding_size=16", "mattnet.word_vec_size=16",
          "mattnet.rnn_hidden_size=16",     "mattnet.jemb_dim=16",
          "mattnet.embedding_dim=24"};
}

Config tiny_config(std::vector<std::string> extra = {}) {
  auto overrides = tiny_overrides();
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return Config::defaults(overrides);
}

TEST(TopDownBranch, GroundTruthCandidatesAreTheBatchsInstances) {
  const data::Batch b = test::toy_instance_batch();
  const InstanceCandidates c = ground_truth_candidates(b);
  EXPECT_EQ(c.masks.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(c.classes, torch::tensor({{0, 3, 5}, {1, 1, 0}}, torch::kLong)));
  EXPECT_TRUE(torch::allclose(c.boxes[0][1], torch::tensor({30.f, 8.f, 60.f, 20.f}) / 64));
  EXPECT_TRUE(torch::equal(c.valid, b.candidate_valid));
}

TEST(TopDownBranch, CrowdRegionsAreLeftOutOfTheExtractorsLoss) {
  // Mask2Former's instance mapper drops iscrowd annotations: a crowd candidate must weigh in the
  // extractor's losses exactly as if it were absent, while the matcher keeps it as a candidate.
  torch::manual_seed(11);
  TopDownBranch branch(tiny_config());
  branch.train();
  data::Batch crowd = test::toy_instance_batch();
  crowd.candidate_crowd = torch::tensor({{false, false, true}, {false, false, false}});
  data::Batch absent = crowd;
  absent.candidate_crowd = torch::zeros_like(crowd.candidate_crowd);
  absent.candidate_valid = crowd.candidate_valid.clone();
  absent.candidate_valid[0][2] = false;
  data::Batch counted = crowd;
  counted.candidate_crowd = torch::zeros_like(crowd.candidate_crowd);
  auto losses = [&](const data::Batch& b) {
    torch::manual_seed(5);  // the criterion's point sampling draws the same points
    return branch.forward(b, true).losses;
  };
  const auto with_crowd = losses(crowd), without = losses(absent), with_it = losses(counted);
  for (const char* name : {"td_class", "td_mask", "td_dice"}) {
    EXPECT_TRUE(torch::allclose(with_crowd.at(name), without.at(name))) << name;
  }
  EXPECT_FALSE(torch::allclose(with_crowd.at("td_mask"), with_it.at("td_mask")));
  // The matcher's candidates still hold the crowd region.
  EXPECT_TRUE(ground_truth_candidates(crowd).valid[0][2].item<bool>());
}

// top_down.train picks the stage of the original two-stage protocol: the extractor's losses
// alone, the matcher's alone (with the loader's attribute labels, its attribute loss), or both.
TEST(TopDownBranch, TrainChoosesWhichLossesAStepComputes) {
  data::Batch b = test::toy_instance_batch();
  b.attribute_labels = torch::tensor({{1.0f, 0.0f}, {0.0f, 0.0f}});
  b.attribute_weights = torch::tensor({1.0f, 10.0f});
  auto keys = [&](const std::string& stage) {
    torch::manual_seed(3);
    TopDownBranch branch(tiny_config({"top_down.train=" + stage, "data.attribute_words=4"}));
    branch.train();
    std::set<std::string> names;
    for (const auto& [name, value] : branch.forward(b, true).losses) names.insert(name);
    return names;
  };
  const std::set<std::string> extractor = {"td_class", "td_mask", "td_dice"};
  const std::set<std::string> matcher = {"match_rank", "match_ce", "match_att"};
  EXPECT_EQ(keys("extractor"), extractor);
  EXPECT_EQ(keys("matcher"), matcher);
  std::set<std::string> both = extractor;
  both.insert(matcher.begin(), matcher.end());
  EXPECT_EQ(keys("joint"), both);
}

// With mattnet.query_dim the branch hands the matcher each candidate's decoder query: a
// detection's own, a ground-truth instance's best-overlapping one (so stage 2 then runs the whole
// extractor, not the trunk alone).
TEST(TopDownBranch, QueryEmbeddingsReachTheMatcherForGroundTruthAndDetections) {
  torch::manual_seed(6);
  TopDownBranch branch(tiny_config({"mattnet.query_dim=32", "top_down.train=matcher"}));
  const data::Batch b = test::toy_instance_batch();
  branch.train();
  const TopDownOutput trained = branch.forward(b, true);
  EXPECT_TRUE(trained.losses.at("match_rank").isfinite().item<bool>());
  branch.eval();
  torch::NoGradGuard no_grad;
  const TopDownOutput evaluated = branch.forward(b, false);
  EXPECT_TRUE(evaluated.scores.isfinite().all().item<bool>());
  EXPECT_EQ(evaluated.scores.size(1), 4);  // top_k detections
}

// A shortest-edge batch is not square: ground-truth boxes are fractions of the width and of the
// height, and detections come at the canvas's height x width.
TEST(TopDownBranch, NonSquareInputsKeepWidthAndHeightApart) {
  data::Batch b = test::toy_instance_batch();
  b.images = torch::randn({2, 3, 64, 96});
  b.candidate_masks = torch::constant_pad_nd(b.candidate_masks, {0, 32});
  b.targets = torch::constant_pad_nd(b.targets, {0, 32});
  const InstanceCandidates c = ground_truth_candidates(b);
  EXPECT_TRUE(torch::allclose(c.boxes[0][1], torch::tensor({30.f / 96, 8.f / 64, 60.f / 96, 20.f / 64})));
  torch::manual_seed(2);
  TopDownBranch branch(tiny_config());
  branch.eval();
  torch::NoGradGuard no_grad;
  const TopDownOutput out = branch.forward(b, false);
  EXPECT_EQ(out.masks.sizes(), (torch::IntArrayRef{2, 4, 64, 96}));
}

// train.amp bf16 on the CPU: a training step of the branch under autocast gives finite losses and
// gradients, and the regions the original keeps in float32 (the deformable pixel decoder, the
// Hungarian matcher's costs) stay float32.
TEST(TopDownBranch, TrainsUnderBf16AutocastWithTheOriginalsFloat32Regions) {
  torch::manual_seed(4);
  TopDownBranch branch(tiny_config());
  branch.train();
  const data::Batch b = test::toy_instance_batch();
  at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  at::autocast::set_cpu_enabled(true);
  torch::Tensor total = torch::zeros({});
  for (const auto& [name, loss] : branch.forward(b, true).losses) {
    EXPECT_TRUE(loss.isfinite().item<bool>()) << name;
    total = total + loss.to(torch::kFloat);
  }
  auto& m2f = dynamic_cast<Mask2FormerExtractor&>(branch.extractor());
  const auto trunk = m2f.backbone->forward(b.images);
  EXPECT_EQ(trunk[3].scalar_type(), torch::kBFloat16);  // autocast is on for the convolutions
  EXPECT_EQ(m2f.pixel_decoder->forward(trunk).mask_features.scalar_type(), torch::kFloat);
  EXPECT_TRUE(at::autocast::is_cpu_enabled());  // the guard restored it
  at::autocast::set_cpu_enabled(false);
  at::autocast::clear_cache();
  total.backward();
  for (const auto& p : branch.named_parameters()) {
    if (p.value().grad().defined()) {
      EXPECT_TRUE(p.value().grad().isfinite().all().item<bool>()) << p.key();
    }
  }
}

// A frozen-norm trunk nobody loaded weights into has identity norms: a fresh training run refuses
// it and says what to set; loaded (here: any non-identity statistics) it passes, and trainable
// norms need nothing.
TEST(TopDownBranch, FrozenTrunkWithoutWeightsIsRefused) {
  TopDownBranch frozen(tiny_config({"mask2former.backbone_norm=frozen"}));
  const std::string message =
      test::thrown_message<ConfigError>([&] { train::require_loaded_frozen_norms(frozen); });
  EXPECT_NE(message.find("mask2former.backbone_pretrained"), std::string::npos) << message;
  EXPECT_NE(message.find("mask2former.backbone_norm: batch"), std::string::npos) << message;
  {
    torch::NoGradGuard no_grad;
    for (auto& b : frozen.extractor().named_buffers()) {
      if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 2.0);
    }
  }
  EXPECT_NO_THROW(train::require_loaded_frozen_norms(frozen));
  TopDownBranch trainable(tiny_config());
  EXPECT_NO_THROW(train::require_loaded_frozen_norms(trainable));
}

TEST(TopDownBranch, PaperRecipeDecaysAsMask2FormersBuildOptimizer) {
  // configs/topdown/mask2former_r50_mattnet.yaml at tiny sizes: weight decay 0.05 on every
  // parameter but those of norm and embedding modules (train_net.py build_optimizer with
  // WEIGHT_DECAY_NORM = WEIGHT_DECAY_EMBED = 0): the pixel decoder's input_proj GroupNorms and
  // the decoder's embeddings take none, the pixel decoder's level_embed parameter takes 0.05.
  auto overrides = tiny_overrides();
  overrides.push_back("mask2former.backbone_pretrained=''");
  const Config config = Config::load(
      std::filesystem::path(WICO_SOURCE_DIR) / "configs/topdown/mask2former_r50_mattnet.yaml",
      overrides);
  EXPECT_EQ(config.integer("train.warmup_iterations"), 0);  // WARMUP_FACTOR 1.0
  TopDownBranch branch(config);
  std::map<std::string, double> decay;
  for (const auto& g : train::build_optimizer(branch, config).groups) {
    for (const auto& p : g.parameters) decay[p] = g.weight_decay;
  }
  const std::map<std::string, double> expected = {
      {"extractor.pixel_decoder.input_proj.0.0.weight", 0.05},
      {"extractor.pixel_decoder.input_proj.0.1.weight", 0.0},
      {"extractor.pixel_decoder.input_proj.0.1.bias", 0.0},
      {"extractor.pixel_decoder.transformer.level_embed", 0.05},
      {"extractor.predictor.level_embed.weight", 0.0},
      {"extractor.predictor.query_feat.weight", 0.0},
      {"extractor.predictor.query_embed.weight", 0.0},
      {"extractor.predictor.decoder_norm.weight", 0.0},
      {"extractor.predictor.class_embed.weight", 0.05}};
  for (const auto& [name, value] : expected) {
    ASSERT_TRUE(decay.count(name)) << name << " is not a trained parameter";
    EXPECT_DOUBLE_EQ(decay.at(name), value) << name;
  }
}

TEST(TopDownBranch, ResultIsTheBestMaskTimesItsScore) {
  TopDownOutput out;
  out.masks = torch::zeros({2, 3, 4, 4});
  out.masks.index_put_({0, 2, Slice(0, 2), Slice(0, 2)}, 1.0);
  out.masks.index_put_({1, 0, Slice(2, 4), Slice()}, 1.0);
  out.scores = torch::tensor({{0.1f, 0.2f, 0.7f}, {0.6f, 0.4f, 0.0f}});
  out.best = torch::tensor({2, 0}, torch::kLong);
  const auto p = top_down_result(out);  // Eq. 1
  ASSERT_EQ(p.sizes(), (torch::IntArrayRef{2, 1, 4, 4}));
  EXPECT_FLOAT_EQ(p.sum().item<float>(), 4 * 0.7f + 8 * 0.6f);
  EXPECT_FLOAT_EQ(p[0][0][1][1].item<float>(), 0.7f);
  EXPECT_FLOAT_EQ(p[0][0][3][3].item<float>(), 0.0f);
}

TEST(TopDownBranch, TrainsOnGroundTruthAndEvaluatesOnDetections) {
  torch::manual_seed(0);
  TopDownBranch branch(tiny_config());
  const data::Batch b = test::toy_instance_batch();
  TopDownOutput train = branch.forward(b, true);
  EXPECT_EQ(train.masks.sizes(), (torch::IntArrayRef{2, 3, 64, 64}));
  EXPECT_EQ(train.embeddings.sizes(), (torch::IntArrayRef{2, 3, 24}));
  EXPECT_NEAR(train.scores[0].sum().item<double>(), 1.0, 1e-5);
  EXPECT_EQ(train.scores[1][2].item<double>(), 0.0);  // padding
  for (const char* part : {"td_class", "td_mask", "td_dice", "match_rank", "match_ce"}) {
    ASSERT_TRUE(train.losses.count(part)) << part;
    EXPECT_TRUE(std::isfinite(train.losses[part].item<double>())) << part;
  }
  branch.eval();
  torch::NoGradGuard no_grad;
  TopDownOutput test = branch.forward(b, false);
  EXPECT_EQ(test.masks.sizes(), (torch::IntArrayRef{2, 4, 64, 64}));  // top_k detections
  EXPECT_TRUE(torch::equal(test.masks, (test.masks > 0.5).to(torch::kFloat)));
  EXPECT_TRUE(test.losses.empty());
}

TEST(TopDownBranch, DetachedFeaturesKeepTheMatchersLossOutOfTheExtractor) {
  for (const bool detach : {true, false}) {
    torch::manual_seed(1);
    TopDownBranch branch(tiny_config({"top_down.detach_features=" + std::string(detach ? "true" : "false")}));
    const TopDownOutput out = branch.forward(test::toy_instance_batch(), true);
    (out.losses.at("match_rank") + out.losses.at("match_ce")).backward();
    double extractor_grad = 0, matcher_grad = 0;
    for (const auto& p : branch.extractor().parameters()) {
      if (p.grad().defined()) extractor_grad += p.grad().abs().sum().item<double>();
    }
    for (const auto& p : branch.matcher().parameters()) {
      if (p.grad().defined()) matcher_grad += p.grad().abs().sum().item<double>();
    }
    EXPECT_GT(matcher_grad, 0.0);
    if (detach) {
      EXPECT_EQ(extractor_grad, 0.0);
    } else {
      EXPECT_GT(extractor_grad, 0.0);
    }
  }
}

TEST(TopDownBranch, EveryParameterLearnsFromTheLosses) {
  torch::manual_seed(2);
  TopDownBranch branch(tiny_config({"top_down.detach_features=false"}));
  const TopDownOutput out = branch.forward(test::toy_instance_batch(), true);
  torch::Tensor total = torch::zeros({});
  for (const auto& [name, loss] : out.losses) total = total + loss;
  total.backward();
  for (const auto& p : branch.named_parameters()) {
    // E's projection serves CFI (a WiCo pair), not the branch's own losses.
    if (!p.value().requires_grad() || p.key().rfind("matcher.embedding_fc.", 0) == 0) continue;
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_TRUE(p.value().grad().isfinite().all().item<bool>()) << p.key();
  }
}

TEST(TopDownBranch, CategoryBeyondNumClassesNamesTheKey) {
  TopDownBranch branch(tiny_config({"top_down.num_classes=5"}));
  const auto message = test::thrown_message<ConfigError>([&] { branch.forward(test::toy_instance_batch(), true); });
  EXPECT_NE(message.find("top_down.num_classes is 5"), std::string::npos) << message;
  EXPECT_NE(message.find("class index 5"), std::string::npos) << message;
}

TEST(TopDownModel, AnswersWithTheChosenMaskAndItsScore) {
  torch::manual_seed(3);
  TopDownModel model(tiny_config({"top_down.eval_candidates=ground_truth"}));
  model.eval();
  torch::NoGradGuard no_grad;
  const data::Batch b = test::toy_instance_batch();
  const nn::RisOutput out = model.forward(b, false);
  const auto& p = out.probabilities.at("top_down");
  ASSERT_EQ(p.sizes(), (torch::IntArrayRef{2, 1, 64, 64}));
  const TopDownOutput raw = model.branch().forward(b, false);
  for (std::int64_t i = 0; i < 2; ++i) {
    const std::int64_t best = raw.best[i].item<std::int64_t>();
    EXPECT_TRUE(torch::equal(p[i][0], raw.masks[i][best]));
    EXPECT_FLOAT_EQ(out.confidences.at("top_down")[i].item<float>(), raw.scores[i][best].item<float>());
  }
  EXPECT_EQ(model.threshold("top_down"), 0.5);
}

TEST(TopDownModel, OracleAndRandomChoicesGiveTheExtractorsQualityAndChance) {
  const data::Batch b = test::toy_instance_batch();
  torch::NoGradGuard no_grad;
  TopDownModel oracle(tiny_config({"top_down.eval_candidates=ground_truth", "top_down.choose=oracle"}));
  oracle.eval();
  // With ground-truth candidates the oracle's answer is the target itself.
  EXPECT_TRUE(torch::equal(oracle.forward(b, false).probabilities.at("top_down"), b.targets));
  TopDownModel random(tiny_config({"top_down.eval_candidates=ground_truth", "top_down.choose=random"}));
  random.eval();
  std::set<std::int64_t> seen;
  torch::manual_seed(5);
  for (int i = 0; i < 40; ++i) {
    const TopDownOutput out = random.branch().forward(b, false);
    EXPECT_LT(out.best[1].item<std::int64_t>(), 2);  // never the padding candidate
    seen.insert(out.best[0].item<std::int64_t>());
  }
  EXPECT_EQ(seen.size(), 3u);
  torch::manual_seed(5);
  const auto first = random.branch().forward(b, false).best;
  torch::manual_seed(5);
  EXPECT_TRUE(torch::equal(first, random.branch().forward(b, false).best));
}

TEST(Mask2FormerExtractor, PaperSizeMatchesThePublishedArchitecture) {
  const Mask2FormerOptions options = Mask2FormerOptions::from_config(Config::defaults({"top_down.num_classes=80"}));
  torch::manual_seed(0);
  Mask2FormerExtractor m2f(options);
  std::int64_t trunk = 0, total = 0;
  for (const auto& p : m2f.backbone->named_parameters()) trunk += p.value().numel();
  for (const auto& b : m2f.backbone->named_buffers()) {
    // Frozen batch norm keeps its affine as buffers: count them as the published figure does.
    if (b.key().find("weight") != std::string::npos || b.key().find("bias") != std::string::npos) {
      trunk += b.value().numel();
    }
  }
  for (const auto& p : m2f.parameters()) total += p.numel();
  total += trunk - [&] {
    std::int64_t n = 0;
    for (const auto& p : m2f.backbone->parameters()) n += p.numel();
    return n;
  }();
  EXPECT_EQ(trunk, 23508032);  // torchvision resnet50 without fc
  // Mask2Former R50 (COCO instance): 44M parameters in the paper's model zoo.
  EXPECT_NEAR(static_cast<double>(total) / 1e6, 44.0, 0.5) << total;
  m2f.eval();
  torch::NoGradGuard no_grad;
  const ExtractorOutput out = m2f.forward(torch::randn({1, 3, 480, 480}));
  EXPECT_EQ(out.class_logits.sizes(), (torch::IntArrayRef{1, 100, 81}));
  EXPECT_EQ(out.mask_logits.sizes(), (torch::IntArrayRef{1, 100, 120, 120}));
  EXPECT_EQ(out.c4.sizes(), (torch::IntArrayRef{1, 1024, 30, 30}));  // res4: MAttNet's pool5
  EXPECT_EQ(out.c5.sizes(), (torch::IntArrayRef{1, 2048, 15, 15}));  // res5: its fc7
  EXPECT_EQ(out.auxiliary.size(), 9u);
  EXPECT_TRUE(out.mask_logits.isfinite().all().item<bool>());
}

// The paper-size configs resolve, build, and run a forward and a training step at paper size
// (Mask2Former R50 at 480, 100 queries, 9 decoder layers; MAttNet at 512 with 1024/2048-d pool5/
// fc7 and 50 attributes): joint training, and stage 2 of the protocol (the trunk only, the matcher's
// losses). One image of the toy batch scaled to 480.
TEST(TopDownModel, PaperSizeConfigsRunAForwardAndATrainingStep) {
  data::Batch toy = test::toy_instance_batch();
  data::Batch b;
  const double scale = 480.0 / 64.0;
  b.images = torch::randn({1, 3, 480, 480});
  b.candidate_masks = torch::nn::functional::interpolate(
                          toy.candidate_masks.narrow(0, 0, 1).to(torch::kFloat),
                          torch::nn::functional::InterpolateFuncOptions()
                              .size(std::vector<std::int64_t>{480, 480})
                              .mode(torch::kNearest))
                          .to(torch::kUInt8);
  b.candidate_boxes = toy.candidate_boxes.narrow(0, 0, 1) * scale;
  b.candidate_classes = toy.candidate_classes.narrow(0, 0, 1);
  b.candidate_valid = toy.candidate_valid.narrow(0, 0, 1);
  b.candidate_crowd = torch::zeros({1, 3}, torch::kBool);
  b.target_index = toy.target_index.narrow(0, 0, 1);
  b.targets = b.candidate_masks.index({torch::arange(1), b.target_index}).unsqueeze(1).to(torch::kFloat);
  b.token_ids = toy.token_ids.narrow(0, 0, 1);
  b.attention_mask = toy.attention_mask.narrow(0, 0, 1);
  b.negative_token_ids = b.token_ids.flip({1});
  b.negative_attention_mask = b.attention_mask;
  b.negative_valid = torch::ones({1}, torch::kBool);
  b.attribute_labels = torch::zeros({1, 50});
  b.attribute_labels[0][3] = 1.0;
  b.attribute_weights = torch::ones({50});
  b.info.resize(1);
  const std::filesystem::path paper = std::filesystem::path(WICO_SOURCE_DIR) / "configs/paper";
  auto build = [&](const std::string& file) {
    const Config c = Config::load(paper / file, {"mask2former.backbone_pretrained=''"});
    EXPECT_EQ(c.integer("mask2former.queries"), 100);
    EXPECT_EQ(c.integer("mattnet.fc7_dim"), 2048);
    torch::manual_seed(0);
    return std::make_shared<TopDownModel>(c);
  };
  {
    auto model = build("topdown.yaml");
    model->eval();
    {
      torch::NoGradGuard no_grad;
      const nn::RisOutput out = model->forward(b, false);
      EXPECT_EQ(out.probabilities.at("top_down").sizes(), (torch::IntArrayRef{1, 1, 480, 480}));
    }
    model->train();
    const nn::RisOutput out = model->forward(b, true);
    torch::Tensor total = torch::zeros({});
    for (const auto& [name, loss] : out.losses) {
      EXPECT_TRUE(loss.isfinite().item<bool>()) << name;
      total = total + loss;
    }
    EXPECT_TRUE(out.losses.count("td_mask") && out.losses.count("match_att"));
    total.backward();
    const auto& att_fc = model->branch().matcher().named_parameters()["sub_encoder.att_fc.weight"];
    EXPECT_EQ(att_fc.size(0), 50);
    EXPECT_GT(att_fc.grad().abs().sum().item<float>(), 0.0f);
  }
  build("topdown_extractor.yaml");
  auto matcher_stage = build("topdown_matcher.yaml");
  matcher_stage->train();
  const nn::RisOutput out = matcher_stage->forward(b, true);
  EXPECT_EQ(out.losses.count("td_mask"), 0u);
  EXPECT_TRUE(out.losses.at("match_rank").isfinite().item<bool>());
}

}  // namespace
}  // namespace wico::topdown
