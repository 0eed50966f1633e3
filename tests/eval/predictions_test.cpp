#include "wico/eval/predictions.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_util.h"
#include "wico/core/error.h"

namespace wico::eval {
namespace {

TEST(Predictions, RoundTripThroughTheFileKeepsMasksExactly) {
  test::TempDir dir;
  cv::Mat1b a = cv::Mat1b::zeros(37, 53), b = cv::Mat1b::zeros(37, 53);
  cv::randu(a, 0, 2);
  b(cv::Rect(5, 6, 20, 10)) = 1;
  const auto file = dir.path() / "predictions.jsonl";
  {
    PredictionWriter w(file);
    w.write({1, 10, 100, 37, 53, {{"fused", encode_mask(a)}, {"top_down", encode_mask(b)}},
             {{"fused", 0.75}}});
    w.write({2, 20, 100, 37, 53, {{"fused", encode_mask(b)}}, {}});
    EXPECT_FALSE(std::filesystem::exists(file));  // only complete files carry the name
    w.close();
  }
  const auto read = read_predictions(file);
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(cv::countNonZero(read[0].mask("fused") != a), 0);
  EXPECT_EQ(cv::countNonZero(read[0].mask("top_down") != b), 0);
  EXPECT_DOUBLE_EQ(read[0].scores.at("fused"), 0.75);
  EXPECT_EQ(read[1].sent_id, 20);
  EXPECT_THAT(test::thrown_message<Error>([&] { read[1].mask("bottom_up"); }),
              ::testing::HasSubstr("has no 'bottom_up' mask (has: fused)"));
}

TEST(Predictions, AnInterruptedWriterLeavesNoFile) {
  test::TempDir dir;
  const auto file = dir.path() / "p.jsonl";
  {
    PredictionWriter w(file);
    w.write({1, 1, 1, 2, 2, {{"fused", encode_mask(cv::Mat1b::ones(2, 2))}}, {}});
  }  // destroyed without close()
  EXPECT_FALSE(std::filesystem::exists(file));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(Predictions, MalformedLinesNameFileAndLine) {
  test::TempDir dir;
  const auto file = dir.write("p.jsonl", "{\"ref_id\": 1}\n");
  EXPECT_THAT(test::thrown_message<Error>([&] { read_predictions(file); }),
              ::testing::HasSubstr("p.jsonl:1: malformed prediction"));
}

TEST(Predictions, SizesOutOfRangeAreErrorsNotConversions) {
  // 1e98 as an int was undefined behaviour inside nlohmann's get<int>() (found by text_fuzz).
  test::TempDir dir;
  const std::string rest = R"(, "masks": {"bottom_up": "62309"}})";
  const auto huge = dir.write(
      "huge.jsonl", R"({"ref_id": 1, "sent_id": 2, "image_id": 3, "height": 1e98, "width": 5)" +
                        rest + "\n");
  EXPECT_THAT(test::thrown_message<Error>([&] { read_predictions(huge); }),
              ::testing::HasSubstr("huge.jsonl:1: \"height\" is 1e+98, not an integer in range"));
  const auto wide = dir.write(
      "wide.jsonl", R"({"ref_id": 1, "sent_id": 2, "image_id": 3, "height": 5, "width": 4294967301)" +
                        rest + "\n");
  EXPECT_THAT(test::thrown_message<Error>([&] { read_predictions(wide); }),
              ::testing::HasSubstr("\"width\" is 4294967301, not an integer in range"));
  // An integral float is an integer.
  const auto fine = dir.write(
      "fine.jsonl", R"({"ref_id": 1, "sent_id": 2, "image_id": 3.0, "height": 5, "width": 5)" +
                        rest + "\n");
  EXPECT_EQ(read_predictions(fine).at(0).image_id, 3);
}

}  // namespace
}  // namespace wico::eval
