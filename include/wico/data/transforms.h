// Image and mask transforms of the originals, and their exact inverse for evaluation:
//   plain     resize to S x S, aspect ratio not kept (LAVT, 480)
//   letterbox keep the aspect ratio, centre, pad with the normalisation mean (CRIS/VLT, 416):
//             the affine map CRIS builds with cv2.getAffineTransform, cubic for images
// Normalisation constants per backbone pre-training (ImageNet, CLIP). The plain resize
// interpolates with OpenCV or, for LAVT fidelity, exactly as Pillow does (data.resize_filter).
#pragma once

#include <ATen/core/Tensor.h>
#include <opencv2/core.hpp>

#include <array>
#include <string>

namespace wico::data {

struct Normalization {
  std::array<float, 3> mean;  // RGB, on [0, 1]
  std::array<float, 3> std;
};
// "imagenet" or "clip"; anything else is a ConfigError.
Normalization normalization(const std::string& name);

// How the plain resize interpolates. kOpenCv: INTER_LINEAR (images), INTER_NEAREST (masks).
// kPil: Pillow's Image.resize, BILINEAR (antialiased) and NEAREST, as LAVT's torchvision 0.8
// Resize does on PIL images; pixel-exact with Pillow 9.4.
enum class ResizeFilter { kOpenCv, kPil };
// "opencv" or "pil" (data.resize_filter); anything else is a ConfigError.
ResizeFilter parse_resize_filter(const std::string& name);

// How an original image of `width` x `height` maps into the S x S network input.
struct ResizePlan {
  int width = 0, height = 0;  // original
  int size = 0;               // S
  bool letterbox = false;
  ResizeFilter filter = ResizeFilter::kOpenCv;  // plain resize only
  double scale_x = 1, scale_y = 1;
  double offset_x = 0, offset_y = 0;  // letterbox padding (may be fractional, as in CRIS)
  // Input coordinates of an original point: x' = x * scale_x + offset_x.
  cv::Matx23d forward() const;
  cv::Matx23d inverse() const;
};
// kPil with letterbox is a ConfigError: CRIS and VLT letterbox with OpenCV's warpAffine.
void check_resize_filter(bool letterbox, ResizeFilter filter);
// Throws as check_resize_filter does.
ResizePlan plan_resize(int width, int height, int size, bool letterbox,
                       ResizeFilter filter = ResizeFilter::kOpenCv);

// BGR image (as OpenCV reads it) -> S x S BGR, bilinear (plain, plan.filter) or cubic
// (letterbox) with the normalisation mean as fill.
cv::Mat3b resize_image(const cv::Mat3b& image, const ResizePlan& plan, const Normalization& norm);
// 0/1 mask -> S x S by nearest neighbour (the originals resize targets with NEAREST).
cv::Mat1b resize_mask(const cv::Mat1b& mask, const ResizePlan& plan);

// Pillow 9.4's Image.resize of an 8-bit image of any channel count (channels are resampled
// independently, so BGR and RGB give the same pixels), bit-exact (Resample.c, Geometry.c):
//   bilinear: a triangle filter whose support widens by the downscale factor (antialiasing),
//             with 22-bit fixed-point weights; a horizontal pass over only the rows the vertical
//             pass reads, rounded to uint8, then the vertical pass, rounded again.
//   nearest:  output pixel x takes source pixel floor(x0), x0 accumulated from a/2 by a = in/out
//             in double precision, as ImagingScaleAffine does (pixel centres, not OpenCV's
//             floor(x * a)).
// The same size returns a copy. Throws wico::Error for an empty image, a non-8-bit depth or a
// non-positive size.
cv::Mat pil_resize_bilinear(const cv::Mat& image, cv::Size size);
cv::Mat pil_resize_nearest(const cv::Mat& image, cv::Size size);

// Box (x, y, w, h) in original pixels -> (x1, y1, x2, y2) in input pixels.
std::array<float, 4> map_box(const std::array<double, 4>& box, const ResizePlan& plan);

// S x S BGR uint8 -> [3, S, S] float RGB, normalised.
at::Tensor image_to_tensor(const cv::Mat3b& image, const Normalization& norm);
// 0/1 S x S mask -> [S, S] float.
at::Tensor mask_to_tensor(const cv::Mat1b& mask);

// A probability map at input resolution ([S, S] float) -> original resolution ([h, w] float),
// the exact inverse of the forward transform (bilinear; the letterbox padding is dropped).
cv::Mat1f map_back(const cv::Mat1f& input_map, const ResizePlan& plan);

}  // namespace wico::data
