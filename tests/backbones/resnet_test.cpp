// ResNet trunk: parity with torchvision 0.14's ResNet (narrow trunks built from its own
// _make_layer, BasicBlock and Bottleneck by scripts/make_resnet_fixtures.py) with both norm
// kinds, in eval and training mode; torchvision's state_dict names and shapes and parameter
// counts; the frozen batch norm's formula; freezing; options.
#include "wico/backbones/resnet.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/utils.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "backbones/tensor_fixture.h"
#include "test_util.h"
#include "wico/core/error.h"

namespace wico::backbones {
namespace {

using test::max_abs_diff;
using test::TensorFixture;

constexpr double kTolerance = 1e-4;
const char* const kOutputs[] = {"res2", "res3", "res4", "res5"};

const TensorFixture& fixture() {
  static const TensorFixture f(std::filesystem::path(WICO_TEST_DATA_DIR) / "resnet" / "resnet");
  return f;
}

// Parameters and buffers by state_dict name (a frozen norm's affine and statistics are buffers).
std::map<std::string, torch::Tensor> state(const torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : module.named_parameters()) out.emplace(item.key(), item.value());
  for (const auto& item : module.named_buffers()) out.emplace(item.key(), item.value());
  return out;
}

bool is_step_counter(const std::string& name) {
  return name.find("num_batches_tracked") != std::string::npos;
}

// The fixture trunks: `basic` (width 8, layers 2 2 1 1), `bottleneck` (width 4, 2 1 1 1).
ResNetOptions fixture_options(const std::string& label, ResNetNorm norm) {
  ResNetOptions o;
  o.bottleneck = label == "bottleneck";
  o.layers =
      o.bottleneck ? std::vector<std::int64_t>{2, 1, 1, 1} : std::vector<std::int64_t>{2, 2, 1, 1};
  o.width = o.bottleneck ? 4 : 8;
  o.norm = norm;
  return o;
}

// A fixture trunk with torchvision's weights copied in by name: every state entry (but the
// step counters) must be in the fixture, and every fixture weight of the label used.
ResNet load_fixture_model(const std::string& label, ResNetNorm norm) {
  ResNet model(fixture_options(label, norm));
  torch::NoGradGuard no_grad;
  std::int64_t loaded = 0;
  for (auto& [name, t] : state(*model)) {
    if (is_step_counter(name)) continue;
    const auto& value = fixture().get(label + "." + name);  // throws when missing
    EXPECT_EQ(t.sizes(), value.sizes()) << name;
    if (t.sizes() != value.sizes()) continue;
    t.copy_(value);
    ++loaded;
  }
  EXPECT_EQ(loaded, fixture().meta().at("weights").at(label).get<std::int64_t>()) << label;
  return model;
}

struct ParityCase {
  std::string label;
  ResNetNorm norm;
};
void PrintTo(const ParityCase& c, std::ostream* os) {
  *os << c.label << (c.norm == ResNetNorm::kBatchNorm ? " BatchNorm2d" : " FrozenBatchNorm2d");
}

class ResNetParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(ResNetParity, StemAndStagesMatchTorchvisionInEvalMode) {
  const auto& [label, norm] = GetParam();
  auto model = load_fixture_model(label, norm);
  model->eval();
  const auto x = fixture().get(label + ".input");
  torch::NoGradGuard no_grad;
  EXPECT_LE(max_abs_diff(model->stem(x), fixture().get(label + ".stem")), kTolerance);
  const auto outs = model->forward(x);
  ASSERT_EQ(outs.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    const auto& expected = fixture().get(label + "." + kOutputs[i]);
    // Strides 4..32 with rounding up; channels width * 2^i * expansion.
    EXPECT_EQ(outs[i].size(1), model->options().stage_channels(static_cast<std::int64_t>(i)));
    EXPECT_LE(max_abs_diff(outs[i], expected), kTolerance) << kOutputs[i];
    // Not a trivially small output: the comparison means something.
    EXPECT_GT(expected.abs().max().item<double>(), 0.1) << kOutputs[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Trunks, ResNetParity,
                         ::testing::Values(ParityCase{"basic", ResNetNorm::kBatchNorm},
                                           ParityCase{"basic", ResNetNorm::kFrozenBatchNorm},
                                           ParityCase{"bottleneck", ResNetNorm::kBatchNorm},
                                           ParityCase{"bottleneck", ResNetNorm::kFrozenBatchNorm}),
                         [](const auto& info) {
                           return info.param.label + (info.param.norm == ResNetNorm::kBatchNorm
                                                          ? "_BatchNorm"
                                                          : "_FrozenBatchNorm");
                         });

TEST(ResNet, OddInputSizesRoundUp) {
  // 67 x 45 -> stem 17 x 12 -> 17 x 12, 9 x 6, 5 x 3, 3 x 2 (as torchvision, see the fixture).
  const auto& in = fixture().get("basic.input");
  EXPECT_EQ(in.sizes(), (at::IntArrayRef{2, 3, 67, 45}));
  EXPECT_EQ(fixture().get("basic.res5").sizes(), (at::IntArrayRef{2, 64, 3, 2}));
  ResNet model(fixture_options("basic", ResNetNorm::kFrozenBatchNorm));
  torch::NoGradGuard no_grad;
  const auto outs = model->forward(in);
  const std::vector<std::vector<std::int64_t>> sizes{{17, 12}, {9, 6}, {5, 3}, {3, 2}};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(outs[i].size(2), sizes[i][0]);
    EXPECT_EQ(outs[i].size(3), sizes[i][1]);
  }
}

TEST(ResNet, TrainingModeBatchNormUsesBatchStatisticsFrozenDoesNot) {
  const auto x = fixture().get("basic.input");
  const auto& train_expected = fixture().get("basic.train_res5");
  const auto& eval_expected = fixture().get("basic.res5");
  ASSERT_GT(max_abs_diff(train_expected, eval_expected), 1e-2);  // the modes differ here

  auto bn = load_fixture_model("basic", ResNetNorm::kBatchNorm);
  bn->train();
  EXPECT_LE(max_abs_diff(bn->forward(x)[3].detach(), train_expected), kTolerance);

  auto frozen = load_fixture_model("basic", ResNetNorm::kFrozenBatchNorm);
  frozen->train();
  const auto before = frozen->bn1.ptr<FrozenBatchNorm2dImpl>()->running_mean.clone();
  EXPECT_LE(max_abs_diff(frozen->forward(x)[3].detach(), eval_expected), kTolerance);
  EXPECT_TRUE(frozen->bn1.ptr<FrozenBatchNorm2dImpl>()->running_mean.equal(before));
}

TEST(FrozenBatchNorm2d, MatchesTheFormula) {
  FrozenBatchNorm2d norm(3, 1e-3);
  norm->weight.copy_(torch::tensor({1.5, -0.5, 2.0}));
  norm->bias.copy_(torch::tensor({0.1, 0.2, -0.3}));
  norm->running_mean.copy_(torch::tensor({0.5, -1.0, 0.0}));
  norm->running_var.copy_(torch::tensor({4.0, 0.25, 1.0}));
  const auto x = torch::randn({2, 3, 4, 5}, torch::kDouble);
  const auto y = norm->forward(x.to(torch::kFloat));
  auto expected = torch::empty_like(x);
  const double w[] = {1.5, -0.5, 2.0}, b[] = {0.1, 0.2, -0.3}, m[] = {0.5, -1.0, 0.0},
               v[] = {4.0, 0.25, 1.0};
  for (int c = 0; c < 3; ++c) {
    expected.select(1, c).copy_((x.select(1, c) - m[c]) / std::sqrt(v[c] + 1e-3) * w[c] + b[c]);
  }
  EXPECT_LE(max_abs_diff(y, expected), 1e-5);
  EXPECT_TRUE(norm->parameters().empty());  // nothing to train
  EXPECT_THROW(norm->forward(torch::zeros({1, 4, 2, 2})), Error);
}

TEST(ResNet, NamesAndShapesAreTorchvisionResNet50s) {
  const auto& expected = fixture().meta().at("resnet50_state_dict");
  for (auto norm : {ResNetNorm::kBatchNorm, ResNetNorm::kFrozenBatchNorm}) {
    auto o = ResNetOptions::resnet50();
    o.norm = norm;
    ResNet model(o);
    const auto ours = state(*model);
    std::size_t compared = 0;
    for (const auto& item : expected.items()) {
      const auto& name = item.key();
      const auto& shape = item.value();
      if (norm == ResNetNorm::kFrozenBatchNorm && is_step_counter(name)) {
        EXPECT_EQ(ours.count(name), 0u) << name;
        continue;
      }
      auto it = ours.find(name);
      ASSERT_NE(it, ours.end()) << "missing " << name;
      EXPECT_EQ(it->second.sizes(), at::IntArrayRef(shape.get<std::vector<std::int64_t>>()))
          << name;
      ++compared;
    }
    EXPECT_EQ(compared, ours.size());  // nothing extra
    EXPECT_GT(compared, 250u);
  }
}

std::int64_t count(const std::vector<torch::Tensor>& tensors) {
  std::int64_t n = 0;
  for (const auto& t : tensors) n += t.numel();
  return n;
}

TEST(ResNet, ParameterCounts) {
  // torchvision's counts without fc (resnet50: 25,557,032 - 2048 * 1000 - 1000).
  const std::int64_t r50 = fixture().meta().at("resnet50_without_fc").get<std::int64_t>();
  EXPECT_EQ(r50, 23508032);
  const std::map<std::string, std::int64_t> expected{{"resnet18", 11176512},
                                                     {"resnet34", 21284672},
                                                     {"resnet50", 23508032},
                                                     {"resnet101", 42500160}};
  for (const auto& [name, n] : expected) {
    auto o = ResNetOptions::preset(name);
    o.norm = ResNetNorm::kBatchNorm;
    EXPECT_EQ(count(ResNet(o)->parameters()), n) << name;
  }
  // With frozen norms their affines are buffers: parameters + affine buffers give the same total.
  ResNet frozen(ResNetOptions::resnet50());
  std::int64_t affine = 0;
  for (const auto& item : frozen->named_buffers()) {
    const auto& key = item.key();
    if (key.size() > 7 &&
        (key.substr(key.size() - 7) == ".weight" || key.substr(key.size() - 5) == ".bias")) {
      affine += item.value().numel();
    }
  }
  EXPECT_GT(affine, 0);
  EXPECT_EQ(count(frozen->parameters()) + affine, 23508032);
}

TEST(ResNet, FreezeAtStopsGradientsAndFreezesNorms) {
  auto o = fixture_options("basic", ResNetNorm::kBatchNorm);
  o.freeze_at = 2;  // stem and res2
  ResNet model(o);
  for (const auto& item : model->named_parameters()) {
    const auto& name = item.key();
    const bool frozen = name.rfind("conv1.", 0) == 0 || name.rfind("layer1.", 0) == 0;
    EXPECT_EQ(item.value().requires_grad(), !frozen) << name;
  }
  EXPECT_NE(model->bn1.ptr()->as<FrozenBatchNorm2dImpl>(), nullptr);
  const auto names = state(*model);
  EXPECT_EQ(names.count("layer1.0.bn1.num_batches_tracked"), 0u);  // frozen
  EXPECT_EQ(names.count("layer2.0.bn1.num_batches_tracked"), 1u);  // still a BatchNorm2d
  EXPECT_EQ(names.count("layer2.0.downsample.1.running_var"), 1u);

  model->train();
  const auto x = torch::randn({2, 3, 32, 32});
  model->forward(x)[3].sum().backward();
  EXPECT_FALSE(model->conv1->weight.grad().defined());
  EXPECT_TRUE(model->layer2->named_parameters()["0.conv1.weight"].grad().defined());
  EXPECT_GT(model->layer4->named_parameters()["0.conv2.weight"].grad().abs().sum().item<double>(),
            0.0);

  o.freeze_at = 0;
  for (const auto& p : ResNet(o)->parameters()) EXPECT_TRUE(p.requires_grad());
  o.freeze_at = 5;
  ResNet all_frozen(o);
  for (const auto& p : all_frozen->parameters()) EXPECT_FALSE(p.requires_grad());
  for (const auto& m : all_frozen->modules()) EXPECT_EQ(m->as<torch::nn::BatchNorm2d>(), nullptr);
}

TEST(ResNet, OptionsAndErrors) {
  EXPECT_TRUE(ResNetOptions::preset("resnet101").bottleneck);
  EXPECT_EQ(ResNetOptions::preset("r34").layers, (std::vector<std::int64_t>{3, 4, 6, 3}));
  EXPECT_FALSE(ResNetOptions::preset("resnet18").bottleneck);
  EXPECT_EQ(ResNetOptions::resnet50().stage_channels(3), 2048);
  EXPECT_EQ(ResNetOptions::resnet18().stage_channels(3), 512);
  auto message = test::thrown_message<ConfigError>([] { ResNetOptions::preset("resnet152"); });
  EXPECT_NE(message.find("resnet50"), std::string::npos) << message;

  auto bad = ResNetOptions::resnet18();
  bad.layers = {2, 2, 2};
  EXPECT_THROW(ResNet{bad}, ConfigError);
  bad = ResNetOptions::resnet18();
  bad.freeze_at = 6;
  EXPECT_THROW(ResNet{bad}, ConfigError);
  bad = ResNetOptions::resnet18();
  bad.layers = {2, 0, 2, 2};
  EXPECT_THROW(ResNet{bad}, ConfigError);

  auto o = fixture_options("basic", ResNetNorm::kFrozenBatchNorm);
  ResNet model(o);
  EXPECT_THROW(model->forward(torch::zeros({1, 1, 32, 32})), Error);
  EXPECT_THROW(model->forward(torch::zeros({3, 32, 32})), Error);
}

// Folding the frozen norms into the convolutions changes no output (torchvision's weights with
// random statistics, both block kinds) and leaves trainable batch norms alone.
TEST(ResNet, FuseFrozenNormsKeepsTheOutputs) {
  for (const std::string label : {"basic", "bottleneck"}) {
    auto model = load_fixture_model(label, ResNetNorm::kFrozenBatchNorm);
    model->eval();
    const auto& x = fixture().get(label + ".input");
    torch::NoGradGuard no_grad;
    const auto before = model->forward(x);
    // basic: stem + 6 blocks x 2 + 3 downsamples; bottleneck: stem + 5 blocks x 3 + 4.
    EXPECT_EQ(model->fuse_frozen_norms(), label == "basic" ? 16 : 20) << label;
    const auto after = model->forward(x);
    for (std::size_t i = 0; i < 4; ++i) {
      EXPECT_LE(max_abs_diff(after[i], before[i]), kTolerance) << label << " " << kOutputs[i];
      EXPECT_LE(max_abs_diff(after[i], fixture().get(label + "." + kOutputs[i])), kTolerance);
    }
    const auto names = state(*model);
    EXPECT_EQ(names.count("conv1.bias"), 1u);
    EXPECT_EQ(names.count("bn1.running_var"), 0u);
    EXPECT_EQ(names.count("layer2.0.downsample.0.bias"), 1u);
    EXPECT_EQ(names.count("layer2.0.downsample.1.weight"), 0u);
    EXPECT_EQ(model->fuse_frozen_norms(), 0);  // nothing left to fold
  }
  // Trainable norms stay; only the frozen stem (freeze_at 1) folds.
  auto o = fixture_options("basic", ResNetNorm::kBatchNorm);
  o.freeze_at = 1;
  ResNet partly(o);
  EXPECT_EQ(partly->fuse_frozen_norms(), 1);
  EXPECT_EQ(state(*partly).count("layer1.0.bn1.running_var"), 1u);
}

TEST(ResNet, ConvolutionFlopsAreTorchvisions) {
  // Counted with forward hooks on torchvision's convolutions (2 per multiply-add, no fc).
  EXPECT_DOUBLE_EQ(resnet_conv_flops(ResNetOptions::resnet50(), 224, 224), 8174272512.0);
  EXPECT_DOUBLE_EQ(resnet_conv_flops(ResNetOptions::resnet50(), 480, 480), 37534924800.0);
  EXPECT_DOUBLE_EQ(resnet_conv_flops(ResNetOptions::resnet18(), 67, 45), 295077120.0);
}

}  // namespace
}  // namespace wico::backbones
