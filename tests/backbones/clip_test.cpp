// CLIP's ResNet and text transformer as CRIS uses them, against CRIS's own model/clip.py
// (scripts/make_clip_fixtures.py, a narrow model of the same code with random weights): C3, C4,
// C5 (the dense attention pooling with its bicubic-resized position table and `connect`
// residual), the word features and the sentence state in eval mode, C5 and the updated batch-norm
// statistics in training mode; the state-dict names and shapes and the parameter counts of the
// RN50 and RN101 layouts; option errors.
#include "wico/backbones/clip.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>

#include "backbones/tensor_fixture.h"
#include "wico/core/error.h"
#include "wico/io/import.h"
#include "wico/io/name_map.h"
#include "wico/io/weights.h"

namespace wico::backbones {
namespace {

using test::max_abs_diff;
using test::TensorFixture;

const TensorFixture& fixture() {
  static const TensorFixture f(std::filesystem::path(WICO_TEST_DATA_DIR) / "clip" / "clip");
  return f;
}

// The state dict by name: parameters and buffers (batch norms' statistics).
std::map<std::string, at::Tensor> state_of(torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& item : m.named_parameters()) out.emplace(item.key(), item.value());
  for (const auto& item : m.named_buffers()) out.emplace(item.key(), item.value());
  return out;
}

Clip fixture_model() {
  const auto& m = fixture().meta();
  ClipVisualOptions v;
  v.layers = m["vision_layers"].get<std::vector<std::int64_t>>();
  v.width = m["vision_width"].get<std::int64_t>();
  v.output_dim = m["embed_dim"].get<std::int64_t>();
  v.heads = v.width * 32 / 64;
  v.spacial_dim = m["image_resolution"].get<std::int64_t>() / 32;
  ClipTextOptions t;
  t.vocab_size = m["vocab_size"].get<std::int64_t>();
  t.context_length = m["context_length"].get<std::int64_t>();
  t.width = m["transformer_width"].get<std::int64_t>();
  t.heads = m["transformer_heads"].get<std::int64_t>();
  t.layers = m["transformer_layers"].get<std::int64_t>();
  t.embed_dim = m["embed_dim"].get<std::int64_t>();
  Clip model(v, t);
  // Every fixture weight into the tensor of the same name; none left over on either side.
  auto state = state_of(*model);
  const at::NoGradGuard no_grad;
  std::size_t loaded = 0;
  for (auto& [name, tensor] : state) {
    if (name.find("num_batches_tracked") != std::string::npos) continue;
    const at::Tensor& w = fixture().get("weights." + name);
    EXPECT_EQ(tensor.sizes(), w.sizes()) << name;
    tensor.copy_(w);
    ++loaded;
  }
  EXPECT_GT(loaded, 100u);
  return model;
}

// Relative to the reference's largest magnitude.
double relative(const at::Tensor& ours, const at::Tensor& theirs) {
  return max_abs_diff(ours, theirs) / theirs.abs().max().item<double>();
}

TEST(Clip, EvalOutputsMatchCrisClip) {
  Clip model = fixture_model();
  model->eval();
  const at::NoGradGuard no_grad;
  const auto image = model->encode_image(fixture().get("images"));
  EXPECT_LT(relative(image.c3, fixture().get("eval.c3")), 1e-4);
  EXPECT_LT(relative(image.c4, fixture().get("eval.c4")), 1e-4);
  EXPECT_LT(relative(image.c5, fixture().get("eval.c5")), 1e-4);
  const auto text = model->encode_text(fixture().get("tokens").to(at::kLong));
  EXPECT_LT(relative(text.words, fixture().get("eval.words")), 1e-4);
  EXPECT_LT(relative(text.state, fixture().get("eval.state")), 1e-4);
}

TEST(Clip, TrainingModeUsesAndUpdatesBatchStatistics) {
  Clip model = fixture_model();
  model->train();
  at::Tensor c5;
  {
    const at::NoGradGuard no_grad;
    c5 = model->encode_image(fixture().get("images")).c5;
  }
  EXPECT_LT(relative(c5, fixture().get("train.c5")), 1e-4);
  int checked = 0;
  for (const auto& item : model->named_buffers()) {
    const std::string& name = item.key();
    if (name.find("running_") == std::string::npos || name.rfind("visual.", 0) != 0) continue;
    EXPECT_LT(max_abs_diff(item.value(), fixture().get("train_stats." + name)), 1e-4) << name;
    ++checked;
  }
  EXPECT_GT(checked, 40);
}

// The state dict of OpenAI's layouts (with CRIS's `connect`) name for name and shape for shape.
TEST(Clip, PaperLayoutsHaveTheOriginalsNamesShapesAndCounts) {
  for (const std::string label : {"rn50", "rn101"}) {
    const auto& expected = fixture().meta()[label];
    ClipVisualOptions v = label == "rn50" ? ClipVisualOptions::rn50() : ClipVisualOptions::rn101();
    ClipTextOptions t;
    t.embed_dim = v.output_dim;
    Clip model(v, t);
    std::map<std::string, std::vector<std::int64_t>> ours;
    for (const auto& [name, tensor] : state_of(*model)) {
      ours.emplace(name, std::vector<std::int64_t>(tensor.sizes().begin(), tensor.sizes().end()));
    }
    std::map<std::string, std::vector<std::int64_t>> theirs;
    for (const auto& [name, shape] : expected["state_dict"].items()) {
      theirs.emplace(name, shape.get<std::vector<std::int64_t>>());
    }
    // The original's text mask is a registered attribute, not state; ours has none either.
    EXPECT_EQ(ours, theirs) << label;
    std::int64_t parameters = 0;
    for (const auto& p : model->parameters()) parameters += p.numel();
    EXPECT_EQ(parameters, expected["parameters"].get<std::int64_t>()) << label;
  }
}

// OpenAI's layout (a TorchScript archive with float16 weights and three configuration scalars,
// written from the fixture model by the fixture script) loads strictly through the openai_clip
// map: every tensor but CRIS's new `connect` residual, with the archive's values.
TEST(Clip, OpenAiTorchScriptArchiveLoadsByName) {
  const auto file = io::read_weights(std::filesystem::path(WICO_TEST_DATA_DIR) / "clip" /
                                     "openai_clip.pt");
  Clip model = fixture_model();
  const at::Tensor connect_before = model->visual->attnpool->connect_conv->weight.clone();
  {
    const at::NoGradGuard no_grad;
    for (auto& [name, t] : state_of(*model)) {
      if (name.find("connect") == std::string::npos) t.zero_();  // so every value must arrive
    }
  }
  const io::ImportReport report =
      io::import_weights(*model, file, io::name_map("openai_clip"), io::ImportMode::kStrict);
  std::size_t compared = 0;
  for (const auto& [name, tensor] : state_of(*model)) {
    if (name.find("num_batches_tracked") != std::string::npos) continue;
    if (name.find("connect") != std::string::npos) continue;
    const bool statistic = name.find("running_") != std::string::npos;
    // Running statistics as the archive has them (after the fixture's training-mode pass);
    // everything else the eval-mode weights, float16-rounded where the archive is float16.
    const at::Tensor expected = fixture().get((statistic ? "train_stats." : "weights.") + name);
    const at::Tensor rounded = expected.to(at::kHalf).to(at::kFloat);
    EXPECT_TRUE(at::equal(tensor, expected) || at::equal(tensor, rounded)) << name;
    ++compared;
  }
  EXPECT_GT(compared, 150u);
  EXPECT_TRUE(at::equal(model->visual->attnpool->connect_conv->weight, connect_before))
      << "connect is not in OpenAI's files: it keeps its own initialisation";
  EXPECT_TRUE(report.clean()) << report.table();
  // connect.0.weight and connect.1.{weight, bias, running_mean, running_var, num_batches_tracked}
  EXPECT_EQ(report.expected_missing.size(), 6u) << report.table();
  EXPECT_FALSE(report.conversions.empty()) << "the archive's float16 tensors are converted";
}

TEST(Clip, OptionsAndInputsAreChecked) {
  ClipVisualOptions v;
  v.heads = 5;
  EXPECT_THROW(v.validate(), ConfigError);
  v = ClipVisualOptions::rn50();
  v.layers = {3, 4, 6};
  EXPECT_THROW(v.validate(), ConfigError);
  ClipTextOptions t;
  t.heads = 7;
  EXPECT_THROW(t.validate(), ConfigError);
  Clip model = fixture_model();
  const at::NoGradGuard no_grad;
  EXPECT_THROW(model->encode_text(at::zeros({1, 13}, at::kLong)), std::exception);  // > context
  EXPECT_THROW(model->encode_image(at::zeros({1, 1, 64, 64})), std::exception);
}

}  // namespace
}  // namespace wico::backbones
