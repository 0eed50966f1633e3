#include "wico/data/transforms.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include "wico/core/error.h"

namespace wico::data {
namespace {

TEST(Transforms, LetterboxPlanMatchesCrisAffineMap) {
  // 640 x 480 into 416: scale = min(416/480, 416/640) = 0.65; 416 x 312 centred, 52 px bands.
  const ResizePlan p = plan_resize(640, 480, 416, true);
  EXPECT_DOUBLE_EQ(p.scale_x, 0.65);
  EXPECT_DOUBLE_EQ(p.scale_y, 0.65);
  EXPECT_DOUBLE_EQ(p.offset_x, 0.0);
  EXPECT_DOUBLE_EQ(p.offset_y, 52.0);
  const auto box = map_box({100, 50, 200, 100}, p);
  EXPECT_FLOAT_EQ(box[0], 65.0f);
  EXPECT_FLOAT_EQ(box[1], 50 * 0.65f + 52);
  EXPECT_FLOAT_EQ(box[2], 195.0f);
  EXPECT_FLOAT_EQ(box[3], 150 * 0.65f + 52);
  const cv::Matx23d inv = p.inverse();
  EXPECT_DOUBLE_EQ(inv(1, 2), -52.0 / 0.65);
}

TEST(Transforms, PlainResizeStretchesBothAxes) {
  const ResizePlan p = plan_resize(640, 480, 480, false);
  EXPECT_DOUBLE_EQ(p.scale_x, 0.75);
  EXPECT_DOUBLE_EQ(p.scale_y, 1.0);
  EXPECT_DOUBLE_EQ(p.offset_y, 0.0);
}

TEST(Transforms, LetterboxPadsWithTheMeanSoItNormalisesToZero) {
  const Normalization clip = normalization("clip");
  cv::Mat3b image(100, 200, cv::Vec3b(255, 255, 255));
  const ResizePlan p = plan_resize(200, 100, 64, true);
  const cv::Mat3b out = resize_image(image, p, clip);
  ASSERT_EQ(out.rows, 64);
  const at::Tensor t = image_to_tensor(out, clip);
  EXPECT_EQ(t.sizes(), (at::IntArrayRef{3, 64, 64}));
  // Top band is padding: (round(mean*255)/255 - mean)/std is within half a grey level of 0.
  EXPECT_NEAR(t[0][0][0].item<float>(), 0.0f, 0.01f);
  // White centre pixel, red channel (RGB order): (1 - 0.48145466) / 0.26862954.
  EXPECT_NEAR(t[0][32][32].item<float>(), (1 - 0.48145466f) / 0.26862954f, 1e-4);
}

TEST(Transforms, ImageTensorIsRgbNormalised) {
  cv::Mat3b image(2, 2, cv::Vec3b(0, 0, 255));  // pure red in BGR
  const at::Tensor t = image_to_tensor(image, normalization("imagenet"));
  EXPECT_NEAR(t[0][0][0].item<float>(), (1 - 0.485f) / 0.229f, 1e-5);
  EXPECT_NEAR(t[2][1][1].item<float>(), (0 - 0.406f) / 0.225f, 1e-5);
  EXPECT_THROW(normalization("coco"), ConfigError);
}

TEST(Transforms, MapBackInvertsTheForwardTransform) {
  for (bool letterbox : {false, true}) {
    // A rectangle mask at the original resolution, forward to the input, back again.
    cv::Mat1b mask = cv::Mat1b::zeros(300, 500);
    cv::rectangle(mask, cv::Rect(100, 60, 220, 150), 1, cv::FILLED);
    const ResizePlan p = plan_resize(500, 300, 416, letterbox);
    const cv::Mat1b small = resize_mask(mask, p);
    cv::Mat1f input_map;
    small.convertTo(input_map, CV_32F);
    const cv::Mat1f back = map_back(input_map, p);
    ASSERT_EQ(back.rows, 300);
    ASSERT_EQ(back.cols, 500);
    const cv::Mat1b binary = back > 0.5f;
    const double inter = cv::countNonZero(binary & (mask > 0));
    const double uni = cv::countNonZero(binary | (mask > 0));
    EXPECT_GT(inter / uni, 0.97) << (letterbox ? "letterbox" : "plain");
    // Nothing leaks in from the padding.
    EXPECT_EQ(cv::countNonZero(binary(cv::Rect(0, 0, 500, 40))), 0);
  }
}

}  // namespace
}  // namespace wico::data
