// MAttNet's matcher against the original's own code (scripts/make_mattnet_fixtures.py runs
// lichengunc/MAttNet's JointMatching, MaxMarginCriterion and the attribute BCE of tools/train.py
// with random weights): the state dict loads by the original's names, and the evaluation
// forward, the training pass (one batch-norm pass over positives and both kinds of negatives),
// its loss, every gradient and the updated batch-norm statistics match.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>

#include "backbones/tensor_fixture.h"
#include "test_util.h"
#include "wico/data/attributes.h"
#include "wico/topdown/mattnet/mattnet.h"

namespace wico::topdown {
namespace {

using test::TensorFixture;

const TensorFixture& fixture() {
  static const TensorFixture f(std::filesystem::path(WICO_TEST_DATA_DIR) / "mattnet" / "mattnet");
  return f;
}

MattnetOptions fixture_options() {
  const auto& opt = fixture().meta().at("opt");
  MattnetOptions o;
  o.vocab_size = opt.at("vocab_size");
  o.word_embedding_size = opt.at("word_embedding_size");
  o.word_vec_size = opt.at("word_vec_size");
  o.rnn_hidden_size = opt.at("rnn_hidden_size");
  o.rnn_num_layers = opt.at("rnn_num_layers");
  o.bidirectional = opt.at("bidirectional").get<int>() > 0;
  o.word_dropout = o.rnn_dropout = o.jemb_dropout = o.att_dropout = 0.0;
  o.jemb_dim = opt.at("jemb_dim");
  o.pool5_dim = opt.at("pool5_dim");
  o.fc7_dim = opt.at("fc7_dim");
  o.visual_init_norm = opt.at("visual_init_norm");
  o.num_atts = opt.at("num_atts");
  o.num_cxt = fixture().meta().at("num_cxt");
  o.margin = fixture().meta().at("margin");
  return o;
}

// The original's state dict into ours: every parameter of the original by name (ours has only
// embedding_fc beside it), and the batch-norm statistics.
void load_original(MattnetMatcher& m) {
  std::set<std::string> buffers;
  for (const auto& b : m.named_buffers()) buffers.insert(b.key());
  const std::set<std::string> unset = fixture().load_into(m, "state.", buffers);
  EXPECT_EQ(unset, (std::set<std::string>{"embedding_fc.weight", "embedding_fc.bias"}));
  at::NoGradGuard no_grad;
  for (auto& b : m.named_buffers()) {
    const at::Tensor& value = fixture().get("state." + b.key());
    b.value().copy_(value.to(b.value().scalar_type()));
  }
}

// The fixture's (n, C, 7, 7) grids as our [n, 49, C] rows.
at::Tensor cells_first(const at::Tensor& grid) {
  return grid.flatten(2).transpose(1, 2).contiguous();
}

MattnetVisual fixture_visual() {
  const auto& f = fixture();
  MattnetVisual v;
  v.pool5 = cells_first(f.get("in.pool5"));
  v.fc7 = cells_first(f.get("in.fc7"));
  v.lfeats = f.get("in.lfeats");
  v.dif_lfeats = f.get("in.dif_lfeats");
  v.cxt_fc7 = f.get("in.cxt_fc7");
  v.cxt_lfeats = f.get("in.cxt_lfeats");
  v.cxt_valid = at::ones({v.cxt_fc7.size(0), v.cxt_fc7.size(1)}, at::kBool);
  return v;
}

at::Tensor token_ids() { return fixture().get("in.labels").to(at::kLong); }

void expect_close(const at::Tensor& ours, const at::Tensor& theirs, const std::string& what,
                  double tolerance = 1e-4) {
  ASSERT_EQ(ours.sizes(), theirs.sizes()) << what;
  const double scale = std::max(1.0, theirs.abs().max().item<double>());
  EXPECT_LT((ours.to(at::kFloat) - theirs).abs().max().item<double>(), tolerance * scale) << what;
}

TEST(MattnetParity, StateDictLoadsByTheOriginalsNames) {
  MattnetMatcher m(fixture_options());
  load_original(m);
}

TEST(MattnetParity, EvaluationForwardMatchesTheOriginal) {
  MattnetMatcher m(fixture_options());
  load_original(m);
  m.eval();
  at::NoGradGuard no_grad;
  const at::Tensor ids = token_ids();
  const std::int64_t n = ids.size(0);
  const MattnetLanguage language = m.encode_language(ids, (ids != 0).to(at::kLong));
  const at::Tensor rows = at::arange(n, at::kLong);
  const MattnetScores s = m.score(fixture_visual(), rows, language, rows);
  const auto& f = fixture();
  expect_close(s.overall, f.get("eval.scores"), "scores");
  expect_close(s.weights, f.get("eval.weights"), "module weights");
  expect_close(s.grid_attn, f.get("eval.sub_grid_attn"), "subject grid attention");
  expect_close(language.sub_attn, f.get("eval.sub_attn"), "subject phrase attention");
  expect_close(language.loc_attn, f.get("eval.loc_attn"), "location phrase attention");
  expect_close(language.rel_attn, f.get("eval.rel_attn"), "relationship phrase attention");
  expect_close(s.att_scores, f.get("eval.att_scores"), "attribute scores");
  EXPECT_TRUE(s.rel_index.equal(f.get("eval.rel_ixs").to(at::kLong))) << s.rel_index;
}

TEST(MattnetParity, TrainingPassLossGradientsAndStatisticsMatchTheOriginal) {
  MattnetMatcher m(fixture_options());
  load_original(m);
  m.train();
  const auto& f = fixture();
  const at::Tensor ids = token_ids();
  const std::int64_t n = ids.size(0), k = f.meta().at("samples");
  const MattnetLanguage language = m.encode_language(ids, (ids != 0).to(at::kLong));
  const at::Tensor rows = at::arange(n, at::kLong);
  const MattnetScores s = m.score(fixture_visual(), rows, language, rows);
  expect_close(s.overall.detach(), f.get("train.scores"), "training scores");
  expect_close(s.att_scores.detach(), f.get("train.att_scores"), "training attribute scores");

  const at::Tensor all = at::ones({k}, at::kBool);
  const at::Tensor rank = max_margin_rank_loss(
      s.overall.narrow(0, 0, k), s.overall.narrow(0, k, k), all, s.overall.narrow(0, 2 * k, k),
      all, f.meta().at("margin"), f.meta().at("visual_rank_weight"),
      f.meta().at("lang_rank_weight"));
  const at::Tensor select = f.get("in.select_ixs").to(at::kLong);
  const at::Tensor weights = data::attribute_loss_weights(
      f.get("in.att_counts").to(at::kLong), /*scale=*/10.0);
  expect_close(weights, f.get("train.att_weights"), "attribute weights", 1e-6);
  const at::Tensor att =
      f.meta().at("att_weight").get<double>() *
      attribute_loss(s.att_scores.index_select(0, select),
                     f.get("in.att_labels").index_select(0, select), weights);
  const at::Tensor loss = rank + att;
  expect_close(rank.detach().reshape({1}), f.get("train.rank_loss"), "ranking loss", 1e-5);
  expect_close(att.detach().reshape({1}), f.get("train.att_loss"), "attribute loss", 1e-5);
  loss.backward();

  int compared = 0;
  for (const auto& p : m.named_parameters()) {
    if (p.key().rfind("embedding_fc.", 0) == 0) continue;
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    expect_close(p.value().grad(), f.get("grad." + p.key()), "gradient of " + p.key());
    ++compared;
  }
  EXPECT_GT(compared, 40);
  for (const auto& b : m.named_buffers()) {
    if (b.key().find("running") == std::string::npos) continue;
    expect_close(b.value(), f.get("after." + b.key()), "statistics " + b.key());
  }
}

// pool5 and fc7 are ROI-aligned as torchvision.ops.roi_align(aligned=True, sampling_ratio=2) does
// (boxes inside the map).
TEST(MattnetParity, RoiGridIsTorchvisionsRoiAlign) {
  const auto& f = fixture();
  const at::Tensor features = f.get("roi.features");  // [2, 5, 12, 16]
  const at::Tensor rois = f.get("roi.boxes");          // [4, 5] (image, x1, y1, x2, y2) pixels
  const at::Tensor scale = at::tensor({16.0f, 12.0f, 16.0f, 12.0f});
  const at::Tensor boxes = (rois.narrow(1, 1, 4) / scale).view({2, 2, 4});  // two per image
  const at::Tensor ours = roi_grid(features, boxes, 7);  // [2, 2, 49, 5]
  const at::Tensor expected =
      f.get("roi.expected").flatten(2).transpose(1, 2).reshape({2, 2, 49, 5});
  expect_close(ours, expected, "roi_grid", 1e-5);
}

}  // namespace
}  // namespace wico::topdown
