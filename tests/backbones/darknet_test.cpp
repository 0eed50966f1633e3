// Darknet-53 + YOLOv3's first six head CBLs as VLT's Keras code: weights in Keras's h5 layout
// (conv2d_k / batch_normalization_k, HWIO kernels) load strictly through the darknet_keras map, and
// the three taps equal a numpy implementation of Keras's layer formulas
// (scripts/make_darknet_fixtures.py) in inference and in the training phase of frozen layers
// (batch statistics, moving statistics untouched); the stride-2 top-left padding by hand; the
// paper-size parameter counts of ../shared/specs/vlt.md section 10; options.
#include "wico/backbones/darknet.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "backbones/tensor_fixture.h"
#include "test_util.h"
#include "wico/core/error.h"
#include "wico/io/darknet_weights.h"
#include "wico/io/import.h"
#include "wico/io/name_map.h"
#include "wico/io/weights.h"

namespace wico::backbones {
namespace {

namespace fs = std::filesystem;
using test::max_abs_diff;
using test::TensorFixture;

const fs::path kDir = fs::path(WICO_TEST_DATA_DIR) / "darknet";

const TensorFixture& fixture() {
  static const TensorFixture f(kDir / "darknet");
  return f;
}

DarknetOptions fixture_options() {
  DarknetOptions o;
  o.width = fixture().meta().at("width");
  o.head_convs = fixture().meta().at("head_convs");
  return o;
}

// Relative to the reference's largest magnitude: float32 here against float64 numpy through 58
// layers.
double relative_diff(const at::Tensor& ours, const at::Tensor& reference) {
  return max_abs_diff(ours, reference) / reference.abs().max().item<double>();
}

#ifdef WICO_TEST_HAVE_HDF5

Darknet loaded(std::int64_t frozen) {
  DarknetOptions o = fixture_options();
  o.frozen_cbls = frozen;
  Darknet net(o);
  const io::WeightFile file = io::read_weights(kDir / "darknet_keras.h5");
  const io::ImportReport report =
      io::import_weights(*net, file, io::name_map("darknet_keras"), io::ImportMode::kStrict);
  EXPECT_TRUE(report.clean()) << report.table();
  EXPECT_EQ(report.matched.size(), 58u * 5) << report.table();  // kernel + 4 BN tensors each
  EXPECT_THAT(report.ignored, ::testing::Contains("conv2d_59/conv2d_59/kernel:0"));
  return net;
}

TEST(DarknetKeras, InferenceTapsEqualKerasFormulas) {
  Darknet net = loaded(56);
  net->eval();
  const at::NoGradGuard no_grad;
  const DarknetFeatures out = net->forward(fixture().get("input"));
  EXPECT_LT(relative_diff(out.stride8, fixture().get("eval.stride8")), 1e-5);
  EXPECT_LT(relative_diff(out.stride16, fixture().get("eval.stride16")), 1e-5);
  EXPECT_LT(relative_diff(out.stride32, fixture().get("eval.stride32")), 1e-5);
}

// The original trains with Darknet frozen but in Keras's training phase: every frozen CBL
// normalises with the batch's statistics and none of its moving statistics change.
TEST(DarknetKeras, FrozenLayersInTrainingUseBatchStatisticsAndKeepTheirs) {
  Darknet net = loaded(58);
  net->train();
  const at::Tensor mean_before = net->cbl->ptr<ConvBnLeakyImpl>(30)->bn->running_mean.clone();
  const at::Tensor var_before = net->cbl->ptr<ConvBnLeakyImpl>(57)->bn->running_var.clone();
  const DarknetFeatures out = net->forward(fixture().get("input"));
  EXPECT_LT(relative_diff(out.stride8, fixture().get("train.stride8")), 1e-4);
  EXPECT_LT(relative_diff(out.stride16, fixture().get("train.stride16")), 1e-4);
  EXPECT_LT(relative_diff(out.stride32, fixture().get("train.stride32")), 1e-4);
  EXPECT_TRUE(at::equal(net->cbl->ptr<ConvBnLeakyImpl>(30)->bn->running_mean, mean_before));
  EXPECT_TRUE(at::equal(net->cbl->ptr<ConvBnLeakyImpl>(57)->bn->running_var, var_before));
  EXPECT_FALSE(out.stride32.requires_grad());  // everything frozen
  // A trainable CBL does update its statistics (Keras's momentum 0.99).
  Darknet trainable = loaded(0);
  trainable->train();
  (void)trainable->forward(fixture().get("input"));
  EXPECT_FALSE(
      at::equal(trainable->cbl->ptr<ConvBnLeakyImpl>(30)->bn->running_mean, mean_before));
}

#endif

// Darknet's own .weights file of the same weights (scripts/make_darknet_fixtures.py writes both):
// read in the network's layout, section i into cbl.i strictly, it gives the same taps; the
// header lands in the metadata and the later layer's floats in a note.
TEST(DarknetWeights, SameTapsAsTheKerasFile) {
  Darknet net(fixture_options());
  const io::WeightFile file =
      io::read_darknet_weights(kDir / "darknet.weights", darknet_sections(fixture_options()));
  EXPECT_EQ(file.format, io::WeightFormat::kDarknet);
  EXPECT_EQ(file.metadata.at("version"), "0.2.0");
  EXPECT_EQ(file.metadata.at("seen"), "123456");
  ASSERT_EQ(file.notes.size(), 1u);
  EXPECT_THAT(file.notes[0], ::testing::HasSubstr("21 floats after the 58 sections"));
  const io::ImportReport report =
      io::import_weights(*net, file, io::name_map("darknet"), io::ImportMode::kStrict);
  EXPECT_TRUE(report.clean()) << report.table();
  EXPECT_EQ(report.matched.size(), 58u * 5);
  net->eval();
  const at::NoGradGuard no_grad;
  const DarknetFeatures out = net->forward(fixture().get("input"));
  EXPECT_LT(relative_diff(out.stride16, fixture().get("eval.stride16")), 1e-5);
  EXPECT_LT(relative_diff(out.stride32, fixture().get("eval.stride32")), 1e-5);
}

// A file shorter than the layout asks for names the byte offset and the section; an unread
// .weights file is not guessed at.
TEST(DarknetWeights, ShortFileAndWrongLayoutAreErrors) {
  DarknetOptions wider = fixture_options();
  wider.width = 4;  // twice the file's channels: the file ends early
  try {
    io::read_darknet_weights(kDir / "darknet.weights", darknet_sections(wider));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("darknet.weights: file ends at byte 902112"));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("section "));
  }
  EXPECT_THROW(io::read_weights(kDir / "darknet.weights"), Error);
  EXPECT_EQ(darknet_sections(DarknetOptions{}).size(), 58u);
  EXPECT_EQ(darknet_sections(DarknetOptions{})[1].in, 32);
  EXPECT_EQ(darknet_sections(DarknetOptions{})[1].out, 64);
}

// Folding the batch norms into the convolutions (wico bench vlt's fastest path) leaves the eval
// outputs as they were, on the stride-2 and 'same' CBLs alike; training mode ignores the fold.
TEST(Darknet, FoldedBatchNormsGiveTheSameOutputs) {
  DarknetOptions o;
  o.width = 2;
  o.blocks = {1, 1, 1, 1, 1};
  o.frozen_cbls = 0;
  Darknet net(o);
  {
    const at::NoGradGuard no_grad;
    for (auto& b : net->named_buffers()) {
      if (b.key().find("running_mean") != std::string::npos) b.value().normal_(0.0, 0.3);
      if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 1.5);
    }
    for (auto& p : net->named_parameters()) {
      if (p.key().find(".bn.") != std::string::npos) p.value().uniform_(0.5, 1.5);
    }
  }
  net->eval();
  const at::Tensor x = at::randn({1, 3, 64, 64});
  const at::NoGradGuard no_grad;
  const at::Tensor before = net->forward(x).stride32;
  fold_batch_norms(*net);
  EXPECT_LT(max_abs_diff(net->forward(x).stride32, before), 1e-4 * before.abs().max().item<double>());
  net->train();
  const at::Tensor train = net->forward(x).stride32;  // batch statistics, not the fold
  EXPECT_GT(max_abs_diff(train, before), 1e-3);
}

// Darknet's stride-2 convolutions pad one zero row on top and one column on the left only: on a
// 5x5 input a 3x3 kernel of ones gives 2x2 outputs, each the sum of the covered pixels (with
// symmetric padding it would be 3x3).
TEST(Darknet, StrideTwoPadsTopAndLeftOnly) {
  DarknetOptions o;
  ConvBnLeaky cbl(1, 1, 3, 2, o);
  {
    const at::NoGradGuard no_grad;
    cbl->conv->weight.fill_(1.0);
    cbl->bn->running_var.fill_(1.0 - o.bn_eps);  // the norm is the identity
  }
  cbl->eval();
  const at::Tensor x = at::arange(25, at::kFloat).view({1, 1, 5, 5});
  const at::NoGradGuard no_grad;
  const at::Tensor y = cbl->forward(x);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{1, 1, 2, 2}));
  // (0,0): x[0..1][0..1] = 0+1+5+6; (0,1): x[0..1][1..3]; (1,0): x[1..3][0..1]; (1,1): x[1..3][1..3].
  EXPECT_TRUE(at::allclose(y.view({4}), at::tensor({12.0f, 27.0f, 63.0f, 108.0f})));
  // LeakyReLU 0.1 on the negative side.
  EXPECT_TRUE(at::allclose(cbl->forward(-x).view({4}), at::tensor({-1.2f, -2.7f, -6.3f, -10.8f})));
}

// ../shared/specs/vlt.md section 10: Darknet-53's 52 CBLs 40,584,928 weights + 35,712 BN
// statistics; head CBLs 1-4 10,491,904 + 6,144; 5-6 5,245,952 + 3,072; only CBLs 57-58 train.
TEST(Darknet, PaperSizeCountsAndFreezingAreTheOriginals) {
  Darknet net{DarknetOptions()};
  ASSERT_EQ(net->cbl->size(), 58u);
  auto weights_of = [&](std::size_t from, std::size_t to, bool statistics) {
    std::int64_t n = 0;
    for (std::size_t i = from; i < to; ++i) {
      const auto* c = net->cbl->ptr<ConvBnLeakyImpl>(i).get();
      n += statistics ? c->bn->running_mean.numel() + c->bn->running_var.numel()
                      : c->conv->weight.numel() + c->bn->weight.numel() + c->bn->bias.numel();
    }
    return n;
  };
  EXPECT_EQ(weights_of(0, 52, false), 40584928);
  EXPECT_EQ(weights_of(0, 52, true), 35712);
  EXPECT_EQ(weights_of(52, 56, false), 10491904);
  EXPECT_EQ(weights_of(52, 56, true), 6144);
  EXPECT_EQ(weights_of(56, 58, false), 5245952);
  EXPECT_EQ(weights_of(56, 58, true), 3072);
  std::int64_t trainable = 0;
  for (const auto& p : net->parameters()) trainable += p.requires_grad() ? p.numel() : 0;
  EXPECT_EQ(trainable, 5245952);
  // At 416: the taps are 52x52x256, 26x26x512 and 13x13x1024 (a narrow net, the same strides).
  DarknetOptions narrow;
  narrow.width = 2;
  Darknet small(narrow);
  small->eval();
  const at::NoGradGuard no_grad;
  const DarknetFeatures out = small->forward(at::randn({1, 3, 416, 416}));
  EXPECT_EQ(out.stride8.sizes(), (at::IntArrayRef{1, 16, 52, 52}));
  EXPECT_EQ(out.stride16.sizes(), (at::IntArrayRef{1, 32, 26, 26}));
  EXPECT_EQ(out.stride32.sizes(), (at::IntArrayRef{1, 64, 13, 13}));
}

TEST(Darknet, OptionErrorsNameTheOption) {
  DarknetOptions o;
  o.blocks = {1, 2, 8};
  EXPECT_THAT(test::thrown_message<ConfigError>([&] { o.validate(); }), ::testing::HasSubstr("5 stages"));
  o = DarknetOptions();
  o.frozen_cbls = 59;
  EXPECT_THAT(test::thrown_message<ConfigError>([&] { o.validate(); }),
              ::testing::HasSubstr("58 CBLs"));
  EXPECT_THROW(Darknet{o}, ConfigError);
}

}  // namespace
}  // namespace wico::backbones
