// Tests of wico/data/coco_mask.h: hand-worked cases, and pixel-exact agreement with pycocotools'
// maskApi.c on the fixtures of tests/data/coco_mask/ (made by scripts/make_mask_fixtures.sh),
// plus a plausibility check of every real RefCOCO polygon against its annotation's area and box.
#include "wico/data/coco_mask.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "wico/core/error.h"

namespace wico::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

json load_json(const std::string& relative) {
  const std::string path = std::string(WICO_TEST_DATA_DIR) + "/" + relative;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open test fixture " + path);
  return json::parse(in);
}

std::vector<std::vector<double>> polygons_of(const json& segmentation) {
  return segmentation.get<std::vector<std::vector<double>>>();
}

// The message of the wico::Error that `f` throws ("" and a test failure if it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const wico::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected wico::Error";
  return "";
}

std::size_t count_ones(const cv::Mat1b& mask) {
  return static_cast<std::size_t>(cv::countNonZero(mask));
}

// ---------------------------------------------------------------------------------------------
// Hand-worked cases.

TEST(CocoMaskRle, CompressedStringExample231N) {
  const Rle rle{7, 1, {2, 3, 1, 1}};
  EXPECT_EQ(rle_to_string(rle), "231N");
  EXPECT_EQ(rle_from_string("231N", 7, 1), rle);
  // Index 3 is stored as 1 - counts[1] = -2: group 0x1e with the sign bit, '0' + 30 = 'N'.
  // Index 2 is stored as it is ('1'), which is pycocotools' `i > 2` (not `i >= 2`).
}

TEST(CocoMaskRle, ColumnMajorOrder) {
  cv::Mat1b mask(2, 3, std::uint8_t{0});
  mask(1, 0) = 1;  // y = 1, x = 0 -> index 1
  mask(0, 2) = 1;  // y = 0, x = 2 -> index 4
  const Rle rle = rle_encode(mask);
  EXPECT_EQ(rle.height, 2);
  EXPECT_EQ(rle.width, 3);
  EXPECT_THAT(rle.counts, ElementsAre(1u, 1u, 2u, 1u, 1u));
  EXPECT_EQ(cv::norm(rle_decode(rle), mask, cv::NORM_INF), 0.0);
  EXPECT_EQ(rle_area(rle), 2u);
  const auto box = rle_to_bbox(rle);
  EXPECT_THAT(box, ElementsAre(0.0, 0.0, 3.0, 2.0));
}

TEST(CocoMaskRle, EmptyMask) {
  const cv::Mat1b mask(4, 3, std::uint8_t{0});
  const Rle rle = rle_encode(mask);
  EXPECT_THAT(rle.counts, ElementsAre(12u));
  EXPECT_EQ(rle_area(rle), 0u);
  EXPECT_THAT(rle_to_bbox(rle), ElementsAre(0.0, 0.0, 0.0, 0.0));
  EXPECT_EQ(rle_to_string(rle), "<");  // 12 + 48
  EXPECT_EQ(rle_from_string("<", 4, 3), rle);
  EXPECT_EQ(count_ones(rle_decode(rle)), 0u);
}

TEST(CocoMaskRle, FullMask) {
  const cv::Mat1b mask(4, 3, std::uint8_t{1});
  const Rle rle = rle_encode(mask);
  EXPECT_THAT(rle.counts, ElementsAre(0u, 12u));
  EXPECT_EQ(rle_area(rle), 12u);
  EXPECT_THAT(rle_to_bbox(rle), ElementsAre(0.0, 0.0, 3.0, 4.0));
  EXPECT_EQ(rle_from_string(rle_to_string(rle), 4, 3), rle);
  EXPECT_EQ(count_ones(rle_decode(rle)), 12u);
}

TEST(CocoMaskRle, ForegroundFirstPixelStartsWithZeroRun) {
  cv::Mat1b mask(3, 3, std::uint8_t{0});
  mask(0, 0) = 1;
  mask(1, 0) = 1;
  mask(2, 2) = 1;
  const Rle rle = rle_encode(mask);
  EXPECT_THAT(rle.counts, ElementsAre(0u, 2u, 6u, 1u));
  EXPECT_EQ(rle_to_string(rle), "026O");  // index 3: 1 - 2 = -1 -> group 0x1f -> 'O' 
  EXPECT_EQ(rle_from_string(rle_to_string(rle), 3, 3), rle);
  EXPECT_EQ(cv::norm(rle_decode(rle), mask, cv::NORM_INF), 0.0);
  EXPECT_THAT(rle_to_bbox(rle), ElementsAre(0.0, 0.0, 3.0, 3.0));
}

TEST(CocoMaskRle, NonBinaryValuesCountAsForeground) {
  cv::Mat1b mask(2, 2, std::uint8_t{0});
  mask(0, 0) = 255;
  mask(1, 0) = 7;
  EXPECT_THAT(rle_encode(mask).counts, ElementsAre(0u, 2u, 2u));
}

TEST(CocoMaskRle, RandomMasksRoundTrip) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int h = 1 + static_cast<int>(rng() % 40), w = 1 + static_cast<int>(rng() % 40);
    cv::Mat1b mask(h, w);
    // Blobby masks (long runs) and noisy ones (many short runs) both.
    const unsigned density = rng() % 4;
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        mask(y, x) = density == 0 ? (((x / 5 + y / 7) % 2) != 0) : (rng() % (density + 1) == 0);
      }
    }
    const Rle rle = rle_encode(mask);
    ASSERT_EQ(cv::norm(rle_decode(rle), mask, cv::NORM_INF), 0.0);
    ASSERT_EQ(rle_area(rle), count_ones(mask));
    ASSERT_EQ(rle_from_string(rle_to_string(rle), h, w), rle);
  }
}

TEST(CocoMaskRle, StringRoundTripOfLargeAndDecreasingCounts) {
  // Large counts need up to 7 groups; decreasing ones give negative differences.
  const Rle rle{65536, 65535, {4000000000u, 1u, 294901724u, 5u, 30u, 0u, 0u}};
  ASSERT_EQ(std::uint64_t{4000000000u} + 1 + 294901724u + 5 + 30,
            std::uint64_t{65536} * 65535);
  EXPECT_EQ(rle_from_string(rle_to_string(rle), 65536, 65535), rle);
}

TEST(CocoMaskRle, DecodeChecksCountsSum) {
  EXPECT_THAT(error_of([] { rle_decode(Rle{2, 2, {1, 2}}); }), HasSubstr("sum to 3"));
  EXPECT_THAT(error_of([] { rle_decode(Rle{2, 2, {1, 2, 5}}); }), HasSubstr("has 4 pixels"));
}

TEST(CocoMaskRle, FromStringRejectsMalformedStrings) {
  EXPECT_THAT(error_of([] { rle_from_string("23 N", 7, 1); }), HasSubstr("invalid character"));
  EXPECT_THAT(error_of([] { rle_from_string("23~", 7, 1); }), HasSubstr("invalid character"));
  // 'P' = 48 + 32: a continuation group with nothing after it.
  EXPECT_THAT(error_of([] { rle_from_string("23P", 7, 1); }), HasSubstr("ends inside"));
  // Index 3 = counts[1] - 4 = -1 < 0 ('L' = 48 + 28 = -4).
  EXPECT_THAT(error_of([] { rle_from_string("231L", 7, 1); }), HasSubstr("outside 0..2^32-1"));
  EXPECT_THAT(error_of([] { rle_from_string("231N", 8, 1); }), HasSubstr("sum to 7"));
  EXPECT_THAT(error_of([] { rle_from_string("ooooooo0", 8, 1); }), HasSubstr("groups"));
  EXPECT_THAT(error_of([] { rle_from_string("", 2, 2); }), HasSubstr("sum to 0"));
}

TEST(CocoMaskRle, MergeUnionAndIntersection) {
  cv::Mat1b a(3, 4, std::uint8_t{0}), b(3, 4, std::uint8_t{0});
  a(cv::Rect(0, 0, 2, 3)) = 1;
  b(cv::Rect(1, 1, 3, 2)) = 1;
  const Rle ra = rle_encode(a), rb = rle_encode(b);
  EXPECT_EQ(rle_merge({ra, rb}), rle_encode(a | b));
  EXPECT_EQ(rle_merge({ra, rb}, true), rle_encode(a & b));
  EXPECT_EQ(rle_merge({ra}), ra);
  EXPECT_EQ(rle_merge({}), Rle{});
  EXPECT_THAT(error_of([&] { rle_merge({ra, Rle{4, 3, {12}}}); }), HasSubstr("expected 3 x 4"));
  EXPECT_THAT(error_of([&] { rle_merge({ra, Rle{3, 4, {11}}}); }), HasSubstr("sum to 11"));
}

TEST(CocoMaskPolygon, TwoByTwoSquare) {
  // Pixel centres (1.5, 1.5) .. (2.5, 2.5) lie inside [1, 3] x [1, 3]; no others do.
  const Rle rle = rle_from_polygon({1, 1, 3, 1, 3, 3, 1, 3}, 5, 5);
  EXPECT_THAT(rle.counts, ElementsAre(6u, 2u, 3u, 2u, 12u));
  cv::Mat1b expected(5, 5, std::uint8_t{0});
  expected(cv::Rect(1, 1, 2, 2)) = 1;
  EXPECT_EQ(cv::norm(rle_decode(rle), expected, cv::NORM_INF), 0.0);
  EXPECT_THAT(rle_to_bbox(rle), ElementsAre(1.0, 1.0, 2.0, 2.0));
}

TEST(CocoMaskPolygon, OddTrailingCoordinateIsDropped) {
  EXPECT_EQ(rle_from_polygon({5, 5, 30, 5, 30, 30, 5, 30, 17}, 40, 40),
            rle_from_polygon({5, 5, 30, 5, 30, 30, 5, 30}, 40, 40));
}

TEST(CocoMaskPolygon, DegenerateInputs) {
  const Rle empty{10, 10, {100}};
  EXPECT_EQ(rle_from_polygon({}, 10, 10), empty);
  EXPECT_EQ(rle_from_polygon({3.0}, 10, 10), empty);
  EXPECT_EQ(rle_from_polygon({3.0, 4.0}, 10, 10), empty);
  EXPECT_EQ(rle_from_polygon({3.0, 4.0, 3.0, 4.0, 3.0, 4.0}, 10, 10), empty);
  EXPECT_EQ(rle_from_polygons({}, 10, 10), empty);
  EXPECT_THAT(error_of([] { rle_from_polygon({1, 1, NAN, 2, 3, 3}, 10, 10); }),
              HasSubstr("coordinate 2"));
  EXPECT_THAT(error_of([] { rle_from_polygon({1, 1, 1e12, 2, 3, 3}, 10, 10); }),
              HasSubstr("coordinate 2"));
}

TEST(CocoMaskPolygon, AFarVertexIsAnErrorNotGigabytes) {
  // 30 bytes of JSON whose edge would be walked through 4.5e8 grid points (3.6 GB).
  EXPECT_THAT(error_of([] { rle_from_polygon({0, 0, 9e7, 0, 0, 1}, 10, 10); }),
              HasSubstr("edge 0 from (0, 0) to (9e+07, 0) is longer than the perimeter of the "
                        "10 x 10 image"));
  // A vertex an image's size outside is still rasterised (clipped, as pycocotools does).
  const Rle clipped = rle_from_polygon({-10, -10, 19.9, -10, 19.9, 19.9, -10, 19.9}, 10, 10);
  EXPECT_EQ(rle_area(clipped), 100u);
}

TEST(CocoMaskPolygon, FirstPartOfFourNumbersMeansBoxes) {
  EXPECT_EQ(rle_from_polygons({{2.3, 4.7, 10.2, 5.1}}, 20, 30),
            rle_from_bbox({2.3, 4.7, 10.2, 5.1}, 20, 30));
  EXPECT_THAT(error_of([] { rle_from_polygons({{1, 1, 5, 5}, {1, 1, 5, 1, 5, 5}}, 20, 30); }),
              HasSubstr("read as a box"));
  // As a later part, 4 numbers are a two-vertex polygon: nothing inside.
  EXPECT_EQ(rle_from_polygon({5, 5, 25, 25}, 30, 30), (Rle{30, 30, {900}}));
}

// ---------------------------------------------------------------------------------------------
// Pixel-exact agreement with pycocotools (fixtures from maskApi.c).

void expect_matches_reference(const json& c) {
  SCOPED_TRACE(c["name"].get<std::string>());
  const int h = c["height"], w = c["width"];
  const auto polygons = polygons_of(c["polygons"]);
  const bool boxes = c["form"] == "boxes";
  std::vector<Rle> parts;
  for (std::size_t i = 0; i < polygons.size(); ++i) {
    const auto& p = polygons[i];
    const Rle part = boxes ? rle_from_bbox({p[0], p[1], p[2], p[3]}, h, w)
                           : rle_from_polygon(p, h, w);
    EXPECT_EQ(rle_to_string(part), c["parts"][i].get<std::string>()) << "part " << i;
    parts.push_back(part);
  }
  const Rle merged = rle_from_polygons(polygons, h, w);
  const std::string expected = c["union"];
  EXPECT_EQ(rle_to_string(merged), expected);
  EXPECT_EQ(rle_merge(parts), merged);
  EXPECT_EQ(rle_to_string(rle_merge(parts, true)), c["intersection"].get<std::string>());
  EXPECT_EQ(rle_area(merged), c["area"].get<std::uint64_t>());
  const auto box = rle_to_bbox(merged);
  EXPECT_EQ(std::vector<double>(box.begin(), box.end()), c["bbox"].get<std::vector<double>>());
  // Through the mask and the JSON entry point too.
  const cv::Mat1b mask = annotation_to_mask(c["polygons"], h, w);
  EXPECT_EQ(rle_to_string(rle_encode(mask)), expected);
  EXPECT_EQ(cv::norm(mask, rle_decode(rle_from_string(expected, h, w)), cv::NORM_INF), 0.0);
  EXPECT_EQ(cv::norm(mask, polygons_to_mask(polygons, h, w), cv::NORM_INF), 0.0);
}

TEST(CocoMaskReference, HandMadeAndRandomPolygons) {
  const json doc = load_json("coco_mask/handmade.json");
  ASSERT_GE(doc["cases"].size(), 60u);
  for (const auto& c : doc["cases"]) expect_matches_reference(c);
}

TEST(CocoMaskReference, CocoVal2017TwoCatsPolygons) {
  const json doc = load_json("coco_mask/coco_val2017_39769.json");
  ASSERT_EQ(doc["cases"].size(), 6u);
  for (const auto& c : doc["cases"]) expect_matches_reference(c);
}

TEST(CocoMaskReference, RefcocoTrain2014Polygons) {
  const json doc = load_json("coco_mask/refcoco_train2014.json");
  ASSERT_EQ(doc["cases"].size(), 68u);
  for (const auto& c : doc["cases"]) expect_matches_reference(c);
}

TEST(CocoMaskReference, CrowdUncompressedRle) {
  const json doc = load_json("coco_mask/crowd_rle.json");
  const json& seg = doc["segmentation"];
  const Rle rle = annotation_to_rle(seg, 427, 640);
  EXPECT_EQ(rle.counts, seg["counts"].get<std::vector<std::uint32_t>>());
  const std::string expected = doc["string"];
  EXPECT_EQ(rle_to_string(rle), expected);
  EXPECT_EQ(rle_area(rle), doc["area"].get<std::uint64_t>());
  EXPECT_EQ(rle_area(rle), 3386u);  // not the annotation's "area" 4015: crowd areas differ
  const auto box = rle_to_bbox(rle);
  EXPECT_EQ(std::vector<double>(box.begin(), box.end()), doc["bbox"].get<std::vector<double>>());
  // The compressed form of the same annotation decodes to the same mask.
  const json compressed = {{"counts", expected}, {"size", {427, 640}}};
  const cv::Mat1b mask = annotation_to_mask(seg, 427, 640);
  EXPECT_EQ(cv::norm(annotation_to_mask(compressed, 427, 640), mask, cv::NORM_INF), 0.0);
  EXPECT_EQ(rle_encode(mask), rle);
  EXPECT_EQ(count_ones(mask), 3386u);
}

// ---------------------------------------------------------------------------------------------
// JSON forms and their errors.

TEST(CocoMaskAnnotation, RejectsWrongShapesAndSizes) {
  const json rle = {{"counts", "231N"}, {"size", {7, 1}}};
  EXPECT_NO_THROW(annotation_to_mask(rle, 7, 1));
  EXPECT_THAT(error_of([&] { annotation_to_mask(rle, 1, 7); }),
              HasSubstr("RLE size [7, 1] does not match the image's [1, 7]"));
  EXPECT_THAT(error_of([] { annotation_to_mask(json(3), 7, 1); }),
              HasSubstr("expected a list of polygons or an RLE object"));
  EXPECT_THAT(error_of([] { annotation_to_mask(json{{"counts", "231N"}}, 7, 1); }),
              HasSubstr("expected a list of polygons or an RLE object"));
  EXPECT_THAT(error_of([] { annotation_to_mask(json{{"counts", 5}, {"size", {7, 1}}}, 7, 1); }),
              HasSubstr("must be a string (compressed) or a list of integers"));
  EXPECT_THAT(error_of([] { annotation_to_mask(json{{"counts", "2"}, {"size", {7}}}, 7, 1); }),
              HasSubstr("must be [height, width]"));
  EXPECT_THAT(
      error_of([] { annotation_to_mask(json{{"counts", {2, -3, 2}}, {"size", {7, 1}}}, 7, 1); }),
      HasSubstr("counts[1] must be an integer"));
  EXPECT_THAT(
      error_of([] { annotation_to_mask(json{{"counts", {2, 3}}, {"size", {7, 1}}}, 7, 1); }),
      HasSubstr("sum to 5"));
  EXPECT_THAT(error_of([] { annotation_to_mask(json::parse(R"([[1, 2, "3", 4, 5, 6]])"), 9, 9); }),
              HasSubstr("polygon 0 must contain only numbers"));
  EXPECT_THAT(error_of([] { annotation_to_mask(json::parse("[5]"), 9, 9); }),
              HasSubstr("polygon 0 must be a list"));
}

TEST(CocoMaskAnnotation, UncompressedCountsMayStartWithForeground) {
  const json rle = {{"counts", {0, 2, 5}}, {"size", {7, 1}}};
  const cv::Mat1b mask = annotation_to_mask(rle, 7, 1);
  EXPECT_EQ(mask(0, 0), 1);
  EXPECT_EQ(mask(1, 0), 1);
  EXPECT_EQ(count_ones(mask), 2u);
}

// ---------------------------------------------------------------------------------------------
// data.mask_rule: union of the parts, or LAVT's "exactly one part covers the pixel".

TEST(CocoMaskRule, LavtDropsPixelsWhereTwoPartsOverlap) {
  // Pixel centres inside [2, 12] x [2, 10]: 10 x 8 = 80; inside [8, 18] x [6, 14]: 80 more; both
  // cover x 8..11, y 6..9: 16. Union 144, exactly one part 144 - 16 = 128.
  const std::vector<std::vector<double>> a = {{2, 2, 12, 2, 12, 10, 2, 10}};
  const std::vector<std::vector<double>> b = {{8, 6, 18, 6, 18, 14, 8, 14}};
  const std::vector<std::vector<double>> both = {a[0], b[0]};
  ASSERT_EQ(count_ones(polygons_to_mask(a, 20, 20)), 80u);
  ASSERT_EQ(count_ones(polygons_to_mask(b, 20, 20)), 80u);
  const cv::Mat1b uni = polygons_to_mask(both, 20, 20);
  const cv::Mat1b lavt = polygons_to_mask(both, 20, 20, MaskRule::kLavt);
  EXPECT_EQ(count_ones(uni), 144u);
  EXPECT_EQ(count_ones(lavt), 128u);
  EXPECT_EQ(cv::countNonZero(lavt(cv::Rect(8, 6, 4, 4))), 0);  // the overlap
  EXPECT_EQ(cv::countNonZero(lavt & uni), 128);                  // nothing outside the union
  double lo = 0, hi = 0;
  cv::minMaxLoc(lavt, &lo, &hi);
  EXPECT_EQ(hi, 1.0);  // 0/1, like every mask
  // The JSON entry point; the default is the union.
  const json segmentation = both;
  EXPECT_EQ(cv::norm(annotation_to_mask(segmentation, 20, 20), uni, cv::NORM_INF), 0.0);
  EXPECT_EQ(cv::norm(annotation_to_mask(segmentation, 20, 20, MaskRule::kUnion), uni,
                     cv::NORM_INF),
            0.0);
  EXPECT_EQ(cv::norm(annotation_to_mask(segmentation, 20, 20, MaskRule::kLavt), lavt,
                     cv::NORM_INF),
            0.0);
}

TEST(CocoMaskRule, LavtKeepsExactlyOneCoverAgainstOurOwnPartMasks) {
  // A third part inside the overlap of the first two: covered 3 times there (dropped too).
  const std::vector<std::vector<double>> parts = {
      {2, 2, 12, 2, 12, 10, 2, 10}, {8, 6, 18, 6, 18, 14, 8, 14}, {10, 8, 14, 8, 14, 12, 10, 12}};
  cv::Mat1b count(20, 20, std::uint8_t{0});
  for (const auto& p : parts) count += rle_decode(rle_from_polygon(p, 20, 20));
  const cv::Mat1b expected = (count == 1) / 255;
  const cv::Mat1b lavt = polygons_to_mask(parts, 20, 20, MaskRule::kLavt);
  EXPECT_EQ(count_ones(lavt), 116u);  // 144 covered, 24 twice, 4 three times
  EXPECT_EQ(cv::norm(lavt, expected, cv::NORM_INF), 0.0);
  // Disjoint parts: the rules agree.
  const std::vector<std::vector<double>> apart = {{1, 1, 4, 1, 4, 4, 1, 4},
                                                  {10, 10, 15, 10, 15, 12, 10, 12}};
  EXPECT_EQ(cv::norm(polygons_to_mask(apart, 20, 20, MaskRule::kLavt),
                     polygons_to_mask(apart, 20, 20), cv::NORM_INF),
            0.0);
}

TEST(CocoMaskRule, LavtWrapsTheCountAsUint8AndLeavesRlesAlone) {
  // LAVT casts the sum to uint8 before `== 1`: 257 copies of a part count as 1, 256 as 0.
  const std::vector<double> square = {1, 1, 3, 1, 3, 3, 1, 3};
  const cv::Mat1b one = polygons_to_mask({square}, 5, 5);
  EXPECT_EQ(cv::norm(polygons_to_mask(std::vector<std::vector<double>>(257, square), 5, 5,
                                      MaskRule::kLavt),
                     one, cv::NORM_INF),
            0.0);
  EXPECT_EQ(count_ones(polygons_to_mask(std::vector<std::vector<double>>(256, square), 5, 5,
                                        MaskRule::kLavt)),
            0u);
  // An RLE segmentation is a single part under both rules.
  const json rle = {{"counts", {0, 2, 5}}, {"size", {7, 1}}};
  EXPECT_EQ(cv::norm(annotation_to_mask(rle, 7, 1, MaskRule::kLavt), annotation_to_mask(rle, 7, 1),
                     cv::NORM_INF),
            0.0);
  EXPECT_EQ(count_ones(polygons_to_mask({}, 5, 5, MaskRule::kLavt)), 0u);
  EXPECT_EQ(parse_mask_rule("union"), MaskRule::kUnion);
  EXPECT_EQ(parse_mask_rule("lavt"), MaskRule::kLavt);
  EXPECT_THROW(parse_mask_rule("sum"), ConfigError);
}

// ---------------------------------------------------------------------------------------------
// Every real RefCOCO polygon against its annotation (area = shoelace area, bbox = vertex extents).

TEST(CocoMaskRefcoco, MasksAgreeWithAnnotationAreaAndBox) {
  const json doc = load_json("refer/refcoco.json");
  std::size_t checked = 0;
  double max_box_error = 0;
  std::size_t beyond_one_px = 0;
  for (const auto& [image_id, entry] : doc["coco_anns"].items()) {
    const int h = entry["info"]["height"], w = entry["info"]["width"];
    for (const auto& ann : entry["anns"]) {
      SCOPED_TRACE("annotation " + std::to_string(ann["id"].get<long>()) + " of image " +
                   image_id);
      const cv::Mat1b mask = annotation_to_mask(ann["segmentation"], h, w);
      ASSERT_EQ(mask.rows, h);
      ASSERT_EQ(mask.cols, w);
      const double area = ann["area"], pixels = static_cast<double>(count_ones(mask));
      EXPECT_LE(std::abs(pixels - area), 0.03 * area + 10.0) << "pixels " << pixels;
      // Pixel extents: columns x0..x1-1 and rows y0..y1-1 hold foreground.
      std::vector<cv::Point> points;
      cv::findNonZero(mask, points);
      ASSERT_FALSE(points.empty());
      cv::Rect extent(points[0], cv::Size(1, 1));
      for (const auto& p : points) extent |= cv::Rect(p, cv::Size(1, 1));
      // A pixel is in when its centre is: a fat shape's extents are within 0.5 px of the vertex
      // extents (+ the 0.2 px grid), but a sharp spike can end short of the next pixel centre,
      // e.g. annotation 1596715 (vertex at x = 5.59, first pixel column 7): allow 1.5 px.
      const auto b = ann["bbox"].get<std::vector<double>>();
      EXPECT_NEAR(extent.x, b[0], 1.5);
      EXPECT_NEAR(extent.y, b[1], 1.5);
      EXPECT_NEAR(extent.x + extent.width, b[0] + b[2], 1.5);
      EXPECT_NEAR(extent.y + extent.height, b[1] + b[3], 1.5);
      const double box_error = std::max({std::abs(extent.x - b[0]), std::abs(extent.y - b[1]),
                                         std::abs(extent.x + extent.width - b[0] - b[2]),
                                         std::abs(extent.y + extent.height - b[1] - b[3])});
      max_box_error = std::max(max_box_error, box_error);
      if (box_error > 1.0) ++beyond_one_px;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 68u);
  // 66 of the 68 boxes agree within 1 px; the two spikes (1596715, 1936676) within 1.41 px.
  EXPECT_LE(beyond_one_px, 2u);
  EXPECT_LT(max_box_error, 1.42);
}

}  // namespace
}  // namespace wico::data
