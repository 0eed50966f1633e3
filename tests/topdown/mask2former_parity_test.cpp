// Mask2Former end to end against the original's own code (scripts/make_mask2former_fixtures.py
// runs facebookresearch/Mask2Former's MSDeformAttnPixelDecoder, MultiScaleMaskedTransformerDecoder
// and MaskFormer.instance_inference on a narrow torchvision ResNet with random weights): the
// weights, written in the released checkpoint's layout, load through the `mask2former` name map
// with nothing missing, and the trunk's C4/C5, the mask features, the class and mask logits
// (final and auxiliary) and the instance list (classes, scores, masks) agree.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "backbones/tensor_fixture.h"
#include "test_util.h"
#include "wico/io/import.h"
#include "wico/io/name_map.h"
#include "wico/io/weights.h"
#include "wico/topdown/mask2former/inference.h"
#include "wico/topdown/mask2former/mask2former.h"

namespace wico::topdown {
namespace {

using test::max_abs_diff;
using test::TensorFixture;

const std::filesystem::path kDir = std::filesystem::path(WICO_TEST_DATA_DIR) / "mask2former_e2e";

const TensorFixture& fixture() {
  static const TensorFixture f(kDir / "mask2former_e2e");
  return f;
}

Mask2FormerOptions fixture_options() {
  const auto& m = fixture().meta();
  Mask2FormerOptions o;
  o.backbone.bottleneck = true;
  o.backbone.layers = {1, 1, 1, 1};
  o.backbone.width = m.at("width");
  o.backbone.norm = backbones::ResNetNorm::kFrozenBatchNorm;
  const std::int64_t dim = m.at("conv_dim");
  auto& pd = o.pixel_decoder;
  pd.in_channels.clear();
  for (std::int64_t i = 0; i < 4; ++i) pd.in_channels.push_back(o.backbone.stage_channels(i));
  pd.conv_dim = pd.mask_dim = dim;
  pd.num_layers = m.at("encoder_layers");
  pd.num_heads = m.at("heads");
  pd.num_points = 4;
  pd.ffn_dim = m.at("ffn");
  pd.num_groups = 32;
  auto& d = o.decoder;
  d.in_channels = d.hidden_dim = d.mask_dim = dim;
  d.num_queries = m.at("queries");
  d.num_heads = m.at("heads");
  d.ffn_dim = m.at("ffn");
  d.num_layers = m.at("decoder_layers");
  d.num_classes = m.at("classes");
  o.criterion.num_classes = d.num_classes;
  return o;
}

struct Loaded {
  std::shared_ptr<Mask2FormerExtractor> extractor;
  ExtractorOutput output;
};

const Loaded& loaded() {
  static const Loaded l = [] {
    Loaded r;
    r.extractor = std::make_shared<Mask2FormerExtractor>(fixture_options());
    const io::WeightFile file = io::read_weights(kDir / "mask2former_e2e.pkl");
    const io::ImportReport report = io::import_weights(
        *r.extractor, file, io::name_map("mask2former"), io::ImportMode::kStrict);
    EXPECT_TRUE(report.clean()) << report.table();
    EXPECT_EQ(report.loaded_values, report.model_values) << report.table();
    r.extractor->eval();
    const at::NoGradGuard no_grad;
    r.output = r.extractor->forward(fixture().get("image"));
    return r;
  }();
  return l;
}

constexpr double kTolerance = 1e-4;

TEST(Mask2FormerParity, TrunkAndPixelDecoderMatchTheOriginal) {
  const auto& out = loaded().output;
  EXPECT_LE(max_abs_diff(out.c4, fixture().get("res4")), kTolerance);
  EXPECT_LE(max_abs_diff(out.c5, fixture().get("res5")), kTolerance);
}

TEST(Mask2FormerParity, ClassAndMaskLogitsMatchTheOriginal) {
  const auto& out = loaded().output;
  const auto& f = fixture();
  EXPECT_LE(max_abs_diff(out.class_logits, f.get("pred_logits")), kTolerance);
  EXPECT_LE(max_abs_diff(out.mask_logits, f.get("pred_masks")), kTolerance);
  ASSERT_EQ(out.auxiliary.size(), f.meta().at("aux_outputs").get<std::size_t>());
  EXPECT_LE(max_abs_diff(out.auxiliary.back().first, f.get("aux_last_logits")), kTolerance);
  EXPECT_LE(max_abs_diff(out.auxiliary.front().second, f.get("aux_first_masks")), kTolerance);
}

void expect_the_originals_instances(const ExtractorOutput& out) {
  const auto& f = fixture();
  const std::int64_t top_k = f.meta().at("top_k"), size = f.meta().at("size");
  const Detections d = detect_instances(out.class_logits, out.mask_logits, top_k, size);
  const InstanceCandidates& c = d.instances;
  ASSERT_EQ(c.classes.size(1), top_k);
  // Ours lists the pairs by descending class probability: the original's sorted top-k.
  EXPECT_TRUE(c.classes[0].equal(f.get("instances.class_sorted").to(at::kLong))) << c.classes;
  EXPECT_TRUE(d.query_index[0].equal(f.get("instances.query_sorted").to(at::kLong)))
      << d.query_index;
  // The original's instances, in its own (unsorted) order: find each of ours by class and score.
  const at::Tensor their_scores = f.get("instances.scores");
  const at::Tensor their_classes = f.get("instances.classes").to(at::kLong);
  const at::Tensor their_masks = f.get("instances.masks");
  for (std::int64_t i = 0; i < top_k; ++i) {
    const double score = c.scores[0][i].item<double>();
    const at::Tensor same_class = their_classes == c.classes[0][i];
    const at::Tensor distance =
        (their_scores - score).abs().masked_fill(same_class.logical_not(), 1e9);
    const std::int64_t j = distance.argmin().item<std::int64_t>();
    EXPECT_LT(distance[j].item<double>(), kTolerance) << "instance " << i;
    const at::Tensor ours = (c.masks[0][i] > 0.5).to(at::kFloat);
    EXPECT_LE((ours - their_masks[j]).abs().sum().item<double>(), 2.0) << "instance " << i;
  }
}

TEST(Mask2FormerParity, InstanceListMatchesTheOriginalsInstanceInference) {
  expect_the_originals_instances(loaded().output);
}

// predict(): no deep supervision, the attention masks from mask features resized to each level
// (docs/design.md); the final predictions and the instance list are still the original's.
TEST(Mask2FormerParity, PredictGivesTheOriginalsPredictionsWithoutDeepSupervision) {
  ExtractorOutput out;
  {
    const at::NoGradGuard no_grad;
    out = loaded().extractor->predict(fixture().get("image"));
  }
  EXPECT_TRUE(out.auxiliary.empty());
  EXPECT_LE(max_abs_diff(out.class_logits, fixture().get("pred_logits")), kTolerance);
  EXPECT_LE(max_abs_diff(out.mask_logits, fixture().get("pred_masks")), kTolerance);
  EXPECT_LE(max_abs_diff(out.c5, fixture().get("res5")), kTolerance);
  expect_the_originals_instances(out);
}

}  // namespace
}  // namespace wico::topdown
