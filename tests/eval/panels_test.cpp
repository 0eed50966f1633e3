#include "wico/eval/panels.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "test_util.h"
#include "wico/core/error.h"
#include "wico/data/coco_mask.h"
#include "wico/data/refer.h"
#include "wico/data/synthetic.h"

namespace wico::eval {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A result with the given per-sample IoUs of top_down, bottom_up and fused; sample i belongs to
// ref refs[i].
SplitResult constructed(const std::vector<std::array<double, 3>>& ious,
                        const std::vector<std::int64_t>& refs) {
  SplitResult r;
  for (std::size_t i = 0; i < ious.size(); ++i) {
    r.samples.push_back({refs[i], static_cast<std::int64_t>(i)});
    r.branches["top_down"].ious.push_back(ious[i][0]);
    r.branches["bottom_up"].ious.push_back(ious[i][1]);
    r.branches["fused"].ious.push_back(ious[i][2]);
  }
  return r;
}

TEST(Panels, SelectionPicksEachKindDisagreementsFirst) {
  const auto r = constructed({{0.0, 0.9, 0.9},     // 0 PN of top_down, bottom_up right
                              {0.0, 0.95, 0.95},   // 1 the same ref, stronger
                              {0.9, 0.01, 0.9},    // 2 PN of bottom_up, top_down right
                              {0.02, 0.03, 0.04},  // 3 PN everywhere: no branch right
                              {0.95, 0.6, 0.95},   // 4 IP of bottom_up, the others precise
                              {0.7, 0.75, 0.7},    // 5 IP everywhere
                              {0.9, 0.85, 0.92},   // 6 normal
                              {0.99, 0.97, 0.99},  // 7 normal, better
                              {0.3, 0.3, 0.3}},    // 8 none of the kinds
                             {1, 1, 2, 3, 4, 5, 6, 7, 8});
  const ErrorThresholds t;
  // Disagreements first, the branch at fault taking turns; one sentence per ref (1 beats 0).
  EXPECT_THAT(select_cases(r, CaseKind::kPn, 10, t), ElementsAre(1, 2, 3));
  EXPECT_THAT(select_cases(r, CaseKind::kPn, 2, t), ElementsAre(1, 2));
  EXPECT_THAT(select_cases(r, CaseKind::kIp, 10, t), ElementsAre(4, 5));
  EXPECT_THAT(select_cases(r, CaseKind::kNormal, 10, t), ElementsAre(7, 6));
  EXPECT_TRUE(select_cases(r, CaseKind::kNormal, 0, t).empty());
  // Deterministic.
  EXPECT_EQ(select_cases(r, CaseKind::kPn, 10, t), select_cases(r, CaseKind::kPn, 10, t));

  // One branch: no disagreement to prefer, samples in split order.
  SplitResult single;
  single.branches["fused"].ious = {0.04, 0.01, 0.9};
  single.samples = {{1, 1}, {2, 2}, {3, 3}};
  EXPECT_THAT(select_cases(single, CaseKind::kPn, 5, t), ElementsAre(0, 1));
}

TEST(Panels, BranchesShowInThePapersOrder) {
  SplitResult r;
  for (const char* b : {"a_other", "fused", "top_down", "bottom_up", "z_other"}) {
    r.branches[b] = {};
  }
  EXPECT_THAT(display_order(r),
              ElementsAre("top_down", "bottom_up", "fused", "a_other", "z_other"));
}

// The synthetic set with predictions of three branches: top_down picks another object on every
// third sentence (PN), bottom_up's mask is grown by 9 pixels on even sentences (IP) and a little
// shrunk otherwise, fused takes top_down when it is right.
class PanelsOnSyntheticSet : public ::testing::Test {
 protected:
  void SetUp() override {
    data::generate_synthetic({dir.path() / "data", 16, 2, 2, false});
    d = std::make_unique<data::ReferDataset>(
        data::ReferDataset::load(dir.path() / "data", "refcoco", "unc"));
    for (const data::Ref* ref : d->refs("train")) {
      const auto& img = d->image(ref->image_id);
      auto mask_of = [&](std::int64_t ann) {
        return data::annotation_to_mask(d->annotation(ann).segmentation, img.height, img.width);
      };
      const cv::Mat1b gt = mask_of(ref->ann_id);
      cv::Mat1b other = cv::Mat1b::zeros(img.height, img.width);
      for (auto ann : d->annotations_of_image(ref->image_id)) {
        if (ann != ref->ann_id) other = mask_of(ann);
      }
      for (const auto& s : ref->sentences) {
        const bool right = s.sent_id % 3 != 0;
        cv::Mat1b bottom_up;
        if (s.sent_id % 2 == 0) {
          cv::dilate(gt, bottom_up, cv::getStructuringElement(cv::MORPH_ELLIPSE, {19, 19}));
        } else {
          cv::erode(gt, bottom_up, cv::Mat());
        }
        const cv::Mat1b& top_down = right ? gt : other;
        predictions.push_back({ref->ref_id,
                               s.sent_id,
                               ref->image_id,
                               img.height,
                               img.width,
                               {{"top_down", encode_mask(top_down)},
                                {"bottom_up", encode_mask(bottom_up)},
                                {"fused", encode_mask(right ? top_down : bottom_up)}},
                               {}});
      }
    }
    result = score_predictions(*d, "train", predictions, {});
  }
  test::TempDir dir;
  std::unique_ptr<data::ReferDataset> d;
  std::vector<Prediction> predictions;
  SplitResult result;
};

TEST_F(PanelsOnSyntheticSet, OneFilePerKindWithAColumnPerBranch) {
  const auto out = dir.path() / "eval" / "train";
  const auto written = write_panels(*d, result, predictions, {}, 3, out);
  ASSERT_FALSE(written.empty());
  EXPECT_TRUE(std::filesystem::exists(out / "panels_pn.png"));
  for (const auto& png : written) {
    const cv::Mat3b image = cv::imread(png.string(), cv::IMREAD_COLOR);
    ASSERT_FALSE(image.empty()) << png;
    // Margins 10, five 320-pixel columns 6 apart; title 44 + header 30, rows of 240 + 6.
    EXPECT_EQ(image.cols, 2 * 10 + 5 * 320 + 4 * 6) << png;
    const int rows = (image.rows - 44 - 30 - 10 + 6) / (240 + 6);
    EXPECT_GE(rows, 1);
    EXPECT_LE(rows, 3);
    EXPECT_EQ(image.rows, 44 + 30 + rows * 246 - 6 + 10) << png;
    // Each column's header bar in its colour: ground truth green, then top_down blue, bottom_up
    // orange, fused magenta (BGR).
    auto bar = [&](int column) { return image(74 - 4, 10 + column * 326 + 160); };
    EXPECT_EQ(bar(1), cv::Vec3b(60, 190, 60));
    EXPECT_EQ(bar(2), cv::Vec3b(200, 120, 30));
    EXPECT_EQ(bar(3), cv::Vec3b(20, 140, 255));
    EXPECT_EQ(bar(4), cv::Vec3b(190, 60, 200));
  }
  if (const char* keep = std::getenv("WICO_KEEP_PLOTS")) {
    for (const auto& png : written) {
      std::filesystem::copy_file(png, std::filesystem::path(keep) / png.filename(),
                                 std::filesystem::copy_options::overwrite_existing);
    }
  }
  EXPECT_TRUE(write_panels(*d, result, predictions, {}, 0, dir.path() / "none").empty());
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "none"));
}

TEST_F(PanelsOnSyntheticSet, AMissingImageIsAnErrorNamingIt) {
  const auto samples = select_cases(result, CaseKind::kPn, 2, {});
  ASSERT_FALSE(samples.empty());
  const auto& ref_id = result.samples[samples[0]].ref_id;
  std::int64_t image_id = -1;
  for (const auto& ref : d->all_refs()) {
    if (ref.ref_id == ref_id) image_id = ref.image_id;
  }
  const auto path = d->image_path(d->image(image_id));
  std::filesystem::remove(path);
  EXPECT_THAT(test::thrown_message<Error>([&] {
                draw_panels(*d, result, predictions, samples, {}, "x", dir.path() / "p.png");
              }),
              HasSubstr("cannot read image '" + path.string() + "'"));
}

}  // namespace
}  // namespace wico::eval
