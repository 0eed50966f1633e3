// Image and mask transforms of the originals, and their exact inverse for evaluation:
//   plain     resize to S x S, aspect ratio not kept (LAVT, 480)
//   letterbox keep the aspect ratio, centre, pad with the normalisation mean (CRIS, 416):
//             the affine map CRIS builds with cv2.getAffineTransform, cubic for images
//   paste     MCN/VLT's letterbox (416): the image resized (cubic) to int(w * s) x int(h * s),
//             s = min(S / w, S / h), pasted at ((S - nw) // 2, (S - nh) // 2) on a canvas of
//             the normalisation's fill colour; the map back crops that rectangle and resizes it
//   shortest_edge  detectron2's ResizeShortestEdge (Mask2Former's test-time 800 / 1333): aspect
//             kept, the image at the top left of a canvas padded to a multiple of 32 (and to the
//             batch's largest), the padding 0 after normalising as ImageList pads; not square
//   lsj       Mask2Former's large-scale jitter for instance training (RandomFlip, ResizeScale
//             0.1-2.0 of S, FixedSizeCrop S with padding 128): training only
// Normalisation constants per backbone pre-training (ImageNet, CLIP). The plain resize
// interpolates with OpenCV or, for LAVT fidelity, exactly as Pillow does (data.resize_filter).
#pragma once

#include <ATen/core/Tensor.h>
#include <opencv2/core.hpp>

#include <array>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace wico::data {

struct Normalization {
  std::array<float, 3> mean;  // RGB, on [0, 1]
  std::array<float, 3> std;
  // The paste letterbox's border on [0, 1], every channel, written after normalising (exact
  // where a byte could not hold it: VLT's 0.5); negative: the mean.
  float fill = -1.0f;
};
// "imagenet", "clip" or "vlt" (pixels / 255 as they are, border 0.5: VLT's loader); anything
// else is a ConfigError.
Normalization normalization(const std::string& name);

// How the plain resize interpolates. kOpenCv: INTER_LINEAR (images), INTER_NEAREST (masks).
// kPil: Pillow's Image.resize, BILINEAR (antialiased) and NEAREST, as LAVT's torchvision 0.8
// Resize does on PIL images; pixel-exact with Pillow 9.4.
enum class ResizeFilter { kOpenCv, kPil };
// "opencv" or "pil" (data.resize_filter); anything else is a ConfigError.
ResizeFilter parse_resize_filter(const std::string& name);

enum class ResizeKind { kPlain, kLetterbox, kShortestEdge, kLsj, kPaste };

// How an original image of `width` x `height` maps into the network input (S x S, or the
// canvas of a shortest-edge batch).
struct ResizePlan {
  int width = 0, height = 0;  // original
  int size = 0;               // S (shortest_edge: the shorter side's target)
  ResizeKind kind = ResizeKind::kPlain;
  ResizeFilter filter = ResizeFilter::kOpenCv;  // plain and shortest_edge resizes
  double scale_x = 1, scale_y = 1;
  double offset_x = 0, offset_y = 0;  // letterbox padding (may be fractional, as in CRIS)
                                      // paste: the whole-pixel corner, scale: nw / w, nh / h
  // shortest_edge and lsj: the image's size after the resize; lsj: the crop's top-left corner
  // in the resized image and whether the image was flipped first.
  int resized_width = 0, resized_height = 0;
  int crop_x = 0, crop_y = 0;
  bool flip = false;
  // The network input's size: S x S, except shortest_edge (its padded canvas; the collated
  // batch's canvas once batched).
  int canvas_width = 0, canvas_height = 0;
  int input_width() const { return canvas_width > 0 ? canvas_width : size; }
  int input_height() const { return canvas_height > 0 ? canvas_height : size; }
  // Input coordinates of an original point: x' = x * scale_x + offset_x (lsj: of the flipped
  // point, offset = -crop).
  cv::Matx23d forward() const;
  cv::Matx23d inverse() const;
};
// kPil with letterbox is a ConfigError: CRIS and VLT letterbox with OpenCV's warpAffine.
void check_resize_filter(bool letterbox, ResizeFilter filter);
// Throws as check_resize_filter does.
ResizePlan plan_resize(int width, int height, int size, bool letterbox,
                       ResizeFilter filter = ResizeFilter::kOpenCv);

// MCN/VLT's letterbox: resized_width/height = int(w * s), int(h * s), offsets (S - nw) // 2 and
// (S - nh) // 2.
ResizePlan plan_paste(int width, int height, int size);

// detectron2's ResizeShortestEdge.get_output_shape: the shorter side to `min_size`, unless the
// longer would then pass `max_size` (then the longer to max_size), both rounded as int(x + 0.5);
// the canvas each side rounded up to `size_divisibility`.
ResizePlan plan_shortest_edge(int width, int height, int min_size, int max_size,
                              int size_divisibility, ResizeFilter filter = ResizeFilter::kPil);
// LSJ of an image: flipped first when `flip`, resized to fit a (size * scale) square (sides
// np.round'ed, as ResizeScale), cropped to size x size at `crop_fraction` of the overhang (one
// fraction for both axes, rounded, as FixedSizeCrop), padded to size x size.
ResizePlan plan_lsj(int width, int height, int size, double scale, double crop_fraction,
                    bool flip);
// The random draws of one LSJ sample.
struct LsjDraw {
  double scale = 1.0, crop_fraction = 0.0;
  bool flip = false;
};

// BGR image (as OpenCV reads it) -> the input: S x S BGR, bilinear (plain, plan.filter) or cubic
// (letterbox) with the normalisation mean as fill; shortest_edge: the resized image alone
// (Pillow's bilinear by default, as detectron2's ResizeTransform; the caller pads); lsj: flipped,
// Pillow-resized, cropped, padded with 128 (FixedSizeCrop's pad_value).
cv::Mat3b resize_image(const cv::Mat3b& image, const ResizePlan& plan, const Normalization& norm);
// 0/1 mask -> S x S by nearest neighbour (the originals resize targets with NEAREST);
// shortest_edge: the resized mask alone; lsj: flipped, resized, cropped, padded with 0.
cv::Mat1b resize_mask(const cv::Mat1b& mask, const ResizePlan& plan);
// CRIS's soft training target: the 0/1 mask as a 0/255 image resampled bilinearly (the
// letterbox's warp with INTER_LINEAR, border 0; plain and shortest_edge by cv::resize), 0..255
// with fractional edges; divide by 255. Not for lsj plans.
cv::Mat1b resize_soft_mask(const cv::Mat1b& mask, const ResizePlan& plan);
// An annotation's mask in the input of an lsj or shortest-edge plan as detectron2 makes it:
// polygons transformed point by point and rasterised at the new size (pycocotools' rule),
// an RLE through resize_mask. Other plans: resize_mask of the original-size mask.
cv::Mat1b transform_annotation_mask(const nlohmann::json& segmentation, const ResizePlan& plan);

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
// the exact inverse of the forward transform (the letterbox padding is dropped), bilinear or
// bicubic (CRIS's test.py warps back with INTER_CUBIC; eval.compat cris).
enum class MapBackFilter { kLinear, kCubic };
cv::Mat1f map_back(const cv::Mat1f& input_map, const ResizePlan& plan,
                   MapBackFilter filter = MapBackFilter::kLinear);

}  // namespace wico::data
