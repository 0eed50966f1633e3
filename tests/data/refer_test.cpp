#include "wico/data/refer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_util.h"
#include "wico/core/error.h"
#include "wico/data/coco_mask.h"

namespace fs = std::filesystem;

namespace wico::data {
namespace {

using ::testing::HasSubstr;

const fs::path kLayout = fs::path(WICO_TEST_DATA_DIR) / "refer" / "layout";

std::string error_of(const std::function<void()>& fn) { return test::thrown_message<Error>(fn); }

TEST(Refer, LoadsRealRefsWithTheirFirstSentence) {
  const auto d = ReferDataset::load(kLayout, "refcoco", "unc");
  ASSERT_EQ(d.all_refs().size(), 8u);
  const Ref& first = d.all_refs()[0];
  EXPECT_EQ(first.ref_id, 10505);
  EXPECT_EQ(first.ann_id, 1993516);
  EXPECT_EQ(first.image_id, 460986);
  EXPECT_EQ(first.sentences[0].raw, "left vase");
  EXPECT_FALSE(first.sentences[0].tokens.empty());
  EXPECT_EQ(d.num_images(), 4u);
  EXPECT_EQ(d.num_annotations(), 68u);
  EXPECT_EQ(d.image(495169).width, 640);
  EXPECT_EQ(d.image_path(d.image(495169)),
            kLayout / "images" / "train2014" / "COCO_train2014_000000495169.jpg");
}

TEST(Refer, ClassIndicesAreContiguousInCategoryIdOrder) {
  // RefCOCO's instances.json lists COCO's 80 categories, ids 1..90 with gaps: detectron2's
  // contiguous ids 0..79, the layout of the released Mask2Former's 81-row class head.
  const auto d = ReferDataset::load(kLayout, "refcoco", "unc");
  ASSERT_EQ(d.categories().size(), 80u);
  EXPECT_EQ(d.class_index(1), 0);
  EXPECT_EQ(d.class_index(11), 10);
  EXPECT_EQ(d.class_index(13), 11);  // id 12 is one of COCO's gaps
  EXPECT_EQ(d.class_index(86), 75);  // "vase", the first ref's object
  EXPECT_EQ(d.class_index(90), 79);
  EXPECT_THAT(error_of([&] { (void)d.class_index(12); }),
              HasSubstr("instances.json has no category 12"));
}

TEST(Refer, SplitRulesFollowTheReferApi) {
  const auto unc = ReferDataset::load(kLayout, "refcoco", "unc");
  EXPECT_EQ(unc.refs("train").size(), 2u);
  EXPECT_EQ(unc.refs("val").size(), 2u);
  EXPECT_EQ(unc.refs("testA").size(), 2u);
  EXPECT_EQ(unc.refs("testB").size(), 2u);
  EXPECT_EQ(unc.refs("test").size(), 4u);  // any split containing "test"
  for (const Ref* r : unc.refs("testA")) EXPECT_EQ(r->split, "testA");
  const auto umd = ReferDataset::load(kLayout, "refcocog", "umd");
  EXPECT_EQ(umd.refs("test").size(), 2u);
  EXPECT_TRUE(umd.refs("testA").empty());
  EXPECT_THROW(unc.refs("dev"), ConfigError);
}

TEST(Refer, EveryPublishedSplitFamilyLoads) {
  for (const auto& [dataset, split_by] :
       std::vector<std::pair<std::string, std::string>>{{"refcoco", "unc"}, {"refcoco", "google"},
                                                        {"refcoco+", "unc"}, {"refcocog", "umd"},
                                                        {"refcocog", "google"}}) {
    const auto d = ReferDataset::load(kLayout, dataset, split_by);
    EXPECT_FALSE(d.all_refs().empty()) << dataset << " " << split_by;
    for (const auto& ref : d.all_refs()) {
      const auto& ann = d.annotation(ref.ann_id);
      EXPECT_EQ(ann.image_id, ref.image_id);
      EXPECT_EQ(ann.category_id, ref.category_id);
    }
  }
}

TEST(Refer, RefMasksDecodeToTheirAnnotatedExtent) {
  const auto d = ReferDataset::load(kLayout, "refcoco", "unc");
  for (const auto& ref : d.all_refs()) {
    const auto& ann = d.annotation(ref.ann_id);
    const auto& img = d.image(ref.image_id);
    const cv::Mat1b mask = annotation_to_mask(ann.segmentation, img.height, img.width);
    const double pixels = cv::countNonZero(mask);
    EXPECT_NEAR(pixels, ann.area, 0.1 * ann.area + 50) << "ref " << ref.ref_id;
  }
}

TEST(Refer, ExcludedImagesAreThoseOfTheEvaluationSplits) {
  const auto d = ReferDataset::load(kLayout, "refcoco", "unc");
  const auto ids = d.image_ids({"val", "testA", "testB"});
  EXPECT_FALSE(ids.empty());
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  for (const Ref* r : d.refs("val")) {
    EXPECT_TRUE(std::binary_search(ids.begin(), ids.end(), r->image_id));
  }
}

TEST(Refer, InstanceTrainingLeavesOutEvaluationImages) {
  const auto d = ReferDataset::load(kLayout, "refcoco", "unc");
  const auto all = d.instance_training_images(false);
  EXPECT_EQ(all.size(), d.num_images());
  const auto kept = d.instance_training_images(true);
  const auto held_out = d.image_ids({"val", "testA", "testB"});
  for (auto id : held_out) EXPECT_FALSE(std::binary_search(kept.begin(), kept.end(), id)) << id;
  EXPECT_EQ(kept.size() + held_out.size(), all.size());
}

TEST(Refer, BadInputNamesTheFile) {
  test::TempDir dir;
  EXPECT_THAT(error_of([&] { ReferDataset::load(dir.path() / "none", "refcoco", "unc"); }),
              HasSubstr("does not exist"));
  EXPECT_THAT(error_of([&] { ReferDataset::load(dir.path(), "refcoco", "unc"); }),
              HasSubstr("refcoco/instances.json"));
  EXPECT_THROW(ReferDataset::load(kLayout, "refcoco+", "google"), ConfigError);

  fs::copy(kLayout / "refcoco", dir.path() / "refcoco");
  dir.write("refcoco/instances.json", "{\"images\": [}");
  EXPECT_THAT(error_of([&] { ReferDataset::load(dir.path(), "refcoco", "unc"); }),
              HasSubstr("malformed JSON"));
  dir.write("refcoco/instances.json", "{\"images\": [], \"annotations\": [], \"categories\": []}");
  const std::string missing = error_of([&] { ReferDataset::load(dir.path(), "refcoco", "unc"); });
  EXPECT_THAT(missing, HasSubstr("refs(unc).p: ref 10505 points at annotation 1993516"));
  dir.write("refcoco/instances.json", "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\"}]}");
  EXPECT_THAT(error_of([&] { ReferDataset::load(dir.path(), "refcoco", "unc"); }),
              HasSubstr("has no 'height'"));
  // Found by refer_fuzz: a number beyond double's range was an uncaught exception (a crash), and
  // a size beyond int's an undefined conversion.
  dir.write("refcoco/instances.json", "{\"images\": [7e917]}");
  EXPECT_THAT(error_of([&] { ReferDataset::load(dir.path(), "refcoco", "unc"); }),
              HasSubstr("refcoco/instances.json: [json.exception.out_of_range.406] number "
                        "overflow parsing '7e917'"));
  dir.write("refcoco/instances.json", "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", "
                                      "\"height\": 1e98, \"width\": 5}]}");
  EXPECT_THAT(error_of([&] { ReferDataset::load(dir.path(), "refcoco", "unc"); }),
              HasSubstr("an image field 'height' is 1e+98, not an integer in range"));
}

}  // namespace
}  // namespace wico::data
