#include "wico/topdown/mattnet/mattnet.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/optim/adam.h>
#include <torch/utils.h>

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "test_util.h"
#include "wico/core/config.h"

namespace wico::topdown {
namespace {

using at::indexing::None;
using at::indexing::Slice;

MattnetOptions tiny_options() {
  MattnetOptions o;
  o.vocab_size = 12;
  o.pool5_dim = 8;
  o.fc7_dim = 8;
  o.num_atts = 4;
  o.word_embedding_size = 16;
  o.word_vec_size = 16;
  o.rnn_hidden_size = 16;
  o.jemb_dim = 32;
  o.embedding_dim = 24;
  return o;
}

MattnetOptions tiny_options_without_dropout() {
  MattnetOptions o = tiny_options();
  o.word_dropout = o.rnn_dropout = o.jemb_dropout = o.att_dropout = 0.0;
  return o;
}

struct Sample {
  std::vector<std::array<float, 4>> boxes;
  std::vector<std::int64_t> classes;
  std::vector<std::int64_t> words;
};

// Candidates padded to n, sentences right-padded to length with `pad_id`; masks are the boxes
// drawn on a 16 x 16 grid. `features` serve as C4 and, pooled 2 x 2, as C5. Each sample's
// language negative is the next sample's sentence (none for a batch of one); samples 0 and 2
// have attribute labels over 3 attribute words.
MatcherInput make_input(const at::Tensor& features, const std::vector<Sample>& samples,
                        std::int64_t n, std::int64_t length, std::int64_t pad_id = 0) {
  const auto B = static_cast<std::int64_t>(samples.size());
  constexpr std::int64_t kMask = 16;
  MatcherInput in;
  in.c4 = features;
  in.c5 = at::avg_pool2d(features, 2);
  in.candidates.masks = at::zeros({B, n, kMask, kMask});
  in.candidates.boxes = at::zeros({B, n, 4});
  in.candidates.classes = at::zeros({B, n}, at::kLong);
  in.candidates.valid = at::zeros({B, n}, at::kBool);
  in.token_ids = at::full({B, length}, pad_id, at::kLong);
  in.attention_mask = at::zeros({B, length}, at::kLong);
  for (std::int64_t b = 0; b < B; ++b) {
    const Sample& s = samples[b];
    for (std::size_t i = 0; i < s.boxes.size(); ++i) {
      const auto& x = s.boxes[i];
      for (int k = 0; k < 4; ++k) in.candidates.boxes[b][i][k] = x[k];
      in.candidates.classes[b][i] = s.classes[i];
      in.candidates.valid[b][i] = true;
      auto px = [](float f) { return static_cast<std::int64_t>(std::lround(f * kMask)); };
      in.candidates.masks.index_put_(
          {b, static_cast<std::int64_t>(i), Slice(px(x[1]), px(x[3])), Slice(px(x[0]), px(x[2]))},
          1.0);
    }
    for (std::size_t t = 0; t < s.words.size(); ++t) {
      in.token_ids[b][t] = s.words[t];
      in.attention_mask[b][t] = 1;
    }
  }
  in.negative_token_ids = in.token_ids.roll(-1, 0);
  in.negative_attention_mask = in.attention_mask.roll(-1, 0);
  in.negative_valid = at::full({B}, B > 1, at::kBool);
  in.attribute_labels = at::zeros({B, 3});
  in.attribute_labels[0][0] = in.attribute_labels[0][2] = 1.0;
  if (B > 2) in.attribute_labels[2][1] = 1.0;
  in.attribute_weights = at::tensor({1.0f, 4.0f, 10.0f});
  return in;
}

std::vector<Sample> three_samples() {
  return {
      {{{0.1f, 0.1f, 0.4f, 0.5f}, {0.5f, 0.2f, 0.9f, 0.6f}, {0.2f, 0.6f, 0.7f, 0.95f}},
       {0, 0, 1},
       {3, 4, 5, 6}},
      {{{0.3f, 0.3f, 0.7f, 0.7f}}, {2}, {7, 8}},
      {{{0.0f, 0.0f, 0.5f, 0.5f},
        {0.5f, 0.0f, 1.0f, 0.5f},
        {0.0f, 0.5f, 0.5f, 1.0f},
        {0.5f, 0.5f, 1.0f, 1.0f}},
       {1, 1, 0, 1},
       {9, 10, 11, 1, 2, 3}},
  };
}

TEST(MattnetMatcher, ShapesPaddingAndNormalisation) {
  torch::manual_seed(0);
  MattnetMatcher m(tiny_options());
  m.eval();
  const MatcherInput in = make_input(at::randn({3, 8, 8, 8}), three_samples(), 5, 7);
  const MatcherOutput out = m.forward(in);
  ASSERT_EQ(out.logits.sizes(), (at::IntArrayRef{3, 5}));
  ASSERT_EQ(out.scores.sizes(), (at::IntArrayRef{3, 5}));
  ASSERT_EQ(out.embeddings.sizes(), (at::IntArrayRef{3, 5, 24}));
  ASSERT_EQ(out.module_weights.sizes(), (at::IntArrayRef{3, 3}));
  EXPECT_EQ(m.embedding_dim(), 24);
  const at::Tensor valid = in.candidates.valid;
  EXPECT_TRUE(at::isfinite(out.logits.masked_select(valid)).all().item<bool>());
  EXPECT_TRUE((out.logits.masked_select(valid.logical_not()) == -INFINITY).all().item<bool>());
  EXPECT_TRUE(at::allclose(out.scores.sum(1), at::ones({3})));
  EXPECT_EQ(out.scores.masked_select(valid.logical_not()).abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE((out.scores.masked_select(valid) > 0).all().item<bool>());
  EXPECT_EQ(out.embeddings.index({valid.logical_not()}).abs().sum().item<float>(), 0.0f);
  EXPECT_GT(out.embeddings.index({valid}).abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(at::allclose(out.module_weights.sum(1), at::ones({3})));
  EXPECT_TRUE((out.module_weights > 0).all().item<bool>());
  // A softmax of the logits over the valid candidates (the single candidate of sample 1 gets 1).
  EXPECT_FLOAT_EQ(out.scores[1][0].item<float>(), 1.0f);
  EXPECT_TRUE(
      at::allclose(out.scores[2].narrow(0, 0, 4), out.logits[2].narrow(0, 0, 4).softmax(0)));
}

// Extra padded candidates (with garbage boxes) and padding tokens (with garbage ids) change no
// valid output, in evaluation and in training (batch norm sees only real rows).
TEST(MattnetMatcher, PaddingInvariance) {
  for (bool training : {false, true}) {
    torch::manual_seed(1);
    MattnetMatcher m(tiny_options_without_dropout());
    m.train(training);
    const at::Tensor features = at::randn({3, 8, 8, 8});
    const MatcherInput small = make_input(features, three_samples(), 4, 6);
    MatcherInput big = make_input(features, three_samples(), 9, 11, /*pad_id=*/5);
    big.candidates.boxes.index_put_({Slice(), Slice(4, None)}, 0.3);
    big.candidates.masks.index_put_({Slice(), Slice(4, None)}, 1.0);
    const MatcherOutput a = m.forward(small);
    const MatcherOutput b = m.forward(big);
    const at::Tensor valid = small.candidates.valid;
    auto head = [](const at::Tensor& t) { return t.narrow(1, 0, 4); };
    EXPECT_TRUE(at::allclose(a.logits.masked_select(valid), head(b.logits).masked_select(valid),
                             1e-4, 1e-5))
        << "training " << training;
    EXPECT_TRUE(at::allclose(a.scores, head(b.scores), 1e-4, 1e-6));
    EXPECT_EQ(b.scores.narrow(1, 4, 5).abs().sum().item<float>(), 0.0f);
    EXPECT_TRUE(at::allclose(a.embeddings, head(b.embeddings), 1e-4, 1e-5));
    EXPECT_TRUE(at::allclose(a.module_weights, b.module_weights, 1e-4, 1e-6));
  }
}

// The bi-LSTM packs the padding away: a padded sentence encodes as the bare one, alone or beside
// a longer sentence.
TEST(MattnetMatcher, LanguageEncoderIgnoresPaddingTokens) {
  torch::manual_seed(2);
  MattnetMatcher m(tiny_options_without_dropout());
  const at::Tensor bare = at::tensor({3, 7, 1, 9}, at::kLong).view({1, 4});
  const MattnetLanguage a = m.encode_language(bare, at::ones({1, 4}, at::kLong));
  const at::Tensor ids = at::tensor({3, 7, 1, 9, 11, 11, 2, 4, 4, 5, 6, 8, 10, 1}, at::kLong)
                             .view({2, 7});  // garbage after sample 0's four words
  const at::Tensor mask =
      at::tensor({1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1}, at::kLong).view({2, 7});
  const MattnetLanguage b = m.encode_language(ids, mask);
  ASSERT_EQ(b.context.sizes(), (at::IntArrayRef{2, 7, 32}));
  ASSERT_EQ(b.hidden.sizes(), (at::IntArrayRef{2, 32}));
  EXPECT_TRUE(at::allclose(a.context[0], b.context[0].narrow(0, 0, 4), 1e-5, 1e-6));
  EXPECT_EQ(b.context[0].narrow(0, 4, 3).abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(at::allclose(a.hidden[0], b.hidden[0], 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(a.weights[0], b.weights[0], 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(a.sub_phrase[0], b.sub_phrase[0], 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(a.rel_attn[0], b.rel_attn[0].narrow(0, 0, 4), 1e-5, 1e-6));
  EXPECT_EQ(b.loc_attn[0].narrow(0, 4, 3).abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(at::allclose(b.sub_attn.sum(1), at::ones({2})));
  // An unpacked LSTM would run its backward direction from the padding: not what we get.
  const at::Tensor padded_only = at::tensor({3, 7, 1, 9, 11, 11, 2}, at::kLong).view({1, 7});
  const MattnetLanguage c = m.encode_language(padded_only, at::ones({1, 7}, at::kLong));
  EXPECT_FALSE(at::allclose(c.hidden[0], b.hidden[0], 1e-3, 1e-4));
}

// Boxes A, B (class 0), C (class 1) and a padding box next to A.
TEST(MattnetMatcher, LocationFeaturesOfThreeBoxes) {
  const at::Tensor boxes = at::tensor({0.1f, 0.1f, 0.3f, 0.5f,    // A: w .2 h .4 centre (.2, .3)
                                       0.5f, 0.2f, 0.7f, 0.4f,    // B: w .2 h .2 centre (.6, .3)
                                       0.3f, 0.6f, 0.7f, 1.0f,    // C: w .4 h .4 centre (.5, .8)
                                       0.12f, 0.1f, 0.3f, 0.5f})  // padding
                               .view({1, 4, 4});
  const at::Tensor classes = at::tensor({0, 0, 1, 0}, at::kLong).view({1, 4});
  const at::Tensor valid = at::tensor({1, 1, 1, 0}).to(at::kBool).view({1, 4});
  const LocationFeatures f = location_features(boxes, classes, valid, 5, true);
  auto expect_near = [](const at::Tensor& got, std::vector<float> want) {
    const at::Tensor w = at::tensor(want);
    EXPECT_TRUE(at::allclose(got, w, 1e-5, 1e-5)) << got << "\nwant\n" << w;
  };
  expect_near(f.lfeats[0][0], {0.1f, 0.1f, 0.3f, 0.5f, 0.08f});
  expect_near(f.lfeats[0][2], {0.3f, 0.6f, 0.7f, 1.0f, 0.16f});
  // dif_lfeats: the same-class neighbours (the padding box is none).
  std::vector<float> a_dif(25, 0.0f), b_dif(25, 0.0f);
  const std::vector<float> b_from_a = {1.5f, -0.25f, 2.5f, 0.25f, 0.5f};
  const std::vector<float> a_from_b = {-2.5f, -1.0f, -1.5f, 1.0f, 2.0f};
  std::copy(b_from_a.begin(), b_from_a.end(), a_dif.begin());
  std::copy(a_from_b.begin(), a_from_b.end(), b_dif.begin());
  expect_near(f.dif_lfeats[0][0], a_dif);
  expect_near(f.dif_lfeats[0][1], b_dif);
  expect_near(f.dif_lfeats[0][2], std::vector<float>(25, 0.0f));
  // Contexts: other-class first, then same-class; by distance within each.
  EXPECT_TRUE(at::equal(f.cxt_valid[0][0], at::tensor({1, 1, 0, 0, 0}).to(at::kBool)));
  EXPECT_EQ(f.cxt_index[0][0][0].item<std::int64_t>(), 2);
  EXPECT_EQ(f.cxt_index[0][0][1].item<std::int64_t>(), 1);
  expect_near(f.cxt_lfeats[0][0][0], {0.5f, 0.75f, 2.5f, 1.75f, 2.0f});  // C from A
  expect_near(f.cxt_lfeats[0][0][1], b_from_a);
  expect_near(f.cxt_lfeats[0][0][2], {0, 0, 0, 0, 0});
  // C: B (d^2 .26) before A (d^2 .34).
  EXPECT_EQ(f.cxt_index[0][2][0].item<std::int64_t>(), 1);
  EXPECT_EQ(f.cxt_index[0][2][1].item<std::int64_t>(), 0);
  expect_near(f.cxt_lfeats[0][2][0], {0.0f, -1.5f, 0.5f, -1.0f, 0.25f});
  expect_near(f.cxt_lfeats[0][2][1], {-1.0f, -1.75f, -0.5f, -0.75f, 0.5f});
  // Without same-class contexts A has only C.
  const LocationFeatures g = location_features(boxes, classes, valid, 3, false);
  EXPECT_TRUE(at::equal(g.cxt_valid[0][0], at::tensor({1, 0, 0}).to(at::kBool)));
  EXPECT_EQ(g.cxt_index[0][0][0].item<std::int64_t>(), 2);
}

TEST(MattnetMatcher, RankLossOnGivenScores) {
  const at::Tensor paired = at::tensor({0.5f, 0.2f, 0.9f});
  const at::Tensor vis = at::tensor({0.45f, 0.4f, 0.0f});
  const at::Tensor lang = at::tensor({0.1f, 0.3f, 0.85f});
  const at::Tensor vis_ok = at::tensor({1, 1, 0}).to(at::kBool);
  const at::Tensor lang_ok = at::tensor({1, 0, 1}).to(at::kBool);
  // visual: .05 + .3 (sample 2 skipped); language: 0 + 2 x .05 (sample 1 skipped); / 3.
  EXPECT_NEAR(max_margin_rank_loss(paired, vis, vis_ok, lang, lang_ok, 0.1, 1.0, 2.0).item<float>(),
              0.15, 1e-6);
  // A zero weight drops its term, as the original's flags.
  EXPECT_NEAR(max_margin_rank_loss(paired, vis, vis_ok, lang, lang_ok, 0.1, 0.0, 2.0).item<float>(),
              0.1 / 3, 1e-6);
}

// Two candidates, one sample: the visual negative is the other candidate, there is no language
// negative, and the losses are MAttNet's hinge and the cross-entropy of the logits.
TEST(MattnetMatcher, LossOfATwoCandidateSample) {
  torch::manual_seed(3);
  MattnetOptions o = tiny_options_without_dropout();
  o.margin = 5.0;  // wide enough that the hinge is active whatever the initial scores
  o.ce_weight = 0.5;
  MattnetMatcher m(o);
  m.eval();
  std::vector<Sample> samples = {
      {{{0.1f, 0.1f, 0.4f, 0.5f}, {0.5f, 0.2f, 0.9f, 0.6f}}, {0, 1}, {3, 4, 5}}};
  const MatcherInput in = make_input(at::randn({1, 8, 8, 8}), samples, 3, 4);
  const MatcherOutput out = m.forward(in);
  const auto losses = m.loss(in, out, at::tensor({1}, at::kLong));
  const at::Tensor s = out.logits[0] / o.score_scale;
  EXPECT_NEAR(losses.at("match_rank").item<float>(), (5.0 + s[0] - s[1]).item<float>(), 1e-5);
  const at::Tensor expected_ce = -0.5 * out.logits[0].narrow(0, 0, 2).log_softmax(0)[1];
  EXPECT_NEAR(losses.at("match_ce").item<float>(), expected_ce.item<float>(), 1e-5);
}

// The loader's language negative is what the referent is ranked against: one sample, one
// candidate (no visual negative), the hinge is margin + s(referent, negative) - s(referent, own).
// Without loader negatives, a one-sample batch has no language negative either.
TEST(MattnetMatcher, LanguageNegativesFromTheLoaderAreRankedBelowTheExpression) {
  torch::manual_seed(8);
  MattnetOptions o = tiny_options_without_dropout();
  o.margin = 5.0;
  MattnetMatcher m(o);
  m.eval();
  std::vector<Sample> one = {{{{0.2f, 0.2f, 0.6f, 0.7f}}, {0}, {3, 4, 5}}};
  MatcherInput in = make_input(at::randn({1, 8, 8, 8}), one, 2, 4);
  in.negative_token_ids = at::tensor({6, 7, 0, 0}, at::kLong).view({1, 4});
  in.negative_attention_mask = at::tensor({1, 1, 0, 0}, at::kLong).view({1, 4});
  in.negative_valid = at::ones({1}, at::kBool);
  const MatcherOutput out = m.forward(in);
  const auto losses = m.loss(in, out, at::tensor({0}, at::kLong));
  const MattnetVisual v = m.visual_features(in);
  const at::Tensor row = at::zeros({1}, at::kLong);
  const MattnetScores own = m.score(v, row, m.encode_language(in.token_ids, in.attention_mask), row);
  const MattnetScores negative = m.score(
      v, row, m.encode_language(in.negative_token_ids, in.negative_attention_mask), row);
  EXPECT_NEAR(losses.at("match_rank").item<float>(),
              (5.0 + negative.overall - own.overall).item<float>(), 1e-5);
  EXPECT_NEAR(own.overall.item<float>(), out.logits[0][0].item<float>() / o.score_scale, 1e-6);
  in.negative_token_ids = at::Tensor();
  EXPECT_EQ(m.loss(in, out, at::tensor({0}, at::kLong)).at("match_rank").item<float>(), 0.0f);
}

TEST(MattnetMatcher, SingleCandidatesAndASingleSampleGiveFiniteLosses) {
  torch::manual_seed(4);
  MattnetMatcher m(tiny_options());
  m.train();
  // One sample, one candidate: no negative of either kind.
  std::vector<Sample> one = {{{{0.2f, 0.2f, 0.6f, 0.7f}}, {0}, {3, 4}}};
  MatcherInput in = make_input(at::randn({1, 8, 8, 8}), one, 2, 3);
  MatcherOutput out = m.forward(in);
  auto losses = m.loss(in, out, at::tensor({0}, at::kLong));
  EXPECT_EQ(losses.at("match_rank").item<float>(), 0.0f);
  EXPECT_NEAR(losses.at("match_ce").item<float>(), 0.0f, 1e-6);
  (losses.at("match_rank") + losses.at("match_ce") + out.embeddings.sum()).backward();
  for (const auto& p : m.parameters()) {
    if (p.grad().defined()) {
      EXPECT_TRUE(at::isfinite(p.grad()).all().item<bool>());
    }
  }
  // Two samples of one candidate each: only language negatives.
  m.zero_grad();
  std::vector<Sample> two = {one[0], {{{0.1f, 0.5f, 0.4f, 0.9f}}, {1}, {5, 6, 7}}};
  in = make_input(at::randn({2, 8, 8, 8}), two, 1, 3);
  out = m.forward(in);
  losses = m.loss(in, out, at::tensor({0, 0}, at::kLong));
  EXPECT_TRUE(std::isfinite(losses.at("match_rank").item<float>()));
  EXPECT_GE(losses.at("match_rank").item<float>(), 0.0f);
  (losses.at("match_rank") + losses.at("match_ce")).backward();
  for (const auto& p : m.parameters()) {
    if (p.grad().defined()) {
      EXPECT_TRUE(at::isfinite(p.grad()).all().item<bool>());
    }
  }
}

// Every parameter is in the graph with a finite gradient; every one but the scalar biases of the
// scorers before a softmax (shift-invariant, zero gradient in the original as well) gets a
// non-zero one. Evaluation mode: in training, a Linear's bias before a batch norm is likewise
// invisible.
TEST(MattnetMatcher, GradientsReachEveryParameter) {
  for (bool training : {true, false}) {
    torch::manual_seed(5);
    MattnetMatcher m(tiny_options());
    m.train(training);
    const MatcherInput in = make_input(at::randn({3, 8, 8, 8}), three_samples(), 5, 7);
    const MatcherOutput out = m.forward(in);
    const auto losses = m.loss(in, out, at::tensor({0, 0, 2}, at::kLong));
    (losses.at("match_rank") + losses.at("match_ce") + losses.at("match_att") +
     (out.embeddings * at::randn(out.embeddings.sizes())).sum())
        .backward();
    const std::vector<std::string> invariant = {"sub_attn.fc.bias", "loc_attn.fc.bias",
                                                "rel_attn.fc.bias", "sub_encoder.attn_fuse.2.bias"};
    for (const auto& item : m.named_parameters()) {
      const at::Tensor& g = item.value().grad();
      ASSERT_TRUE(g.defined()) << item.key();
      EXPECT_TRUE(at::isfinite(g).all().item<bool>()) << item.key();
      if (training) continue;
      const bool is_invariant =
          std::find(invariant.begin(), invariant.end(), item.key()) != invariant.end();
      if (is_invariant) {
        EXPECT_LT(g.abs().max().item<float>(), 1e-5) << item.key();
      } else {
        EXPECT_GT(g.abs().max().item<float>(), 0.0f) << item.key();
      }
    }
  }
}

// Toy referring: three strips per image, each of a distinct colour (a feature channel); the
// expression "the <colour> one" names the target.
struct Toy {
  MatcherInput input;
  at::Tensor target;
};

Toy toy_batch(std::int64_t batch) {
  std::vector<Sample> samples;
  at::Tensor features = 0.1 * at::randn({batch, 8, 8, 8});
  std::vector<std::int64_t> targets;
  for (std::int64_t b = 0; b < batch; ++b) {
    const at::Tensor colours = at::randperm(4, at::kLong).narrow(0, 0, 3);
    Sample s;
    for (std::int64_t i = 0; i < 3; ++i) {
      s.boxes.push_back({i / 3.0f, 0.0f, (i + 1) / 3.0f, 1.0f});
      s.classes.push_back(0);
      const std::int64_t c = colours[i].item<std::int64_t>();
      const std::int64_t x0 = (i * 8) / 3, x1 = ((i + 1) * 8) / 3;
      features.index({b, c, Slice(), Slice(x0, x1)}) += 1.0;
    }
    const std::int64_t t = at::randint(3, {1}, at::kLong).item<std::int64_t>();
    s.words = {1, 2 + colours[t].item<std::int64_t>(), 7};
    targets.push_back(t);
    samples.push_back(s);
  }
  return {make_input(features, samples, 3, 3 + batch % 3), at::tensor(targets, at::kLong)};
}

std::vector<at::Tensor> train_toy(MattnetMatcher& m, int steps) {
  torch::optim::Adam optimizer(m.parameters(), torch::optim::AdamOptions(3e-3));
  m.train();
  for (int step = 0; step < steps; ++step) {
    const Toy toy = toy_batch(8);
    const MatcherOutput out = m.forward(toy.input);
    const auto losses = m.loss(toy.input, out, toy.target);
    optimizer.zero_grad();
    (losses.at("match_rank") + losses.at("match_ce")).backward();
    optimizer.step();
  }
  std::vector<at::Tensor> params;
  for (const auto& p : m.parameters()) params.push_back(p.detach().clone());
  return params;
}

TEST(MattnetMatcher, LearnsAToyReferringTask) {
  torch::manual_seed(6);
  MattnetMatcher m(tiny_options_without_dropout());
  train_toy(m, 150);
  m.eval();
  torch::NoGradGuard no_grad;
  const Toy toy = toy_batch(64);
  const MatcherOutput out = m.forward(toy.input);
  const double accuracy =
      (out.scores.argmax(1) == toy.target).to(at::kDouble).mean().item<double>();
  EXPECT_GE(accuracy, 0.95);
}

TEST(MattnetMatcher, TrainingIsDeterministicUnderASeed) {
  auto run = [] {
    torch::manual_seed(7);
    MattnetMatcher m(tiny_options());  // with dropout: its masks come from the seed too
    return train_toy(m, 15);
  };
  const auto a = run(), b = run();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i])) << i;
}

// Our option: each candidate's decoder query embedding as an extra fc7-like vector. Without the
// embeddings the matcher says which key wants them; with them, a candidate's embedding moves its
// own score.
TEST(MattnetMatcher, QueryEmbeddingOptionReadsEachCandidatesEmbedding) {
  torch::manual_seed(9);
  MattnetOptions o = tiny_options_without_dropout();
  o.query_dim = 6;
  MattnetMatcher m(o);
  m.eval();
  EXPECT_TRUE(m.uses_query_embeddings());
  EXPECT_FALSE(MattnetMatcher(tiny_options()).uses_query_embeddings());
  const auto params = m.named_parameters();
  ASSERT_NE(params.find("sub_encoder.query_normalizer.weight"), nullptr);
  ASSERT_NE(params.find("rel_encoder.query_normalizer.weight"), nullptr);
  EXPECT_EQ(params["sub_matching.vis_emb_fc.0.weight"].size(1), 8 + 32 + 6);  // fc7 + att + query
  EXPECT_EQ(params["rel_encoder.fc.weight"].size(1), 8 + 6 + 5);
  MatcherInput in = make_input(at::randn({3, 8, 8, 8}), three_samples(), 5, 7);
  EXPECT_NE(test::thrown_message<ConfigError>([&] { m.forward(in); }).find("mattnet.query_dim"),
            std::string::npos);
  in.candidate_embeddings = at::randn({3, 5, 6});
  torch::NoGradGuard no_grad;
  const at::Tensor before = m.forward(in).logits;
  in.candidate_embeddings[2][1] = at::randn({6});
  const at::Tensor after = m.forward(in).logits;
  EXPECT_GT((after[2][1] - before[2][1]).abs().item<float>(), 1e-6);
  EXPECT_TRUE(at::allclose(after.narrow(0, 0, 2), before.narrow(0, 0, 2)));
}

TEST(MattnetMatcher, ParameterNamesFollowTheOriginal) {
  MattnetMatcher m(tiny_options());
  const auto params = m.named_parameters();
  const auto buffers = m.named_buffers();
  for (const char* name :
       {"rnn_encoder.embedding.weight", "rnn_encoder.mlp.0.weight",
        "rnn_encoder.rnn.weight_hh_l0_reverse", "weight_fc.weight", "sub_attn.fc.weight",
        "sub_encoder.pool5_normalizer.weight", "sub_encoder.att_fuse.0.weight",
        "sub_encoder.att_fuse.1.weight", "sub_encoder.attn_fuse.2.weight",
        "sub_matching.vis_emb_fc.4.weight", "sub_matching.lang_emb_fc.5.bias",
        "loc_encoder.dif_lfeat_normalizer.weight", "loc_encoder.fc.weight",
        "rel_encoder.vis_feat_normalizer.weight", "rel_encoder.fc.bias",
        "rel_matching.vis_emb_fc.0.weight", "embedding_fc.weight"}) {
    EXPECT_NE(params.find(name), nullptr) << name;
  }
  EXPECT_NE(buffers.find("loc_matching.vis_emb_fc.1.running_mean"), nullptr);
  EXPECT_EQ(params["loc_encoder.dif_lfeat_normalizer.weight"].sizes(), (at::IntArrayRef{1, 25}));
  EXPECT_EQ(params["sub_encoder.pool5_normalizer.weight"][0][0].item<float>(), 20.0f);
}

TEST(MattnetMatcher, BuildsFromConfigWithTheTokenizersVocabulary) {
  const Config c = Config::defaults({"top_down.matcher=mattnet", "text.tokenizer=wordpiece",
                                     "mattnet.pool5_dim=8", "mattnet.fc7_dim=8",
                                     "data.attribute_words=5", "mattnet.word_embedding_size=8",
                                     "mattnet.word_vec_size=8", "mattnet.rnn_hidden_size=8",
                                     "mattnet.jemb_dim=16", "mattnet.embedding_dim=12"});
  const auto matcher = build_matcher(c);
  const auto* mattnet = dynamic_cast<const MattnetMatcher*>(matcher.get());
  ASSERT_NE(mattnet, nullptr);
  EXPECT_EQ(mattnet->options().vocab_size, 30522);  // bert-base-uncased
  EXPECT_EQ(matcher->embedding_dim(), 12);
  EXPECT_EQ(mattnet->options().num_atts, 5);
  EXPECT_NE(matcher->named_parameters().find("sub_encoder.att_fc.weight"), nullptr);
  const MattnetOptions paper = MattnetOptions::from_config(Config::defaults());
  EXPECT_EQ(paper.jemb_dim, 512);
  EXPECT_EQ(paper.rnn_hidden_size, 512);
  EXPECT_DOUBLE_EQ(paper.margin, 0.1);
  EXPECT_DOUBLE_EQ(paper.word_dropout, 0.5);
  EXPECT_EQ(paper.output_dim(), 512);
  EXPECT_EQ(paper.pool5_dim, 1024);
  EXPECT_EQ(paper.fc7_dim, 2048);
  EXPECT_DOUBLE_EQ(paper.att_dropout, 0.2);
}

TEST(MattnetMatcher, ConfigErrorsNameTheKey) {
  using test::thrown_message;
  EXPECT_NE(thrown_message<ConfigError>([] {
              Config::defaults({"mattnet.jemb_dim=0"});
            }).find("mattnet.jemb_dim"),
            std::string::npos);
  EXPECT_NE(thrown_message<ConfigError>([] {
              MattnetOptions::from_config(Config::defaults({"text.tokenizer=word"}));
            }).find("mattnet.vocab_size"),
            std::string::npos);
  MattnetOptions o = tiny_options();
  o.visual_rank_weight = o.lang_rank_weight = o.ce_weight = 0.0;
  EXPECT_NE(thrown_message<ConfigError>([&] { o.validate(); }).find("mattnet.ce_weight"),
            std::string::npos);
  o = tiny_options();
  o.num_cxt = 0;
  EXPECT_NE(thrown_message<ConfigError>([&] { MattnetMatcher{o}; }).find("mattnet.num_cxt"),
            std::string::npos);

  MattnetMatcher m(tiny_options());
  MatcherInput wrong_dim = make_input(at::randn({3, 6, 8, 8}), three_samples(), 5, 7);
  EXPECT_NE(thrown_message<ConfigError>([&] { m.forward(wrong_dim); }).find("mattnet.pool5_dim"),
            std::string::npos);
  MatcherInput wrong_c5 = make_input(at::randn({3, 8, 8, 8}), three_samples(), 5, 7);
  wrong_c5.c5 = at::randn({3, 5, 4, 4});
  EXPECT_NE(thrown_message<ConfigError>([&] { m.forward(wrong_c5); }).find("mattnet.fc7_dim"),
            std::string::npos);
  // Malformed language negatives are named.
  MatcherInput bad_negatives = make_input(at::randn({3, 8, 8, 8}), three_samples(), 5, 7);
  bad_negatives.negative_token_ids = bad_negatives.negative_token_ids.narrow(0, 0, 2);
  const MatcherOutput out = m.forward(bad_negatives);
  EXPECT_NE(thrown_message<Error>([&] {
              m.loss(bad_negatives, out, at::tensor({0, 0, 2}, at::kLong));
            }).find("negative_token_ids"),
            std::string::npos);
  MatcherInput wrong_word = make_input(at::randn({3, 8, 8, 8}), three_samples(), 5, 7);
  wrong_word.token_ids[0][0] = 12;
  EXPECT_NE(thrown_message<ConfigError>([&] { m.forward(wrong_word); }).find("mattnet.vocab_size"),
            std::string::npos);
}

}  // namespace
}  // namespace wico::topdown
