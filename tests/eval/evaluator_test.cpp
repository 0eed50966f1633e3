#include "wico/eval/evaluator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_util.h"
#include "wico/core/error.h"
#include "wico/data/coco_mask.h"
#include "wico/data/refer.h"
#include "wico/data/synthetic.h"

namespace wico::eval {
namespace {

using ::testing::HasSubstr;

// Predictions for every sample of `split`: the ground truth ("oracle"), nothing ("empty"), and
// the ground truth on even sentences only ("half").
std::vector<Prediction> make_predictions(const data::ReferDataset& d, const std::string& split) {
  std::vector<Prediction> out;
  for (const data::Ref* ref : d.refs(split)) {
    const auto& img = d.image(ref->image_id);
    const cv::Mat1b gt =
        data::annotation_to_mask(d.annotation(ref->ann_id).segmentation, img.height, img.width);
    const cv::Mat1b none = cv::Mat1b::zeros(img.height, img.width);
    for (const auto& s : ref->sentences) {
      out.push_back({ref->ref_id, s.sent_id, ref->image_id, img.height, img.width,
                     {{"oracle", encode_mask(gt)},
                      {"empty", encode_mask(none)},
                      {"half", encode_mask(s.sent_id % 2 == 0 ? gt : none)}},
                     {}});
    }
  }
  return out;
}

class EvaluatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data::generate_synthetic({dir.path(), 16, 2, 2, false});
    d = std::make_unique<data::ReferDataset>(data::ReferDataset::load(dir.path(), "refcoco", "unc"));
  }
  test::TempDir dir;
  std::unique_ptr<data::ReferDataset> d;
};

TEST_F(EvaluatorTest, OracleEmptyAndHalfPredictionsScoreAsExpected) {
  const auto predictions = make_predictions(*d, "train");
  const auto r = score_predictions(*d, "train", predictions, {});
  EXPECT_DOUBLE_EQ(r.branches.at("oracle").summary.miou, 1.0);
  EXPECT_DOUBLE_EQ(r.branches.at("oracle").summary.oiou, 1.0);
  EXPECT_DOUBLE_EQ(r.branches.at("oracle").summary.precision[4], 1.0);
  EXPECT_DOUBLE_EQ(r.branches.at("empty").summary.miou, 0.0);
  EXPECT_DOUBLE_EQ(r.branches.at("empty").pn, 1.0);
  std::size_t even = 0;
  for (const auto& p : predictions) even += p.sent_id % 2 == 0;
  const double share = static_cast<double>(even) / predictions.size();
  EXPECT_DOUBLE_EQ(r.branches.at("half").summary.miou, share);
  // Oracle and half disagree exactly on the odd sentences.
  EXPECT_DOUBLE_EQ(r.mer.at("half|oracle"), 1.0 - share);
  EXPECT_THAT(report_markdown(r), HasSubstr("| oracle | " + std::to_string(predictions.size()) +
                                            " | 100.00 | 100.00 | 100.00 |"));
}

TEST_F(EvaluatorTest, MissingOrForeignPredictionsAreErrors) {
  auto predictions = make_predictions(*d, "train");
  const auto last = predictions.back();
  predictions.pop_back();
  EXPECT_THAT(test::thrown_message<Error>([&] { score_predictions(*d, "train", predictions, {}); }),
              HasSubstr("no prediction for ref " + std::to_string(last.ref_id)));
  predictions.push_back(last);
  predictions.push_back(make_predictions(*d, "val").front());
  EXPECT_THAT(test::thrown_message<Error>([&] { score_predictions(*d, "train", predictions, {}); }),
              HasSubstr("1 predictions are not samples of split train"));
  EvalSettings lavt;
  lavt.compat = MetricCompat::kLavt;
  EXPECT_THROW(score_predictions(*d, "val", make_predictions(*d, "val"), lavt), ConfigError);
}

TEST(Evaluator, SamplesAreListedInScoringOrder) {
  test::TempDir dir;
  data::generate_synthetic({dir.path(), 4, 3, 1, false});
  const auto d = data::ReferDataset::load(dir.path(), "refcoco", "unc");
  const auto predictions = make_predictions(d, "train");
  const auto r = score_predictions(d, "train", predictions, {});
  ASSERT_EQ(r.samples.size(), predictions.size());
  ASSERT_EQ(r.branches.at("half").ious.size(), predictions.size());
  for (std::size_t i = 0; i < predictions.size(); ++i) {  // make_predictions follows split order
    EXPECT_EQ(r.samples[i].ref_id, predictions[i].ref_id);
    EXPECT_EQ(r.samples[i].sent_id, predictions[i].sent_id);
    EXPECT_DOUBLE_EQ(r.branches.at("half").ious[i], predictions[i].sent_id % 2 == 0 ? 1.0 : 0.0);
  }
}

TEST_F(EvaluatorTest, CommandLineScoresAPredictionsFolder) {
  for (const std::string split : {"val", "testA"}) {
    std::filesystem::create_directories(dir.path() / "eval" / split);
    PredictionWriter w(dir.path() / "eval" / split / "predictions.jsonl");
    for (const auto& p : make_predictions(*d, split)) w.write(p);
    w.close();
  }
  const auto r = test::run_wico("eval --from-predictions eval --splits val,testA --set data.root=" +
                                    dir.path().string(),
                                dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("refcoco (unc) testA"));
  // "empty" is a PN case on every sample, with "oracle" right: PN panels; no branch pair is both
  // precise, so no normal panels.
  for (const char* file : {"metrics.json", "report.md", "iou_distribution.png", "panels_pn.png"}) {
    EXPECT_TRUE(std::filesystem::exists(dir.path() / "eval" / "val" / file)) << file;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "eval" / "val" / "panels_normal.png"));
  EXPECT_THAT(test::read_file(dir.path() / "eval" / "val" / "metrics.json"),
              HasSubstr("\"miou\": 1.0"));
  // --panels 0: none.
  const auto none = test::run_wico("eval --from-predictions eval --splits val --out quiet "
                                   "--panels 0 --set data.root=" + dir.path().string(),
                                   dir.path());
  ASSERT_EQ(none.exit_code, 0) << none.output;
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "quiet" / "val" / "metrics.json"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "quiet" / "val" / "panels_pn.png"));

  // Figure 7 from the two evaluations: their metrics.json hold no bottom_up|top_down pair, so
  // the pair must be named.
  const auto unnamed = test::run_wico("eval --compare eval B=quiet --out figs", dir.path());
  EXPECT_EQ(unnamed.exit_code, 1);
  EXPECT_THAT(unnamed.output, HasSubstr("has no MER for bottom_up|top_down (it has: "
                                        "empty|half, empty|oracle, half|oracle)"));
  const auto bars = test::run_wico("eval --compare A=eval B=quiet --pair half,oracle --out figs",
                                   dir.path());
  ASSERT_EQ(bars.exit_code, 0) << bars.output;
  EXPECT_THAT(bars.output, HasSubstr("| A | "));
  EXPECT_THAT(bars.output, HasSubstr("| B | "));
  // Only val is in both folders (data.eval_splits are val, testA, testB).
  EXPECT_GT(std::filesystem::file_size(dir.path() / "figs" / "mer_val.png"), 1000u);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "figs" / "mer_testA.png"));
  EXPECT_EQ(test::run_wico("eval --compare eval", dir.path()).exit_code, 2);  // no --out
  EXPECT_EQ(test::run_wico("eval", dir.path()).exit_code, 2);  // neither mode
  EXPECT_EQ(test::run_wico("eval --compare eval --from-predictions eval", dir.path()).exit_code,
            2);
}

}  // namespace
}  // namespace wico::eval
