// Image and mask transforms of the originals, and their exact inverse for evaluation:
//   plain     resize to S x S, aspect ratio not kept (LAVT, 480)
//   letterbox keep the aspect ratio, centre, pad with the normalisation mean (CRIS/VLT, 416):
//             the affine map CRIS builds with cv2.getAffineTransform, cubic for images
// Normalisation constants per backbone pre-training (ImageNet, CLIP).
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

// How an original image of `width` x `height` maps into the S x S network input.
struct ResizePlan {
  int width = 0, height = 0;  // original
  int size = 0;               // S
  bool letterbox = false;
  double scale_x = 1, scale_y = 1;
  double offset_x = 0, offset_y = 0;  // letterbox padding (may be fractional, as in CRIS)
  // Input coordinates of an original point: x' = x * scale_x + offset_x.
  cv::Matx23d forward() const;
  cv::Matx23d inverse() const;
};
ResizePlan plan_resize(int width, int height, int size, bool letterbox);

// BGR image (as OpenCV reads it) -> S x S BGR, bilinear (plain) or cubic (letterbox) with the
// normalisation mean as fill.
cv::Mat3b resize_image(const cv::Mat3b& image, const ResizePlan& plan, const Normalization& norm);
// 0/1 mask -> S x S by nearest neighbour (the originals resize targets with NEAREST).
cv::Mat1b resize_mask(const cv::Mat1b& mask, const ResizePlan& plan);
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
