// Mask2Former's MSDeformAttn pixel decoder: parity with the original's modules copied into
// scripts/make_msdeform_fixtures.py (the sampling core, MSDeformAttn with 2-d and 4-d reference
// points and a padding mask, a small full decoder's outputs and gradients), the original's
// initialisation and state_dict names, shapes at odd sizes, gradients reaching everything and
// repeating exactly, the paper-size parameter count, and option errors.
#include "wico/topdown/mask2former/pixel_decoder.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <cmath>
#include <cstdint>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "backbones/tensor_fixture.h"
#include "test_util.h"
#include "wico/core/error.h"
#include "wico/topdown/mask2former/ms_deform_attn.h"

namespace wico::topdown {
namespace {

using test::max_abs_diff;
using test::TensorFixture;

constexpr double kTolerance = 1e-4;

const TensorFixture& fixture() {
  static const TensorFixture f(std::filesystem::path(WICO_TEST_DATA_DIR) / "msdeform" / "msdeform");
  return f;
}

SpatialShapes shapes_of(const nlohmann::json& list) {
  SpatialShapes out;
  for (const auto& hw : list)
    out.push_back({hw.at(0).get<std::int64_t>(), hw.at(1).get<std::int64_t>()});
  return out;
}

std::int64_t count(const std::vector<at::Tensor>& tensors) {
  std::int64_t n = 0;
  for (const auto& t : tensors) n += t.numel();
  return n;
}

// ---- MSDeformAttn ----

TEST(MsDeformAttnCore, MatchesThePythonReference) {
  const auto& f = fixture();
  const auto out =
      ms_deform_attn_core(f.get("core.value"), shapes_of(f.meta()["core"]["spatial_shapes"]),
                          f.get("core.sampling_locations"), f.get("core.attention_weights"));
  EXPECT_LT(max_abs_diff(out, f.get("core.output")), kTolerance);
}

TEST(MsDeformAttnCore, ReferencePathMatchesThePythonReference) {
  const auto& f = fixture();
  const auto out = ms_deform_attn_core_reference(
      f.get("core.value"), shapes_of(f.meta()["core"]["spatial_shapes"]),
      f.get("core.sampling_locations"), f.get("core.attention_weights"));
  EXPECT_LT(max_abs_diff(out, f.get("core.output")), kTolerance);
}

// The fused CPU kernel against the grid_sample path in double precision: outputs and the
// gradients of values, locations and weights, with points inside, on the border and outside
// every level (odd sizes, a 1-pixel level, two images, several heads).
TEST(MsDeformAttnCore, FusedKernelEqualsGridSamplePathWithGradients) {
  const test::IntraOpThreads threads(2);
  torch::manual_seed(3);
  const SpatialShapes shapes{{5, 7}, {3, 2}, {1, 1}};
  const std::int64_t n = 2, m = 3, d = 5, lq = 11, levels = 3, points = 4, s = 35 + 6 + 1;
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const auto value0 = at::randn({n, s, m, d}, opts);
  auto loc0 = at::rand({n, lq, m, levels, points, 2}, opts) * 1.6 - 0.3;  // some outside
  loc0.select(1, 0).fill_(0.5);                                            // pixel centres
  loc0.select(1, 1).fill_(1.0 / 7.0);                                      // on cell edges
  const auto att0 = at::rand({n, lq, m, levels, points}, opts);
  const auto grad_out = at::randn({n, lq, m * d}, opts);
  auto run = [&](bool fused) {
    auto value = value0.clone().requires_grad_(true);
    auto loc = loc0.clone().requires_grad_(true);
    auto att = att0.clone().requires_grad_(true);
    const auto out = fused ? ms_deform_attn_core(value, shapes, loc, att)
                           : ms_deform_attn_core_reference(value, shapes, loc, att);
    (out * grad_out).sum().backward();
    return std::vector<at::Tensor>{out.detach(), value.grad(), loc.grad(), att.grad()};
  };
  const auto fused = run(true), reference = run(false);
  const char* names[] = {"output", "grad value", "grad locations", "grad weights"};
  for (std::size_t i = 0; i < fused.size(); ++i) {
    ASSERT_TRUE(fused[i].defined()) << names[i];
    EXPECT_LT(max_abs_diff(fused[i], reference[i]), 1e-10) << names[i];
  }
  EXPECT_GT(fused[2].abs().max().item<double>(), 0.1);  // the locations' gradient is not zero
  // Without gradients (inference) the same forward.
  const at::NoGradGuard no_grad;
  EXPECT_LT(max_abs_diff(ms_deform_attn_core(value0, shapes, loc0, att0), fused[0]), 1e-12);
}

// The inference pass from raw offsets and logits against softmax + locations + the core, with
// reference points shared by two images or one per image.
TEST(MsDeformAttnCore, FromOffsetsEqualsTheLayersSteps) {
  const test::IntraOpThreads threads(2);
  torch::manual_seed(5);
  const SpatialShapes shapes{{6, 5}, {3, 3}};
  const std::int64_t n = 2, m = 2, d = 4, lq = 13, levels = 2, points = 3, s = 30 + 9;
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const auto value = at::randn({n, s, m, d}, opts);
  const auto offsets = at::randn({n, lq, m, levels, points, 2}, opts) * 2;
  const auto logits = at::randn({n, lq, m, levels * points}, opts);
  for (const std::int64_t rows : {std::int64_t{1}, n}) {
    const auto reference = at::rand({rows, lq, levels, 2}, opts);
    std::vector<double> wh{5, 6, 3, 3};
    const auto locations = reference.unsqueeze(2).unsqueeze(4) +
                           offsets / at::tensor(wh, opts).view({1, 1, 1, levels, 1, 2});
    const auto weights = logits.softmax(-1).view({n, lq, m, levels, points});
    const auto expected = ms_deform_attn_core_reference(value, shapes, locations, weights);
    const at::NoGradGuard no_grad;
    const auto ours = ms_deform_attn_from_offsets(value, shapes, reference, offsets, logits);
    EXPECT_LT(max_abs_diff(ours, expected), 1e-12) << rows << " reference rows";
  }
  EXPECT_THROW((void)ms_deform_attn_from_offsets(value, shapes, at::rand({1, lq, levels, 2}, opts),
                                                 offsets, logits.narrow(-1, 0, 5)),
               std::exception);
}

// The paper's head width (256 channels / 8 heads = 32) in float takes the fixed-width kernel (and
// its AVX2 + FMA clone where the CPU has them): the same samples as the grid_sample path, from
// given locations and from raw offsets, with points inside, on borders and outside the levels.
TEST(MsDeformAttnCore, FixedWidthFloatKernelEqualsGridSamplePath) {
  const test::IntraOpThreads threads(2);
  torch::manual_seed(8);
  const SpatialShapes shapes{{9, 11}, {5, 6}, {3, 3}};
  const std::int64_t n = 2, m = 3, d = 32, lq = 37, levels = 3, points = 4, s = 99 + 30 + 9;
  const auto value = at::randn({n, s, m, d});
  auto loc = at::rand({n, lq, m, levels, points, 2}) * 1.6 - 0.3;
  loc.select(1, 0).fill_(0.5);
  const auto att = at::rand({n, lq, m, levels, points});
  const at::NoGradGuard no_grad;
  const auto expected = ms_deform_attn_core_reference(value, shapes, loc, att);
  EXPECT_LT(max_abs_diff(ms_deform_attn_core(value, shapes, loc, att), expected), 1e-5);

  const auto reference = at::rand({1, lq, levels, 2});
  const auto offsets = at::randn({n, lq, m, levels, points, 2}) * 2;
  const auto logits = at::randn({n, lq, m, levels * points});
  std::vector<float> wh{11, 9, 6, 5, 3, 3};
  const auto locations = reference.unsqueeze(2).unsqueeze(4) +
                         offsets / at::tensor(wh).view({1, 1, 1, levels, 1, 2});
  const auto weights = logits.softmax(-1).view({n, lq, m, levels, points});
  EXPECT_LT(max_abs_diff(ms_deform_attn_from_offsets(value, shapes, reference, offsets, logits),
                         ms_deform_attn_core_reference(value, shapes, locations, weights)),
            1e-5);
}

// bfloat16 (autocast's CPU type, which grid_sample has no CPU kernel for) samples in float32.
TEST(MsDeformAttnCore, HalfTypesSampleInFloat) {
  const auto& f = fixture();
  const auto shapes = shapes_of(f.meta()["core"]["spatial_shapes"]);
  const auto out = ms_deform_attn_core(f.get("core.value").to(at::kBFloat16), shapes,
                                       f.get("core.sampling_locations").to(at::kBFloat16),
                                       f.get("core.attention_weights").to(at::kBFloat16));
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  EXPECT_LT(max_abs_diff(out.to(at::kFloat), f.get("core.output")), 0.1);
}

TEST(MsDeformAttnCore, RejectsMismatchedShapes) {
  const SpatialShapes shapes{{2, 2}};
  const auto value = at::zeros({1, 4, 2, 3});
  try {
    (void)ms_deform_attn_core(value, shapes, at::zeros({1, 5, 2, 1, 2, 2}),
                              at::zeros({1, 5, 2, 1, 3}));
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("do not fit"), std::string::npos) << e.what();
  }
  try {
    (void)ms_deform_attn_core(value, SpatialShapes{{2, 3}}, at::zeros({1, 5, 2, 1, 2, 2}),
                              at::zeros({1, 5, 2, 1, 2}));
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("cover 6 positions"), std::string::npos) << e.what();
  }
}

MSDeformAttn fixture_attention() {
  const auto& m = fixture().meta()["attn"];
  return MSDeformAttn(
      MSDeformAttnOptions{m["d_model"].get<std::int64_t>(), m["n_levels"].get<std::int64_t>(),
                          m["n_heads"].get<std::int64_t>(), m["n_points"].get<std::int64_t>()});
}

TEST(MsDeformAttn, InitIsTheOriginals) {
  auto attn = fixture_attention();
  // Head h's direction (cos, sin)(2 pi h / M) pushed to the square's edge, times point + 1.
  EXPECT_LT(
      max_abs_diff(attn->sampling_offsets->bias, fixture().get("attn.init.sampling_offsets.bias")),
      1e-6);
  EXPECT_EQ(attn->sampling_offsets->weight.abs().max().item<float>(), 0.0f);
  EXPECT_EQ(attn->attention_weights->weight.abs().max().item<float>(), 0.0f);
  EXPECT_EQ(attn->attention_weights->bias.abs().max().item<float>(), 0.0f);
  EXPECT_EQ(attn->value_proj->bias.abs().max().item<float>(), 0.0f);
  EXPECT_EQ(attn->output_proj->bias.abs().max().item<float>(), 0.0f);
  // Xavier uniform: |w| <= sqrt(6 / (fan_in + fan_out)).
  const double bound = std::sqrt(6.0 / (2.0 * attn->options().d_model));
  EXPECT_LE(attn->value_proj->weight.abs().max().item<double>(), bound);
  EXPECT_GT(attn->value_proj->weight.abs().max().item<double>(), 0.5 * bound);
}

TEST(MsDeformAttn, MatchesThePythonReference) {
  const auto& f = fixture();
  auto attn = fixture_attention();
  const std::set<std::string> data{"init.sampling_offsets.bias",
                                   "query",
                                   "input_flatten",
                                   "reference_points2",
                                   "reference_points4",
                                   "padding_mask",
                                   "output2",
                                   "output4",
                                   "output2_masked"};
  EXPECT_TRUE(f.load_into(*attn, "attn.", data).empty());
  EXPECT_EQ(attn->named_parameters().size(), f.meta()["attn"]["weights"].get<std::size_t>());
  const auto shapes = shapes_of(f.meta()["attn"]["spatial_shapes"]);
  torch::NoGradGuard no_grad;
  const auto& q = f.get("attn.query");
  const auto& in = f.get("attn.input_flatten");
  EXPECT_LT(max_abs_diff(attn->forward(q, f.get("attn.reference_points2"), in, shapes),
                         f.get("attn.output2")),
            kTolerance);
  EXPECT_LT(max_abs_diff(attn->forward(q, f.get("attn.reference_points4"), in, shapes),
                         f.get("attn.output4")),
            kTolerance);
  const auto mask = f.get("attn.padding_mask") > 0.5;
  EXPECT_LT(max_abs_diff(attn->forward(q, f.get("attn.reference_points2"), in, shapes, mask),
                         f.get("attn.output2_masked")),
            kTolerance);
}

TEST(MsDeformAttn, OptionErrorsNameTheValues) {
  auto msg = test::thrown_message<ConfigError>([] {
    MSDeformAttn(MSDeformAttnOptions{30, 4, 8, 4});
  });
  EXPECT_NE(msg.find("d_model (30)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("n_heads (8)"), std::string::npos) << msg;
  msg = test::thrown_message<ConfigError>([] { MSDeformAttn(MSDeformAttnOptions{32, 0, 8, 4}); });
  EXPECT_NE(msg.find("n_levels (0)"), std::string::npos) << msg;
  auto attn = MSDeformAttn(MSDeformAttnOptions{16, 2, 2, 2});
  msg = test::thrown_message<Error>([&] {
    attn->forward(at::zeros({1, 3, 16}), at::zeros({1, 3, 2, 2}), at::zeros({1, 5, 16}),
                  {{2, 2}, {1, 2}});
  });
  EXPECT_NE(msg.find("cover 6 positions, the input has 5"), std::string::npos) << msg;
}

// ---- pixel decoder ----

PixelDecoderOptions fixture_options() {
  const auto& m = fixture().meta()["decoder"];
  PixelDecoderOptions o;
  o.in_channels = m["in_channels"].get<std::vector<std::int64_t>>();
  o.in_strides = m["in_strides"].get<std::vector<std::int64_t>>();
  o.conv_dim = m["conv_dim"];
  o.mask_dim = m["mask_dim"];
  o.num_layers = m["transformer_enc_layers"];
  o.num_heads = m["transformer_nheads"];
  o.num_points = m["enc_n_points"];
  o.ffn_dim = m["transformer_dim_feedforward"];
  o.num_groups = m["num_groups"];
  o.transformer_in_levels = static_cast<std::int64_t>(m["transformer_in_features"].size());
  return o;
}

const char* const kLevels[] = {"res2", "res3", "res4", "res5"};

TEST(PixelDecoder, MatchesThePythonReferenceWithTheOriginalsNames) {
  const auto& f = fixture();
  const auto& meta = f.meta()["decoder"];
  MSDeformAttnPixelDecoder decoder(fixture_options());
  decoder->eval();
  std::set<std::string> data{"mask_features", "multi_scale.0", "multi_scale.1", "multi_scale.2"};
  for (const auto* level : kLevels) {
    data.insert(std::string("input.") + level);
    data.insert(std::string("grad.input.") + level);
  }
  for (const auto& name : meta["grad_params"]) data.insert("grad.param." + name.get<std::string>());
  // Every original state_dict entry maps onto one of ours by name and shape, and none is left.
  EXPECT_TRUE(f.load_into(*decoder, "decoder.", data).empty());
  EXPECT_EQ(decoder->named_parameters().size(), meta["weights"].get<std::size_t>());
  EXPECT_TRUE(decoder->named_buffers().is_empty());

  std::vector<at::Tensor> inputs;
  for (const auto* level : kLevels) {
    inputs.push_back(f.get(std::string("decoder.input.") + level).clone().requires_grad_(true));
  }
  const auto out = decoder->forward(inputs);
  const double mask_diff = max_abs_diff(out.mask_features, f.get("decoder.mask_features"));
  std::cout << "pixel decoder vs the original: mask_features max |diff| " << mask_diff << "\n";
  EXPECT_LT(mask_diff, kTolerance);
  ASSERT_EQ(out.multi_scale.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_LT(max_abs_diff(out.multi_scale[i], f.get("decoder.multi_scale." + std::to_string(i))),
              kTolerance)
        << i;
  }
  // The script's projection: sin(0.37 k + i) over the flattened output i.
  std::vector<at::Tensor> outputs{out.mask_features};
  outputs.insert(outputs.end(), out.multi_scale.begin(), out.multi_scale.end());
  auto loss = at::zeros({});
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const auto r = (at::arange(outputs[i].numel(), at::kFloat) * 0.37 + static_cast<double>(i))
                       .sin()
                       .view(outputs[i].sizes());
    loss = loss + (outputs[i] * r).sum();
  }
  loss.backward();
  for (std::size_t i = 0; i < 4; ++i) {
    const auto& expected = f.get(std::string("decoder.grad.input.") + kLevels[i]);
    // Relative to the gradient's size: these sum over many terms.
    const double scale = expected.abs().max().item<double>();
    EXPECT_LT(max_abs_diff(inputs[i].grad(), expected), kTolerance * std::max(1.0, scale))
        << kLevels[i];
  }
  const auto params = decoder->named_parameters();
  for (const auto& name : meta["grad_params"]) {
    const auto key = name.get<std::string>();
    const auto& expected = f.get("decoder.grad.param." + key);
    const double scale = expected.abs().max().item<double>();
    EXPECT_LT(max_abs_diff(params[key].grad(), expected), kTolerance * std::max(1.0, scale)) << key;
  }
}

TEST(PixelDecoder, PositionEmbeddingIsTheOriginalsSine) {
  const auto pos = position_embedding_sine(3, 5, 4, at::TensorOptions());
  ASSERT_EQ(pos.sizes(), (at::IntArrayRef{1, 8, 3, 5}));
  // Channel 0: sin(y_norm), y_norm = (y + 1) / (H + 1e-6) * 2 pi; channel 1: cos(y_norm / 1);
  // channel 2: sin(y_norm / 10000^(2/4)); channels 4..7 the same of x.
  const double two_pi = 2.0 * M_PI;
  for (int y = 0; y < 3; ++y) {
    const double yn = (y + 1) / (3 + 1e-6) * two_pi;
    EXPECT_NEAR(pos[0][0][y][2].item<double>(), std::sin(yn), 1e-5);
    EXPECT_NEAR(pos[0][1][y][2].item<double>(), std::cos(yn), 1e-5);
    EXPECT_NEAR(pos[0][2][y][2].item<double>(), std::sin(yn / 100.0), 1e-5);
  }
  const double xn = 2 / (5 + 1e-6) * two_pi;
  EXPECT_NEAR(pos[0][4][0][1].item<double>(), std::sin(xn), 1e-5);
  EXPECT_NEAR(pos[0][7][2][1].item<double>(), std::cos(xn / 100.0), 1e-5);
}

PixelDecoderOptions small_options() {
  PixelDecoderOptions o;
  o.in_channels = {8, 12, 16, 24};
  o.conv_dim = 32;
  o.mask_dim = 16;
  o.num_layers = 2;
  o.num_heads = 4;
  o.num_points = 2;
  o.ffn_dim = 64;
  o.num_groups = 8;
  return o;
}

// ResNet's rounded-up strides of a 100x132 image: 25x33, 13x17, 7x9, 4x5.
std::vector<at::Tensor> odd_features(const PixelDecoderOptions& o, std::int64_t batch) {
  const std::int64_t sizes[4][2] = {{25, 33}, {13, 17}, {7, 9}, {4, 5}};
  std::vector<at::Tensor> features;
  for (int i = 0; i < 4; ++i) {
    features.push_back(at::randn({batch, o.in_channels[i], sizes[i][0], sizes[i][1]}));
  }
  return features;
}

TEST(PixelDecoder, ShapesAtOddInputSizes) {
  at::manual_seed(3);
  auto o = small_options();
  for (std::int64_t levels : {3, 4, 1}) {
    o.transformer_in_levels = levels;
    MSDeformAttnPixelDecoder decoder(o);
    torch::NoGradGuard no_grad;
    const auto out = decoder->forward(odd_features(o, 2));
    EXPECT_EQ(out.mask_features.sizes(), (at::IntArrayRef{2, 16, 25, 33})) << levels;
    ASSERT_EQ(out.multi_scale.size(), 3u);
    EXPECT_EQ(out.multi_scale[0].sizes(), (at::IntArrayRef{2, 32, 4, 5}));
    EXPECT_EQ(out.multi_scale[1].sizes(), (at::IntArrayRef{2, 32, 7, 9}));
    EXPECT_EQ(out.multi_scale[2].sizes(), (at::IntArrayRef{2, 32, 13, 17}));
    EXPECT_TRUE(out.mask_features.isfinite().all().item<bool>());
    // One adapter_j / layer_j per input the encoder does not take.
    EXPECT_EQ(static_cast<std::int64_t>(decoder->lateral_convs.size()), 4 - levels);
  }
}

// Gradients of a fixed loss with respect to the inputs and every parameter.
std::vector<at::Tensor> gradients(MSDeformAttnPixelDecoder& decoder,
                                  const std::vector<at::Tensor>& features) {
  decoder->zero_grad();
  std::vector<at::Tensor> inputs;
  for (const auto& f : features) inputs.push_back(f.clone().requires_grad_(true));
  const auto out = decoder->forward(inputs);
  auto loss = out.mask_features.square().mean();
  for (const auto& m : out.multi_scale) loss = loss + m.sin().mean();
  loss.backward();
  std::vector<at::Tensor> grads;
  for (const auto& x : inputs) grads.push_back(x.grad().clone());
  for (const auto& p : decoder->parameters()) {
    grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
  }
  return grads;
}

TEST(PixelDecoder, GradientsReachTheInputsAndEveryParameterAndRepeatExactly) {
  at::manual_seed(4);
  const auto o = small_options();
  MSDeformAttnPixelDecoder decoder(o);
  const auto features = odd_features(o, 2);
  // At init the queries (and so the level embedding) reach nothing: sampling_offsets and
  // attention_weights have zero weights. Move every parameter as a training step would.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : decoder->parameters()) p.add_(at::randn_like(p) * 0.02);
  }
  const auto first = gradients(decoder, features);
  const auto names = decoder->named_parameters().keys();
  ASSERT_EQ(first.size(), 4 + names.size());
  for (std::size_t i = 0; i < first.size(); ++i) {
    const auto what = i < 4 ? std::string(kLevels[i]) : names[i - 4];
    ASSERT_TRUE(first[i].defined()) << what;
    EXPECT_TRUE(first[i].isfinite().all().item<bool>()) << what;
    EXPECT_GT(first[i].abs().max().item<double>(), 0.0) << what;
  }
  // Bit-identical on a second pass (the 1x1 projections avoid oneDNN's small-convolution
  // backward, which has not been reproducible here under CPU load).
  const auto second = gradients(decoder, features);
  for (std::size_t i = 0; i < first.size(); ++i) {
    EXPECT_TRUE(at::equal(first[i], second[i])) << (i < 4 ? std::string(kLevels[i]) : names[i - 4]);
  }
}

TEST(PixelDecoder, PaperSizeParameterCountIsTheOriginals) {
  PixelDecoderOptions o;
  o.in_channels = {256, 512, 1024, 2048};  // ResNet-50's res2..res5
  MSDeformAttnPixelDecoder decoder(o);
  // From the layer shapes: C = 256, 3 encoder levels, 8 heads, 4 points, FFN 1024, 6 layers.
  const std::int64_t c = 256, levels = 3, heads = 8, points = 4, ffn = 1024, layers = 6, mask = 256;
  std::int64_t expected = 0;
  for (std::int64_t in : {2048, 1024, 512}) expected += in * c + c + 2 * c;  // input_proj
  expected += levels * c;                                                    // level_embed
  const std::int64_t samples = heads * levels * points;
  const std::int64_t layer = (c * samples * 2 + samples * 2) + (c * samples + samples) +
                             2 * (c * c + c) +                  // value_proj, output_proj
                             (c * ffn + ffn) + (ffn * c + c) +  // linear1, linear2
                             2 * 2 * c;                         // norm1, norm2
  expected += layers * layer;
  expected += c * mask + mask;    // mask_features
  expected += 256 * c + 2 * c;    // adapter_1 (res2, no bias) + GN
  expected += 9 * c * c + 2 * c;  // layer_1 (3x3, no bias) + GN
  const auto ours = count(decoder->parameters());
  std::cout << "MSDeformAttnPixelDecoder (ResNet-50 inputs) parameters: " << ours << "\n";
  EXPECT_EQ(ours, expected);
  EXPECT_EQ(ours, 6035904);
  EXPECT_EQ(ours, fixture().meta()["resnet50_decoder_parameters"].get<std::int64_t>());
}

TEST(PixelDecoder, ValidateNamesTheBadValue) {
  auto message = [](auto mutate) {
    auto o = small_options();
    mutate(o);
    return test::thrown_message<ConfigError>([&] { o.validate(); });
  };
  auto expect = [](const std::string& msg, const std::string& part) {
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
  };
  expect(message([](PixelDecoderOptions& o) { o.in_channels.clear(); }), "in_channels is empty");
  expect(message([](PixelDecoderOptions& o) {
           o.in_channels = {8, 12, 16};
         }),
         "in_channels [8, 12, 16] and in_strides [4, 8, 16, 32]");
  expect(message([](PixelDecoderOptions& o) {
           o.in_strides = {4, 8, 12, 32};
         }),
         "in_strides [4, 8, 12, 32]");
  expect(message([](PixelDecoderOptions& o) { o.conv_dim = 30; }), "conv_dim (30)");
  expect(message([](PixelDecoderOptions& o) { o.num_heads = 3; }), "num_heads (3)");
  expect(message([](PixelDecoderOptions& o) { o.num_groups = 5; }), "num_groups (5)");
  expect(message([](PixelDecoderOptions& o) { o.num_layers = 0; }), "num_layers (0)");
  expect(message([](PixelDecoderOptions& o) { o.dropout = 1.0; }), "dropout (1");
  expect(message([](PixelDecoderOptions& o) { o.transformer_in_levels = 5; }),
         "transformer_in_levels (5) must be in 1..4");
  expect(message([](PixelDecoderOptions& o) { o.in_channels[2] = 0; }),
         "in_channels [8, 12, 0, 24]");
  // The constructor validates too; forward checks the features.
  auto o = small_options();
  o.mask_dim = 0;
  EXPECT_THROW(MSDeformAttnPixelDecoder{o}, ConfigError);
  MSDeformAttnPixelDecoder decoder(small_options());
  auto features = odd_features(small_options(), 1);
  features[1] = at::zeros({1, 7, 13, 17});
  const auto msg = test::thrown_message<Error>([&] { decoder->forward(features); });
  expect(msg, "feature 1 must be [B, 12, h, w]");
}

}  // namespace
}  // namespace wico::topdown
