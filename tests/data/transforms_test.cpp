#include "wico/data/transforms.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "wico/core/error.h"
#include "wico/data/coco_mask.h"

namespace wico::data {
namespace {

// Fixtures of scripts/make_pil_resize_fixtures.py: inputs and Pillow 9.4's resizes of them.
const std::string kPilDir = std::string(WICO_TEST_DATA_DIR) + "/pil_resize/";

cv::Mat read_fixture(const std::string& name, int flags) {
  const cv::Mat m = cv::imread(kPilDir + name, flags);
  if (m.empty()) throw std::runtime_error("cannot read test fixture " + kPilDir + name);
  return m;
}

std::string pil_name(const std::string& input, cv::Size size) {
  return input + "_to_" + std::to_string(size.width) + "x" + std::to_string(size.height) + ".png";
}

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

// MCN/VLT's letterbox (loader.py): nw = int(w * s), nh = int(h * s), s = min(S / w, S / h),
// corner ((S - nw) // 2, (S - nh) // 2); the image resized with INTER_CUBIC and pasted there,
// the rest the fill; the map back crops that rectangle and resizes it (callbacks/eval.py).
TEST(Transforms, PastePlanAndImageAsVltLoader) {
  const ResizePlan plan = plan_paste(301, 200, 416);
  EXPECT_EQ(plan.kind, ResizeKind::kPaste);
  EXPECT_EQ(plan.resized_width, 416);                      // int(301 * 416 / 301)
  EXPECT_EQ(plan.resized_height, static_cast<int>(200 * (416.0 / 301)));  // 276
  EXPECT_EQ(plan.offset_x, 0);
  EXPECT_EQ(plan.offset_y, (416 - 276) / 2);               // 70
  cv::Mat3b image(200, 301);
  cv::randu(image, 0, 255);
  const Normalization vlt = normalization("vlt");
  const cv::Mat3b out = resize_image(image, plan, vlt);
  cv::Mat3b expected;
  cv::resize(image, expected, cv::Size(416, 276), 0, 0, cv::INTER_CUBIC);
  EXPECT_EQ(cv::norm(out(cv::Rect(0, 70, 416, 276)), expected, cv::NORM_INF), 0.0);
  EXPECT_EQ(out(10, 5), cv::Vec3b(128, 128, 128));  // 0.5 rounded; the loader writes 0.5 exactly
  // The map back: the pasted rectangle alone, resized linearly to the image.
  cv::Mat1f map(416, 416, 0.0f);
  map(cv::Rect(0, 70, 416, 276)).setTo(1.0f);
  const cv::Mat1f back = map_back(map, plan);
  ASSERT_EQ(back.size(), cv::Size(301, 200));
  EXPECT_EQ(cv::countNonZero(back != 1.0f), 0);
  // The soft target: the 0/255 mask resized INTER_CUBIC as bytes, pasted on zeros.
  cv::Mat1b mask(200, 301, std::uint8_t{0});
  cv::rectangle(mask, cv::Rect(40, 30, 100, 50), 1, cv::FILLED);
  cv::Mat1b cubic;
  cv::resize(cv::Mat1b(mask * 255), cubic, cv::Size(416, 276), 0, 0, cv::INTER_CUBIC);
  const cv::Mat1b soft = resize_soft_mask(mask, plan);
  EXPECT_EQ(cv::norm(soft(cv::Rect(0, 70, 416, 276)), cubic, cv::NORM_INF), 0.0);
  EXPECT_EQ(cv::countNonZero(soft(cv::Rect(0, 0, 416, 70))), 0);
  EXPECT_EQ(normalization("vlt").fill, 0.5f);
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
  for (const MapBackFilter filter : {MapBackFilter::kLinear, MapBackFilter::kCubic}) {
  for (bool letterbox : {false, true}) {
    // A rectangle mask at the original resolution, forward to the input, back again.
    cv::Mat1b mask = cv::Mat1b::zeros(300, 500);
    cv::rectangle(mask, cv::Rect(100, 60, 220, 150), 1, cv::FILLED);
    const ResizePlan p = plan_resize(500, 300, 416, letterbox);
    const cv::Mat1b small = resize_mask(mask, p);
    cv::Mat1f input_map;
    small.convertTo(input_map, CV_32F);
    const cv::Mat1f back = map_back(input_map, p, filter);
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
}

// CRIS's inverse warp is bicubic (OpenCV's A = -0.75). An 8x4 image letterboxed into 4: scale
// 0.5, band rows 1-2; output (row 0, column 3) reads the input at (x 1.5, y 1): along x the
// cubic weights at t = 0.5 are -0.09375, 0.59375, 0.59375, -0.09375 over columns 0-3 holding
// 1, 2, 4, 8 -> 2.71875, where bilinear gives 3.
TEST(Transforms, MapBackCubicIsOpenCvsBicubic) {
  const ResizePlan p = plan_resize(8, 4, 4, true);
  ASSERT_DOUBLE_EQ(p.scale_x, 0.5);
  ASSERT_DOUBLE_EQ(p.offset_y, 1.0);
  cv::Mat1f input(4, 4);
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) input(y, x) = static_cast<float>(1 << x);
  }
  EXPECT_NEAR(map_back(input, p, MapBackFilter::kCubic)(0, 3), 2.71875f, 1e-4);
  EXPECT_NEAR(map_back(input, p, MapBackFilter::kLinear)(0, 3), 3.0f, 1e-4);
}

// CRIS's soft training masks: the 0/255 mask resampled bilinearly, fractions kept. A 4x4 mask
// with its left half set, doubled: output column 3 reads source x 1.25 (half-pixel centres),
// 0.75 * 255 + 0.25 * 0 = 191.25 -> 191; column 4 reads x 1.75 -> 63.75 -> 64.
TEST(Transforms, SoftMaskKeepsFractionalEdges) {
  cv::Mat1b mask = cv::Mat1b::zeros(4, 4);
  mask(cv::Rect(0, 0, 2, 4)).setTo(1);
  const ResizePlan plain = plan_resize(4, 4, 8, false);
  const cv::Mat1b soft = resize_soft_mask(mask, plain);
  ASSERT_EQ(soft.rows, 8);
  EXPECT_EQ(soft(2, 0), 255);
  EXPECT_EQ(soft(2, 3), 191);
  EXPECT_EQ(soft(2, 4), 64);
  EXPECT_EQ(soft(2, 7), 0);
  // The letterbox warps it (INTER_LINEAR, border 0): a full mask of a 4x2 image into 8 keeps
  // 255 inside the band and 0 outside it.
  const ResizePlan box = plan_resize(4, 2, 8, true);
  const cv::Mat1b warped = resize_soft_mask(cv::Mat1b::ones(2, 4), box);
  EXPECT_EQ(warped(4, 4), 255);
  EXPECT_EQ(warped(0, 4), 0);
  EXPECT_THROW(resize_soft_mask(mask, plan_lsj(4, 4, 8, 1.0, 0.0, false)), Error);
}

// detectron2's ResizeShortestEdge.get_output_shape, by hand: 640x480 -> short side 800, long
// 1066.67 -> 1067 (int(x + 0.5)); a tall 500x2000 hits the 1333 cap: 333.25 -> 333 wide.
TEST(Transforms, ShortestEdgePlanAsDetectron2) {
  const ResizePlan a = plan_shortest_edge(640, 480, 800, 1333, 32);
  EXPECT_EQ(a.kind, ResizeKind::kShortestEdge);
  EXPECT_EQ(a.resized_width, 1067);
  EXPECT_EQ(a.resized_height, 800);
  EXPECT_EQ(a.input_width(), 1088);   // 34 x 32
  EXPECT_EQ(a.input_height(), 800);   // 25 x 32
  EXPECT_DOUBLE_EQ(a.scale_x, 1067.0 / 640.0);
  const ResizePlan b = plan_shortest_edge(500, 2000, 800, 1333, 32);
  EXPECT_EQ(b.resized_width, 333);
  EXPECT_EQ(b.resized_height, 1333);
  EXPECT_EQ(b.input_width(), 352);
  EXPECT_EQ(b.input_height(), 1344);
  // The image at the top left; map_back reads that part of the canvas alone.
  const cv::Mat3b image(480, 640, cv::Vec3b(10, 20, 30));
  const cv::Mat3b resized = resize_image(image, a, normalization("imagenet"));
  EXPECT_EQ(resized.size(), cv::Size(1067, 800));
  cv::Mat1f canvas(800, 1088, 5.0f);
  canvas(cv::Rect(0, 0, 1067, 800)).setTo(1.0f);
  const cv::Mat1f back = map_back(canvas, a);
  EXPECT_EQ(back.size(), cv::Size(640, 480));
  EXPECT_EQ(cv::countNonZero(back != 1.0f), 0);
}

// LSJ's plan by hand: ResizeScale fits a (1024 x scale)^2 square, FixedSizeCrop takes one fraction
// of each overhang (np.round), flips come first.
TEST(Transforms, LsjPlanScalesCropsAndFlipsAsMask2Former) {
  const ResizePlan small = plan_lsj(640, 480, 1024, 0.5, 0.3, false);
  EXPECT_EQ(small.resized_width, 512);   // fit min(512 / 480, 512 / 640) = 0.8
  EXPECT_EQ(small.resized_height, 384);
  EXPECT_EQ(small.crop_x, 0);            // no overhang: padded instead
  EXPECT_EQ(small.crop_y, 0);
  const ResizePlan big = plan_lsj(640, 480, 1024, 2.0, 0.5, true);
  EXPECT_EQ(big.resized_width, 2048);    // fit 3.2
  EXPECT_EQ(big.resized_height, 1536);
  EXPECT_EQ(big.crop_x, 512);            // round(1024 x 0.5)
  EXPECT_EQ(big.crop_y, 256);            // round(512 x 0.5): the same fraction
  // Forward map of an original point: flipped (x -> 640 - x), scaled, shifted by the crop.
  const cv::Matx23d f = big.forward();
  EXPECT_NEAR(f(0, 0) * 100 + f(0, 2), (640 - 100) * 3.2 - 512, 1e-9);
  EXPECT_NEAR(f(1, 1) * 100 + f(1, 2), 100 * 3.2 - 256, 1e-9);
  // The image: flipped, resized, padded with 128 past the resized image.
  cv::Mat3b image(480, 640, cv::Vec3b(0, 0, 0));
  image(cv::Rect(0, 0, 320, 480)).setTo(cv::Vec3b(200, 200, 200));  // the left half bright
  const cv::Mat3b out = resize_image(image, small, normalization("imagenet"));
  EXPECT_EQ(out.size(), cv::Size(1024, 1024));
  EXPECT_EQ(out(10, 10), cv::Vec3b(200, 200, 200));  // flip off: the left half stays left
  EXPECT_EQ(out(10, 500), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(out(500, 10), cv::Vec3b(128, 128, 128));  // below the 384 rows: padding
  const cv::Mat3b flipped = resize_image(image, plan_lsj(640, 480, 1024, 0.5, 0.3, true),
                                         normalization("imagenet"));
  EXPECT_EQ(flipped(10, 10), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(flipped(10, 500), cv::Vec3b(200, 200, 200));
  EXPECT_THROW(map_back(cv::Mat1f(1024, 1024, 0.0f), small), Error);
}

// A polygon is transformed point by point and rasterised at the crop, as detectron2 does; for a
// box-aligned rectangle that is the same mask as resizing the flipped bitmap.
TEST(Transforms, LsjPolygonsAreTransformedAndRasterised) {
  const nlohmann::json polygon = nlohmann::json::parse("[[10, 10, 30, 10, 30, 20, 10, 20]]");
  // 100x50 image, scale 2 of 100: fit min(200 / 50, 200 / 100) = 2 -> 200x100, overhang 100 in
  // x cropped at fraction 1; flipped: x in [10, 30) -> [70, 90) -> [140, 180) -> [40, 80).
  const ResizePlan plan = plan_lsj(100, 50, 100, 2.0, 1.0, true);
  ASSERT_EQ(plan.crop_x, 100);
  const cv::Mat1b m = transform_annotation_mask(polygon, plan);
  ASSERT_EQ(m.size(), cv::Size(100, 100));
  EXPECT_EQ(cv::boundingRect(m), cv::Rect(40, 20, 40, 20));
  EXPECT_EQ(cv::countNonZero(m), 40 * 20);
  const cv::Mat1b bitmap = resize_mask(annotation_to_mask(polygon, 50, 100), plan);
  EXPECT_EQ(cv::countNonZero(m != bitmap), 0);
}

TEST(TransformsPil, BilinearMatchesPillowExactly) {
  double worst = 0;
  for (const std::string input : {"noise_37x53", "smooth_64x48"}) {
    // OpenCV reads BGR, PIL wrote RGB: Pillow resamples each channel alone, so they agree.
    const cv::Mat3b image = read_fixture(input + ".png", cv::IMREAD_COLOR);
    for (const cv::Size size : {cv::Size(24, 24), cv::Size(96, 96), cv::Size(45, 19)}) {
      SCOPED_TRACE(pil_name(input, size));
      const cv::Mat3b expected = read_fixture(pil_name(input, size), cv::IMREAD_COLOR);
      const cv::Mat out = pil_resize_bilinear(image, size);
      ASSERT_EQ(out.size(), expected.size());
      ASSERT_EQ(out.type(), CV_8UC3);
      const double difference = cv::norm(out, expected, cv::NORM_INF);
      worst = std::max(worst, difference);
      EXPECT_EQ(difference, 0.0);
      // One channel alone (mode "L" in Pillow) gives that channel.
      cv::Mat channel, expected_channel;
      cv::extractChannel(image, channel, 1);
      cv::extractChannel(expected, expected_channel, 1);
      EXPECT_EQ(cv::norm(pil_resize_bilinear(channel, size), expected_channel, cv::NORM_INF), 0.0);
      if (size.width == size.height) {  // the loader's entry point, data.resize_filter: pil
        const ResizePlan p =
            plan_resize(image.cols, image.rows, size.width, false, ResizeFilter::kPil);
        EXPECT_EQ(cv::norm(resize_image(image, p, normalization("imagenet")), expected,
                           cv::NORM_INF),
                  0.0);
      }
    }
  }
  std::cout << "pil resize vs Pillow 9.4: max |diff| " << worst << " grey levels\n";
}

TEST(TransformsPil, NearestMatchesPillowExactly) {
  const cv::Mat1b mask = read_fixture("mask_50x30.png", cv::IMREAD_GRAYSCALE);
  double lo = 0, hi = 0;
  cv::minMaxLoc(mask, &lo, &hi);
  ASSERT_EQ(hi, 1.0);  // 0/1 values, not a palette or 0/255
  for (const cv::Size size : {cv::Size(20, 20), cv::Size(96, 96), cv::Size(45, 19)}) {
    SCOPED_TRACE(pil_name("mask_50x30", size));
    const cv::Mat1b expected = read_fixture(pil_name("mask_50x30", size), cv::IMREAD_GRAYSCALE);
    const cv::Mat out = pil_resize_nearest(mask, size);
    ASSERT_EQ(out.size(), expected.size());
    ASSERT_EQ(out.type(), CV_8UC1);
    EXPECT_EQ(cv::countNonZero(out != expected), 0);
    if (size.width == size.height) {
      const ResizePlan p = plan_resize(mask.cols, mask.rows, size.width, false, ResizeFilter::kPil);
      EXPECT_EQ(cv::countNonZero(resize_mask(mask, p) != expected), 0);
    }
  }
}

TEST(TransformsPil, OpenCvDiffersFromPillowOnNoise) {
  // The reason for data.resize_filter: OpenCV's INTER_LINEAR does not antialias a downscale and
  // INTER_NEAREST samples floor(x * a) instead of pixel centres.
  const cv::Mat3b image = read_fixture("noise_37x53.png", cv::IMREAD_COLOR);
  const cv::Mat3b expected = read_fixture("noise_37x53_to_24x24.png", cv::IMREAD_COLOR);
  const ResizePlan opencv = plan_resize(image.cols, image.rows, 24, false);
  EXPECT_EQ(opencv.filter, ResizeFilter::kOpenCv);
  const double difference =
      cv::norm(resize_image(image, opencv, normalization("imagenet")), expected, cv::NORM_INF);
  EXPECT_GT(difference, 3.0);
  const cv::Mat3b smooth = read_fixture("smooth_64x48.png", cv::IMREAD_COLOR);
  const cv::Mat3b smooth_expected = read_fixture("smooth_64x48_to_24x24.png", cv::IMREAD_COLOR);
  const double smooth_difference =
      cv::norm(resize_image(smooth, plan_resize(64, 48, 24, false), normalization("imagenet")),
               smooth_expected, cv::NORM_INF);
  const cv::Mat1b mask = read_fixture("mask_50x30.png", cv::IMREAD_GRAYSCALE);
  const cv::Mat1b mask_expected = read_fixture("mask_50x30_to_20x20.png", cv::IMREAD_GRAYSCALE);
  const int mask_pixels = cv::countNonZero(resize_mask(mask, plan_resize(50, 30, 20, false)) !=
                                           mask_expected);
  EXPECT_GT(mask_pixels, 0);
  std::cout << "opencv resize vs Pillow 9.4 (to 24x24): noise max |diff| " << difference
            << ", smooth max |diff| " << smooth_difference << "; mask to 20x20: " << mask_pixels
            << " of 400 pixels differ\n";
}

TEST(TransformsPil, EdgeCasesAndErrors) {
  const cv::Mat3b image(5, 7, cv::Vec3b(10, 20, 30));
  // Same size: a copy; one axis only: the other is left alone; a constant stays constant.
  EXPECT_EQ(cv::norm(pil_resize_bilinear(image, image.size()), image, cv::NORM_INF), 0.0);
  const cv::Mat wide = pil_resize_bilinear(image, cv::Size(13, 5));
  ASSERT_EQ(wide.size(), cv::Size(13, 5));
  EXPECT_EQ(cv::norm(wide, cv::Mat3b(5, 13, cv::Vec3b(10, 20, 30)), cv::NORM_INF), 0.0);
  const cv::Mat tall = pil_resize_bilinear(image, cv::Size(7, 2));
  EXPECT_EQ(cv::norm(tall, cv::Mat3b(2, 7, cv::Vec3b(10, 20, 30)), cv::NORM_INF), 0.0);
  EXPECT_EQ(pil_resize_nearest(image, cv::Size(1, 1)).size(), cv::Size(1, 1));
  EXPECT_THROW(pil_resize_bilinear(cv::Mat1f(3, 3, 0.5f), cv::Size(2, 2)), Error);
  EXPECT_THROW(pil_resize_nearest(image, cv::Size(0, 4)), Error);
  EXPECT_THROW(plan_resize(640, 480, 416, true, ResizeFilter::kPil), ConfigError);
  EXPECT_EQ(parse_resize_filter("pil"), ResizeFilter::kPil);
  EXPECT_EQ(parse_resize_filter("opencv"), ResizeFilter::kOpenCv);
  EXPECT_THROW(parse_resize_filter("PIL"), ConfigError);
}

}  // namespace
}  // namespace wico::data
