// The name maps on published-layout files whose numbers are known (scripts/
// make_weight_parity_fixtures.py): torchvision and detectron2 ResNets give the stage outputs of
// tests/data/resnet, official and torchvision Swins the stage outputs of tests/data/swin, HF
// BERT (legacy .bin and safetensors) the hidden states of LAVT-RIS's BERT; the Swin table resize
// equals torch's bicubic interpolate; Mask2Former's R50 names load into our extractor with
// nothing missing; the import report names every kind of key.
#include "wico/io/import.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "../backbones/tensor_fixture.h"
#include "test_util.h"
#include "wico/backbones/bert.h"
#include "wico/backbones/resnet.h"
#include "wico/backbones/swin.h"
#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/io/name_map.h"
#include "wico/io/weights.h"
#include "wico/topdown/mask2former/mask2former.h"

namespace wico::io {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using test::max_abs_diff;
using test::TensorFixture;

const fs::path kData = WICO_TEST_DATA_DIR;
const fs::path kDir = kData / "weight_parity";
constexpr double kTolerance = 1e-4;

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// ---- ResNet ----

const TensorFixture& resnet_fixture() {
  static const TensorFixture f(kData / "resnet" / "resnet");
  return f;
}

backbones::ResNetOptions bottleneck_trunk(backbones::ResNetNorm norm) {
  backbones::ResNetOptions o;  // tests/backbones/resnet_test.cpp's `bottleneck` trunk
  o.bottleneck = true;
  o.layers = {2, 1, 1, 1};
  o.width = 4;
  o.norm = norm;
  return o;
}

void expect_resnet_outputs(backbones::ResNet& model) {
  model->eval();
  const at::NoGradGuard no_grad;
  const auto outs = model->forward(resnet_fixture().get("bottleneck.input"));
  const char* names[] = {"res2", "res3", "res4", "res5"};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_LE(max_abs_diff(outs[i], resnet_fixture().get(std::string("bottleneck.") + names[i])),
              kTolerance)
        << names[i];
  }
}

TEST(NameMaps, TorchvisionResNetLoadsStrictlyAndMatches) {
  for (const auto norm : {backbones::ResNetNorm::kFrozenBatchNorm, backbones::ResNetNorm::kBatchNorm}) {
    backbones::ResNet model(bottleneck_trunk(norm));
    const WeightFile file = read_weights(kDir / "resnet_torchvision.pth");
    const ImportReport report =
        import_weights(*model, file, name_map("torchvision_resnet"), ImportMode::kStrict);
    EXPECT_TRUE(report.clean()) << report.table();
    EXPECT_TRUE(contains(report.ignored, "fc.weight"));
    EXPECT_EQ(report.loaded_values, report.model_values) << report.table();
    expect_resnet_outputs(model);
  }
}

TEST(NameMaps, Detectron2ResNetPickleLoadsStrictlyAndMatches) {
  backbones::ResNet model(bottleneck_trunk(backbones::ResNetNorm::kFrozenBatchNorm));
  const WeightFile file = read_weights(kDir / "resnet_detectron2.pkl");
  EXPECT_EQ(file.format, WeightFormat::kPickle);
  const ImportReport report =
      import_weights(*model, file, name_map("detectron2_resnet"), ImportMode::kStrict);
  EXPECT_EQ(report.section, "model.");
  EXPECT_TRUE(contains(report.ignored, "model.stem.fc.weight")) << report.table();
  EXPECT_EQ(report.loaded_values, report.model_values) << report.table();
  expect_resnet_outputs(model);
}

TEST(NameMaps, MsraResNetBlobsLandWhereTorchvisionsDo) {
  backbones::ResNet msra(bottleneck_trunk(backbones::ResNetNorm::kFrozenBatchNorm));
  const ImportReport report = import_weights(*msra, read_weights(kDir / "resnet_msra.pkl"),
                                             name_map("msra_resnet"), ImportMode::kStrict);
  // Batch norm as scale and bias only: the frozen BN keeps mean 0 and variance 1.
  EXPECT_TRUE(contains(report.expected_missing, "bn1.running_mean")) << report.table();
  EXPECT_TRUE(report.missing.empty()) << report.table();
  backbones::ResNet tv(bottleneck_trunk(backbones::ResNetNorm::kFrozenBatchNorm));
  import_weights(*tv, read_weights(kDir / "resnet_torchvision.pth"), name_map("torchvision_resnet"),
                 ImportMode::kStrict);
  const auto tv_params = tv->named_buffers();
  std::int64_t compared = 0;
  for (const auto& p : msra->named_parameters()) {
    EXPECT_TRUE(p.value().equal(tv->named_parameters()[p.key()])) << p.key();
    ++compared;
  }
  for (const auto& b : msra->named_buffers()) {
    if (b.key().find("running_") != std::string::npos) continue;
    EXPECT_TRUE(b.value().equal(tv_params[b.key()])) << b.key();
    ++compared;
  }
  EXPECT_GT(compared, 20);
}

// ---- Swin ----

const TensorFixture& swin_fixture() {
  static const TensorFixture f(kData / "swin" / "swin");
  return f;
}

backbones::SwinOptions fixture_swin(std::int64_t window = 3) {
  backbones::SwinOptions o;  // tests/backbones/swin_test.cpp's whole model
  o.embed_dim = 6;
  o.depths = {2, 2, 2, 2};
  o.num_heads = {1, 2, 3, 6};
  o.window_size = window;
  o.drop_path_rate = 0.0;
  return o;
}

void expect_swin_stages(backbones::SwinTransformer& swin) {
  swin->eval();
  const at::NoGradGuard no_grad;
  auto x = swin->embed(swin_fixture().get("model.input"));
  for (std::int64_t i = 0; i < 4; ++i) {
    x = swin->run_blocks(i, x);
    const auto expected = swin_fixture().get("model.stage" + std::to_string(i));
    EXPECT_LE(max_abs_diff(x.tokens, expected.reshape({1, -1, expected.size(3)})), kTolerance)
        << "stage " << i;
    x = swin->downsample(i, x);
  }
}

class SwinLayouts : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(SwinLayouts, LoadStrictlyAndGiveTheStages) {
  const auto& [file_name, map] = GetParam();
  backbones::SwinTransformer swin(fixture_swin());
  const WeightFile file = read_weights(kDir / file_name);
  const ImportReport report = import_weights(*swin, file, name_map(map), ImportMode::kStrict);
  EXPECT_TRUE(report.clean()) << report.table();
  // The classifier and its final norm are dropped; the segmentation norms stay to be trained.
  EXPECT_TRUE(contains(report.expected_missing, "norm0.weight")) << report.table();
  EXPECT_TRUE(contains(report.expected_missing, "norm3.bias")) << report.table();
  EXPECT_TRUE(std::any_of(report.ignored.begin(), report.ignored.end(),
                          [](const std::string& n) { return n.find("head.weight") != std::string::npos; }));
  EXPECT_THAT(report.table(), HasSubstr("the classifier"));
  expect_swin_stages(swin);
}

INSTANTIATE_TEST_SUITE_P(NameMaps, SwinLayouts,
                         ::testing::Values(std::make_pair(std::string("swin_official.pth"), std::string("swin")),
                                           std::make_pair(std::string("swin_torchvision.pth"),
                                                          std::string("torchvision_swin"))));

TEST(NameMaps, SwinTableResizeIsTorchsBicubicInterpolate) {
  const TensorFixture f(kDir / "swin_table");
  const at::Tensor resized = resize_relative_position_table(f.get("table"), 25);
  EXPECT_LE(max_abs_diff(resized, f.get("resized")), 1e-6);
}

TEST(NameMaps, AnotherWindowResizesTheTablesAndSaysSo) {
  backbones::SwinTransformer swin(fixture_swin(2));
  const WeightFile file = read_weights(kDir / "swin_official.pth");
  const ImportReport report = import_weights(*swin, file, name_map("swin"), ImportMode::kStrict);
  EXPECT_TRUE(report.mismatched.empty()) << report.table();
  EXPECT_THAT(report.table(), HasSubstr("resized bicubically to the window: 8 tensors"));
  const at::Tensor from_file = *file.find("model.layers.0.blocks.0.attn.relative_position_bias_table");
  EXPECT_TRUE(swin->named_parameters()["layers.0.blocks.0.attn.relative_position_bias_table"].equal(
      resize_relative_position_table(from_file, 9)));
}

// ---- BERT ----

TEST(NameMaps, HuggingFaceBertBinAndSafetensorsGiveLavtRisBertStates) {
  const TensorFixture lavt(kData / "lavt_ris" / "lavt_ris_tiny");
  backbones::BertOptions o = backbones::BertOptions::tiny();
  o.vocab_size = 128;
  o.with_pooler = false;
  for (const char* name : {"bert_hf.bin", "bert_hf.safetensors"}) {
    backbones::BertModel bert(o);
    const WeightFile file = read_weights(kDir / name);
    EXPECT_EQ(file.format, std::string(name).find(".bin") != std::string::npos
                               ? WeightFormat::kTorchLegacy
                               : WeightFormat::kSafetensors);
    const ImportReport report = import_weights(*bert, file, name_map("hf_bert"), ImportMode::kStrict);
    EXPECT_TRUE(report.clean()) << report.table();
    EXPECT_TRUE(contains(report.ignored, "bert.pooler.dense.weight")) << report.table();
    bert->eval();
    const at::NoGradGuard no_grad;
    const auto ids = lavt.get("inputs.token_ids").to(at::kLong);
    const auto mask = lavt.get("inputs.attention_mask").to(at::kLong);
    EXPECT_LE(max_abs_diff(bert->forward(ids, mask), lavt.get("bert.last_hidden_state")), kTolerance)
        << name;
  }
}

// ---- Mask2Former ----

TEST(NameMaps, Mask2FormerR50NamesLoadIntoOurExtractorWithNothingMissing) {
  std::ifstream in(kDir / "mask2former_r50.json");
  const auto names = nlohmann::json::parse(in);
  WeightFile file;
  file.path = kDir / "mask2former_r50.json";
  file.format = WeightFormat::kPickle;
  const at::Tensor zero = at::zeros({1});
  for (const auto& [name, shape] : names.items()) {
    // Every tensor as a broadcast zero: the names and shapes are what is tested.
    file.tensors.emplace_back("model." + name, zero.expand(shape.get<std::vector<std::int64_t>>()));
  }
  const auto options = topdown::Mask2FormerOptions::from_config(
      Config::defaults({"model.kind=top_down", "top_down.extractor=mask2former"}));
  // The default top_down.num_classes is COCO's 80 contiguous classes: the released class_embed's
  // 81 rows load as they are.
  ASSERT_EQ(options.decoder.num_classes, 80);
  topdown::Mask2FormerExtractor extractor(options);
  const ImportReport report = import_weights(extractor, file, name_map("mask2former"), ImportMode::kStrict);
  EXPECT_TRUE(report.clean()) << report.table();
  EXPECT_TRUE(report.expected_missing.empty()) << report.table();
  EXPECT_EQ(report.loaded_values, report.model_values);
  EXPECT_TRUE(contains(report.ignored, "model.criterion.empty_weight")) << report.table();
}

// ---- reports ----

TEST(NameMaps, StrictImportListsEveryProblemAndCopiesNothing) {
  backbones::ResNet model(bottleneck_trunk(backbones::ResNetNorm::kFrozenBatchNorm));
  const auto before = model->named_parameters()["conv1.weight"].clone();
  // A detectron2 file through the torchvision map: nothing matches.
  const WeightFile file = read_weights(kDir / "resnet_detectron2.pkl");
  const std::string message = test::thrown_message<Error>(
      [&] { import_weights(*model, file, name_map("torchvision_resnet"), ImportMode::kStrict); });
  EXPECT_THAT(message, HasSubstr("strict import"));
  EXPECT_THAT(message, HasSubstr("missing, left at their initial values"));
  EXPECT_THAT(message, HasSubstr("unexpected, not loaded"));
  EXPECT_THAT(message, HasSubstr("model.stem.conv1.norm.{weight, bias, running_mean, running_var}"));
  EXPECT_TRUE(model->named_parameters()["conv1.weight"].equal(before));
}

TEST(NameMaps, PartialImportSkipsShapeMismatchesAndReportsThem) {
  auto o = bottleneck_trunk(backbones::ResNetNorm::kFrozenBatchNorm);
  o.width = 8;  // every shape differs from the file's width-4 trunk
  backbones::ResNet model(o);
  const ImportReport report = import_weights(*model, read_weights(kDir / "resnet_torchvision.pth"),
                                             name_map("torchvision_resnet"), ImportMode::kPartial);
  EXPECT_TRUE(report.matched.empty());
  ASSERT_FALSE(report.mismatched.empty());
  EXPECT_EQ(report.mismatched[0].name, "conv1.weight");
  EXPECT_EQ(report.mismatched[0].file_shape, (std::vector<std::int64_t>{4, 3, 7, 7}));
  EXPECT_EQ(report.mismatched[0].model_shape, (std::vector<std::int64_t>{8, 3, 7, 7}));
  EXPECT_THAT(report.table(), HasSubstr("conv1.weight: file [4,3,7,7], model [8,3,7,7]"));
}

TEST(NameMaps, UnknownMapListsTheKnownOnes) {
  const std::string message = test::thrown_message<ConfigError>([] { name_map("lavt"); });
  EXPECT_THAT(message, HasSubstr("lavt_ris"));
  EXPECT_THAT(message, HasSubstr("hf_bert"));
}

}  // namespace
}  // namespace wico::io
