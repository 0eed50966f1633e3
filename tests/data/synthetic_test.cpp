#include "wico/data/synthetic.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <set>

#include "test_util.h"
#include "wico/core/error.h"
#include "wico/data/coco_mask.h"
#include "wico/data/refer.h"

namespace fs = std::filesystem;

namespace wico::data {
namespace {

using test::read_file;
using test::TempDir;

TEST(Synthetic, WritesTheRefcocoLayoutThatTheReaderReads) {
  TempDir dir;
  const auto summary = generate_synthetic({dir.path(), 40, 7, 2, false});
  EXPECT_EQ(summary.images, 40);
  EXPECT_GT(summary.refs, 40);
  const auto d = ReferDataset::load(dir.path(), "refcoco", "unc");
  EXPECT_EQ(static_cast<int>(d.all_refs().size()), summary.refs);
  EXPECT_EQ(static_cast<int>(d.num_annotations()), summary.annotations);
  for (const std::string split : {"train", "val", "testA", "testB"}) {
    EXPECT_EQ(static_cast<int>(d.refs(split).size()), summary.refs_per_split.at(split)) << split;
  }
  for (const auto& ref : d.all_refs()) {
    ASSERT_FALSE(ref.sentences.empty());
    const auto& img = d.image(ref.image_id);
    const cv::Mat image = cv::imread(d.image_path(img).string());
    ASSERT_FALSE(image.empty()) << d.image_path(img);
    EXPECT_EQ(image.cols, img.width);
    EXPECT_EQ(image.rows, img.height);
    const auto& category = d.category(ref.category_id);
    // RefCOCO's testA/testB: refs to one group each.
    if (ref.split == "testA") {
      EXPECT_EQ(category.supercategory, "angular");
    }
    if (ref.split == "testB") {
      EXPECT_EQ(category.supercategory, "round");
    }
    for (const auto& s : ref.sentences) {
      EXPECT_NE(s.sent.find(category.name), std::string::npos) << s.raw;
    }
  }
}

TEST(Synthetic, SegmentationsUsePolygonsAndRleAndMatchTheirBoxes) {
  TempDir dir;
  generate_synthetic({dir.path(), 30, 3, 2, false});
  const auto d = ReferDataset::load(dir.path(), "refcoco", "unc");
  int polygons = 0, rles = 0;
  for (const auto& ref : d.all_refs()) {
    const auto& ann = d.annotation(ref.ann_id);
    const auto& img = d.image(ann.image_id);
    (ann.segmentation.is_array() ? polygons : rles)++;
    const cv::Mat1b mask = annotation_to_mask(ann.segmentation, img.height, img.width);
    const double pixels = cv::countNonZero(mask);
    EXPECT_GT(pixels, 0);
    EXPECT_NEAR(pixels, ann.area, 0.15 * ann.area + 20);
    const auto box = rle_to_bbox(rle_encode(mask));
    // Boxes are the extents of the decoded pixels, whatever the segmentation's form.
    EXPECT_EQ(box, ann.bbox);
  }
  EXPECT_GT(polygons, 0);
  EXPECT_GT(rles, 0);  // rings have holes: RLE
}

TEST(Synthetic, SameSeedSameBytesWhateverTheThreadCount) {
  TempDir a, b, c;
  generate_synthetic({a.path(), 12, 5, 1, false});
  generate_synthetic({b.path(), 12, 5, 2, false});
  generate_synthetic({c.path(), 12, 6, 2, false});
  const std::string refs = "refcoco/refs(unc).p";
  EXPECT_EQ(read_file(a.path() / refs), read_file(b.path() / refs));
  EXPECT_EQ(read_file(a.path() / "refcoco/instances.json"),
            read_file(b.path() / "refcoco/instances.json"));
  EXPECT_EQ(read_file(a.path() / "images/train2014/COCO_train2014_000000000003.jpg"),
            read_file(b.path() / "images/train2014/COCO_train2014_000000000003.jpg"));
  EXPECT_NE(read_file(a.path() / refs), read_file(c.path() / refs));
}

TEST(Synthetic, ExpressionsMustBeReadMostImagesRepeatACategory) {
  TempDir dir;
  generate_synthetic({dir.path(), 60, 11, 2, false});
  const auto d = ReferDataset::load(dir.path(), "refcoco", "unc");
  int repeated = 0, images = 0;
  std::set<std::int64_t> seen;
  for (const auto& ref : d.all_refs()) {
    if (!seen.insert(ref.image_id).second) continue;
    ++images;
    int same = 0;
    for (auto id : d.annotations_of_image(ref.image_id)) {
      same += d.annotation(id).category_id == ref.category_id;
    }
    repeated += same >= 2;
  }
  EXPECT_GT(repeated, images / 2) << repeated << " of " << images;
}

TEST(Synthetic, RefusesToOverwriteAnExistingSet) {
  TempDir dir;
  generate_synthetic({dir.path(), 2, 0, 1, false});
  EXPECT_THROW(generate_synthetic({dir.path(), 2, 0, 1, false}), ConfigError);
  EXPECT_NO_THROW(generate_synthetic({dir.path(), 2, 1, 1, true}));
}

TEST(Synthetic, PythonReadsTheRefsPickle) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "no /usr/bin/python3";
  TempDir dir;
  const auto summary = generate_synthetic({dir.path(), 5, 2, 1, false});
  const auto out = dir.path() / "out.txt";
  const std::string cmd = "/usr/bin/python3 -c \"import pickle; r = pickle.load(open('" +
                          (dir.path() / "refcoco" / "refs(unc).p").string() +
                          "', 'rb')); print(len(r), sorted(r[0].keys()))\" > " + out.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(read_file(out), std::to_string(summary.refs) +
                                " ['ann_id', 'category_id', 'file_name', 'image_id', 'ref_id', "
                                "'sent_ids', 'sentences', 'split']\n");
}

}  // namespace
}  // namespace wico::data
