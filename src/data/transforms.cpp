#include "wico/data/transforms.h"

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "wico/core/error.h"
#include "wico/data/coco_mask.h"

namespace wico::data {
namespace {

// Pillow's fixed-point weights (Resample.c): 32 bits less 8 for the pixel and 2 for the sign and
// the overshoot of weights that do not sum to exactly one.
constexpr int kPilPrecisionBits = 32 - 8 - 2;

// One axis of a Pillow resample (precompute_coeffs + normalize_coeffs_8bpc for BILINEAR, box =
// the whole image): output pixel i reads `count[i]` source pixels from `first[i]` with weights
// weights[i * ksize ...].
struct PilAxis {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<std::int32_t> weights;
};

double pil_triangle(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Every step in Pillow's order and precision: the weights are rounded to fixed point after
// normalising in double, and the bounds are C casts (truncation), so reordering would change
// pixels.
PilAxis pil_axis(int in_size, int out_size) {
  PilAxis axis;
  // Pillow computes (in1 - in0) in float: exact for any image size below 2^24.
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;  // BILINEAR's support is 1
  axis.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  axis.first.resize(out_size);
  axis.count.resize(out_size);
  axis.weights.assign(static_cast<std::size_t>(out_size) * axis.ksize, 0);
  std::vector<double> k(axis.ksize);
  const double ss = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const int xmin = std::max(0, static_cast<int>(center - support + 0.5));
    const int xmax = std::min(in_size, static_cast<int>(center + support + 0.5)) - xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = pil_triangle((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    std::int32_t* out = &axis.weights[static_cast<std::size_t>(xx) * axis.ksize];
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? k[x] / ww : k[x];
      out[x] = static_cast<std::int32_t>(v < 0 ? -0.5 + v * (1 << kPilPrecisionBits)
                                               : 0.5 + v * (1 << kPilPrecisionBits));
    }
    axis.first[xx] = xmin;
    axis.count[xx] = std::max(xmax, 0);
  }
  return axis;
}

std::uint8_t pil_clip8(std::int32_t v) {
  if (v >= (1 << kPilPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return static_cast<std::uint8_t>(v >> kPilPrecisionBits);
}

// ImagingResampleHorizontal_8bpc: out row y from source row y + row_offset.
void pil_horizontal(const cv::Mat& in, cv::Mat& out, int row_offset, const PilAxis& axis) {
  const int channels = in.channels();
  for (int y = 0; y < out.rows; ++y) {
    const std::uint8_t* src = in.ptr<std::uint8_t>(y + row_offset);
    std::uint8_t* dst = out.ptr<std::uint8_t>(y);
    for (int xx = 0; xx < out.cols; ++xx) {
      const std::int32_t* k = &axis.weights[static_cast<std::size_t>(xx) * axis.ksize];
      const std::uint8_t* base = src + static_cast<std::size_t>(axis.first[xx]) * channels;
      for (int c = 0; c < channels; ++c) {
        std::int32_t ss = 1 << (kPilPrecisionBits - 1);
        for (int x = 0; x < axis.count[xx]; ++x) {
          ss += static_cast<std::int32_t>(base[x * channels + c]) * k[x];
        }
        dst[xx * channels + c] = pil_clip8(ss);
      }
    }
  }
}

// ImagingResampleVertical_8bpc: out row yy from source rows first[yy] ... (the channels
// interleaved along a row are independent values here).
void pil_vertical(const cv::Mat& in, cv::Mat& out, const PilAxis& axis) {
  const int values = out.cols * out.channels();
  std::vector<const std::uint8_t*> rows;
  for (int yy = 0; yy < out.rows; ++yy) {
    const std::int32_t* k = &axis.weights[static_cast<std::size_t>(yy) * axis.ksize];
    rows.clear();
    for (int y = 0; y < axis.count[yy]; ++y) {
      rows.push_back(in.ptr<std::uint8_t>(axis.first[yy] + y));
    }
    std::uint8_t* dst = out.ptr<std::uint8_t>(yy);
    for (int i = 0; i < values; ++i) {
      std::int32_t ss = 1 << (kPilPrecisionBits - 1);
      for (std::size_t y = 0; y < rows.size(); ++y) {
        ss += static_cast<std::int32_t>(rows[y][i]) * k[y];
      }
      dst[i] = pil_clip8(ss);
    }
  }
}

void check_pil_input(const cv::Mat& image, cv::Size size, const char* what) {
  WICO_CHECK(!image.empty() && image.depth() == CV_8U, what,
             ": needs a non-empty 8-bit image, got ", image.cols, "x", image.rows, " of depth ",
             image.depth());
  WICO_CHECK(size.width > 0 && size.height > 0, what, ": cannot resize to ", size.width, "x",
             size.height);
}

}  // namespace

ResizeFilter parse_resize_filter(const std::string& name) {
  if (name == "opencv") return ResizeFilter::kOpenCv;
  if (name == "pil") return ResizeFilter::kPil;
  throw ConfigError("unknown resize filter '" + name +
                    "' (data.resize_filter); valid: opencv, pil");
}

cv::Mat pil_resize_bilinear(const cv::Mat& image, cv::Size size) {
  check_pil_input(image, size, "pil_resize_bilinear");
  if (image.size() == size) return image.clone();  // _resize copies
  const PilAxis horizontal = pil_axis(image.cols, size.width);
  PilAxis vertical = pil_axis(image.rows, size.height);
  // ImagingResampleInner: the horizontal pass computes only the source rows the vertical pass
  // reads, and the vertical bounds are shifted into that band.
  const int band_first = vertical.first.front();
  const int band_end = vertical.first.back() + vertical.count.back();
  cv::Mat current = image;
  if (size.width != image.cols) {
    for (int& f : vertical.first) f -= band_first;
    cv::Mat band(band_end - band_first, size.width, image.type());
    pil_horizontal(image, band, band_first, horizontal);
    current = band;
  }
  if (size.height != image.rows) {
    cv::Mat out(size.height, current.cols, image.type());
    pil_vertical(current, out, vertical);
    current = out;
  }
  return current;
}

cv::Mat pil_resize_nearest(const cv::Mat& image, cv::Size size) {
  check_pil_input(image, size, "pil_resize_nearest");
  if (image.size() == size) return image.clone();
  // _resize's affine matrix and ImagingScaleAffine's walk: the coordinate is accumulated (not
  // multiplied), and COORD truncates; out-of-range sources stay 0 (fill), as in Pillow.
  const double ax = static_cast<double>(image.cols) / size.width;
  const double ay = static_cast<double>(image.rows) / size.height;
  auto coord = [](double v) { return v < 0.0 ? -1 : static_cast<int>(v); };
  std::vector<int> xin(size.width, 0);
  int xmin = size.width, xmax = 0;
  double xo = ax * 0.5;
  for (int x = 0; x < size.width; ++x) {
    const int xi = coord(xo);
    if (xi >= 0 && xi < image.cols) {
      xmax = x + 1;
      xmin = std::min(xmin, x);
      xin[x] = xi;
    }
    xo += ax;
  }
  const std::size_t pixel = image.elemSize();
  cv::Mat out = cv::Mat::zeros(size, image.type());
  double yo = ay * 0.5;
  for (int y = 0; y < size.height; ++y) {
    const int yi = coord(yo);
    if (yi >= 0 && yi < image.rows) {
      const std::uint8_t* src = image.ptr<std::uint8_t>(yi);
      std::uint8_t* dst = out.ptr<std::uint8_t>(y);
      for (int x = xmin; x < xmax; ++x) {
        std::memcpy(dst + x * pixel, src + static_cast<std::size_t>(xin[x]) * pixel, pixel);
      }
    }
    yo += ay;
  }
  return out;
}

Normalization normalization(const std::string& name) {
  if (name == "imagenet") return {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
  if (name == "clip") {
    return {{0.48145466f, 0.4578275f, 0.40821073f}, {0.26862954f, 0.26130258f, 0.27577711f}};
  }
  if (name == "vlt") return {{0.0f, 0.0f, 0.0f}, {1.0f, 1.0f, 1.0f}, 0.5f};
  throw ConfigError("unknown normalisation '" + name +
                    "' (data.normalize); valid: clip, imagenet, vlt");
}

cv::Matx23d ResizePlan::forward() const {
  if (flip) return {-scale_x, 0, scale_x * width + offset_x, 0, scale_y, offset_y};
  return {scale_x, 0, offset_x, 0, scale_y, offset_y};
}

cv::Matx23d ResizePlan::inverse() const {
  if (flip) {
    return {-1.0 / scale_x, 0, width + offset_x / scale_x, 0, 1.0 / scale_y, -offset_y / scale_y};
  }
  return {1.0 / scale_x, 0, -offset_x / scale_x, 0, 1.0 / scale_y, -offset_y / scale_y};
}

void check_resize_filter(bool letterbox, ResizeFilter filter) {
  if (letterbox && filter == ResizeFilter::kPil) {
    throw ConfigError("data.resize_filter: pil reproduces LAVT's plain resize; the letterbox "
                      "(CRIS, VLT) warps with OpenCV as they do (use data.resize_filter: opencv)");
  }
}

ResizePlan plan_resize(int width, int height, int size, bool letterbox, ResizeFilter filter) {
  WICO_CHECK(width > 0 && height > 0 && size > 0, "cannot resize a ", width, "x", height,
             " image to ", size);
  check_resize_filter(letterbox, filter);
  ResizePlan plan;
  plan.width = width;
  plan.height = height;
  plan.size = size;
  plan.kind = letterbox ? ResizeKind::kLetterbox : ResizeKind::kPlain;
  plan.filter = filter;
  if (letterbox) {
    const double scale = std::min(static_cast<double>(size) / height,
                                  static_cast<double>(size) / width);
    plan.scale_x = plan.scale_y = scale;
    plan.offset_x = (size - width * scale) / 2.0;
    plan.offset_y = (size - height * scale) / 2.0;
  } else {
    plan.scale_x = static_cast<double>(size) / width;
    plan.scale_y = static_cast<double>(size) / height;
  }
  return plan;
}

ResizePlan plan_paste(int width, int height, int size) {
  WICO_CHECK(width > 0 && height > 0 && size > 0, "cannot resize a ", width, "x", height,
             " image to ", size);
  ResizePlan plan;
  plan.width = width;
  plan.height = height;
  plan.size = size;
  plan.kind = ResizeKind::kPaste;
  // loader.py: scale = min(w / iw, h / ih); nw = int(iw * scale); dx = (w - nw) // 2.
  const double scale = std::min(static_cast<double>(size) / width,
                                static_cast<double>(size) / height);
  plan.resized_width = std::max(1, static_cast<int>(width * scale));
  plan.resized_height = std::max(1, static_cast<int>(height * scale));
  plan.offset_x = (size - plan.resized_width) / 2;
  plan.offset_y = (size - plan.resized_height) / 2;
  plan.scale_x = static_cast<double>(plan.resized_width) / width;
  plan.scale_y = static_cast<double>(plan.resized_height) / height;
  return plan;
}

ResizePlan plan_shortest_edge(int width, int height, int min_size, int max_size,
                              int size_divisibility, ResizeFilter filter) {
  WICO_CHECK(width > 0 && height > 0 && min_size > 0 && max_size > 0 && size_divisibility > 0,
             "cannot resize a ", width, "x", height, " image to shortest edge ", min_size,
             " (max ", max_size, ", divisibility ", size_divisibility, ")");
  // detectron2's ResizeShortestEdge.get_output_shape, in its order of operations.
  const double h = height, w = width, target = min_size;
  const double scale = target / std::min(h, w);
  double new_h = h < w ? target : scale * h;
  double new_w = h < w ? scale * w : target;
  if (std::max(new_h, new_w) > max_size) {
    const double shrink = max_size / std::max(new_h, new_w);
    new_h *= shrink;
    new_w *= shrink;
  }
  ResizePlan plan;
  plan.width = width;
  plan.height = height;
  plan.size = min_size;
  plan.kind = ResizeKind::kShortestEdge;
  plan.filter = filter;
  plan.resized_width = static_cast<int>(new_w + 0.5);
  plan.resized_height = static_cast<int>(new_h + 0.5);
  plan.scale_x = static_cast<double>(plan.resized_width) / width;  // ResizeTransform's new / old
  plan.scale_y = static_cast<double>(plan.resized_height) / height;
  auto up = [&](int v) { return (v + size_divisibility - 1) / size_divisibility * size_divisibility; };
  plan.canvas_width = up(plan.resized_width);
  plan.canvas_height = up(plan.resized_height);
  return plan;
}

ResizePlan plan_lsj(int width, int height, int size, double scale, double crop_fraction,
                    bool flip) {
  WICO_CHECK(width > 0 && height > 0 && size > 0 && scale > 0.0, "cannot jitter a ", width, "x",
             height, " image to ", size, " at scale ", scale);
  // ResizeScale: fit a (size * scale)^2 square; np.round (half to even) of each side.
  const double fit = std::min(size * scale / height, size * scale / width);
  ResizePlan plan;
  plan.width = width;
  plan.height = height;
  plan.size = size;
  plan.kind = ResizeKind::kLsj;
  plan.filter = ResizeFilter::kPil;
  plan.flip = flip;
  plan.resized_height = std::max(1, static_cast<int>(std::nearbyint(height * fit)));
  plan.resized_width = std::max(1, static_cast<int>(std::nearbyint(width * fit)));
  plan.scale_x = static_cast<double>(plan.resized_width) / width;
  plan.scale_y = static_cast<double>(plan.resized_height) / height;
  // FixedSizeCrop: one uniform fraction of the overhang for both axes, np.round'ed.
  plan.crop_y = static_cast<int>(std::nearbyint(std::max(plan.resized_height - size, 0) * crop_fraction));
  plan.crop_x = static_cast<int>(std::nearbyint(std::max(plan.resized_width - size, 0) * crop_fraction));
  plan.offset_x = -plan.crop_x;
  plan.offset_y = -plan.crop_y;
  return plan;
}

namespace {

// The lsj steps after the resize: crop at the plan's corner, pad to size x size with `fill`.
template <typename Mat>
Mat crop_and_pad(const Mat& resized, const ResizePlan& plan, const cv::Scalar& fill) {
  const int w = std::min(plan.size, resized.cols - plan.crop_x);
  const int h = std::min(plan.size, resized.rows - plan.crop_y);
  Mat out(plan.size, plan.size);
  out.setTo(fill);
  resized(cv::Rect(plan.crop_x, plan.crop_y, w, h)).copyTo(out(cv::Rect(0, 0, w, h)));
  return out;
}

// `m` resampled to `size` by Pillow (exactly) or OpenCV: bilinear for images, nearest for masks.
template <typename Mat>
Mat resample(const Mat& m, cv::Size size, ResizeFilter filter, bool nearest) {
  if (filter == ResizeFilter::kPil) {
    return Mat(nearest ? pil_resize_nearest(m, size) : pil_resize_bilinear(m, size));
  }
  Mat out;
  cv::resize(m, out, size, 0, 0, nearest ? cv::INTER_NEAREST : cv::INTER_LINEAR);
  return out;
}

// The paste letterbox: `resized` (nw x nh) at the plan's corner of an S x S canvas of `fill`.
template <typename Mat>
Mat paste(const Mat& resized, const ResizePlan& plan, const cv::Scalar& fill) {
  Mat out(plan.size, plan.size);
  out.setTo(fill);
  resized.copyTo(out(cv::Rect(static_cast<int>(plan.offset_x), static_cast<int>(plan.offset_y),
                              resized.cols, resized.rows)));
  return out;
}

// The resizes of every plan but the letterbox's warp: plain to S x S, shortest_edge to its
// resized size (the caller pads), lsj flipped, resized, cropped and padded with `lsj_fill`.
template <typename Mat>
Mat resize_as_planned(const Mat& m, const ResizePlan& plan, bool nearest,
                      const cv::Scalar& lsj_fill) {
  const cv::Size resized(plan.resized_width, plan.resized_height);
  switch (plan.kind) {
    case ResizeKind::kPlain:
      return resample(m, cv::Size(plan.size, plan.size), plan.filter, nearest);
    case ResizeKind::kShortestEdge:
      return resample(m, resized, plan.filter, nearest);
    case ResizeKind::kLsj: {
      Mat source = m;
      if (plan.flip) cv::flip(m, source, 1);
      return crop_and_pad(resample(source, resized, plan.filter, nearest), plan, lsj_fill);
    }
    case ResizeKind::kPaste: {
      Mat out;
      cv::resize(m, out, resized, 0, 0, nearest ? cv::INTER_NEAREST : cv::INTER_CUBIC);
      return paste(out, plan, lsj_fill);
    }
    case ResizeKind::kLetterbox:
      break;
  }
  throw Error("the letterbox is a warp, not a resize");
}

}  // namespace

cv::Mat3b resize_image(const cv::Mat3b& image, const ResizePlan& plan, const Normalization& norm) {
  WICO_CHECK(image.cols == plan.width && image.rows == plan.height, "image is ", image.cols, "x",
             image.rows, " but the plan is for ", plan.width, "x", plan.height);
  if (plan.kind == ResizeKind::kPaste) {
    // The border as bytes here; the loader writes the exact fill after normalising.
    const auto& f = norm.fill >= 0 ? std::array<float, 3>{norm.fill, norm.fill, norm.fill} : norm.mean;
    return resize_as_planned(image, plan, /*nearest=*/false,
                             cv::Scalar(f[2] * 255.0, f[1] * 255.0, f[0] * 255.0));
  }
  if (plan.kind != ResizeKind::kLetterbox) {
    return resize_as_planned(image, plan, /*nearest=*/false, cv::Scalar(128, 128, 128));
  }
  cv::Mat3b out;
  const cv::Scalar fill(norm.mean[2] * 255.0, norm.mean[1] * 255.0, norm.mean[0] * 255.0);  // BGR
  cv::warpAffine(image, out, cv::Mat(plan.forward()), cv::Size(plan.size, plan.size),
                 cv::INTER_CUBIC, cv::BORDER_CONSTANT, fill);
  return out;
}

cv::Mat1b resize_mask(const cv::Mat1b& mask, const ResizePlan& plan) {
  if (plan.kind != ResizeKind::kLetterbox) {
    return resize_as_planned(mask, plan, /*nearest=*/true, cv::Scalar(0));
  }
  cv::Mat1b out;
  cv::warpAffine(mask, out, cv::Mat(plan.forward()), cv::Size(plan.size, plan.size),
                 cv::INTER_NEAREST, cv::BORDER_CONSTANT, 0);
  return out;
}

cv::Mat1b resize_soft_mask(const cv::Mat1b& mask, const ResizePlan& plan) {
  WICO_CHECK(plan.kind != ResizeKind::kLsj, "soft targets (data.soft_targets) are not defined "
                                            "for lsj plans");
  const cv::Mat1b scaled = mask * 255;  // 0/1 -> 0/255, as CRIS's mask PNGs
  cv::Mat1b out;
  if (plan.kind == ResizeKind::kLetterbox) {
    cv::warpAffine(scaled, out, cv::Mat(plan.forward()), cv::Size(plan.size, plan.size),
                   cv::INTER_LINEAR, cv::BORDER_CONSTANT, 0);
  } else if (plan.kind == ResizeKind::kPaste) {
    // VLT's loader: the 0/255 mask resized with INTER_CUBIC (bytes, rounded and saturated),
    // pasted on zeros; / 255 later, edges kept soft.
    cv::Mat1b resized;
    cv::resize(scaled, resized, cv::Size(plan.resized_width, plan.resized_height), 0, 0,
               cv::INTER_CUBIC);
    out = paste(resized, plan, cv::Scalar(0));
  } else {
    const cv::Size size = plan.kind == ResizeKind::kPlain
                              ? cv::Size(plan.size, plan.size)
                              : cv::Size(plan.resized_width, plan.resized_height);
    cv::resize(scaled, out, size, 0, 0, cv::INTER_LINEAR);
  }
  return out;
}

cv::Mat1b transform_annotation_mask(const nlohmann::json& segmentation, const ResizePlan& plan) {
  const bool by_points = plan.kind == ResizeKind::kLsj || plan.kind == ResizeKind::kShortestEdge;
  if (!by_points || !segmentation.is_array()) {
    return resize_mask(annotation_to_mask(segmentation, plan.height, plan.width), plan);
  }
  // detectron2 transforms polygon points (HFlip: x -> width - x; resize: x * new_w / w; crop:
  // x - x0) and rasterises them at the new image size.
  std::vector<std::vector<double>> polygons;
  for (const auto& part : segmentation) {
    std::vector<double> points;
    for (std::size_t i = 0; i + 1 < part.size(); i += 2) {
      double x = part[i].get<double>(), y = part[i + 1].get<double>();
      if (plan.flip) x = plan.width - x;
      points.push_back(x * plan.scale_x - plan.crop_x);
      points.push_back(y * plan.scale_y - plan.crop_y);
    }
    polygons.push_back(std::move(points));
  }
  const int h = plan.kind == ResizeKind::kLsj ? plan.size : plan.resized_height;
  const int w = plan.kind == ResizeKind::kLsj ? plan.size : plan.resized_width;
  return polygons_to_mask(polygons, h, w);
}

std::array<float, 4> map_box(const std::array<double, 4>& box, const ResizePlan& plan) {
  return {static_cast<float>(box[0] * plan.scale_x + plan.offset_x),
          static_cast<float>(box[1] * plan.scale_y + plan.offset_y),
          static_cast<float>((box[0] + box[2]) * plan.scale_x + plan.offset_x),
          static_cast<float>((box[1] + box[3]) * plan.scale_y + plan.offset_y)};
}

at::Tensor image_to_tensor(const cv::Mat3b& image, const Normalization& norm) {
  cv::Mat3b contiguous = image.isContinuous() ? image : image.clone();
  // HWC uint8 BGR -> CHW float RGB in [0, 1], then (x - mean) / std per channel.
  at::Tensor t = at::from_blob(contiguous.data, {contiguous.rows, contiguous.cols, 3}, at::kByte)
                     .flip({2})
                     .permute({2, 0, 1})
                     .to(at::kFloat)
                     .div_(255.0);
  const auto mean = at::tensor({norm.mean[0], norm.mean[1], norm.mean[2]}).view({3, 1, 1});
  const auto std = at::tensor({norm.std[0], norm.std[1], norm.std[2]}).view({3, 1, 1});
  return t.sub_(mean).div_(std).contiguous();
}

at::Tensor mask_to_tensor(const cv::Mat1b& mask) {
  cv::Mat1b contiguous = mask.isContinuous() ? mask : mask.clone();
  return at::from_blob(contiguous.data, {contiguous.rows, contiguous.cols}, at::kByte)
      .to(at::kFloat)
      .contiguous();
}

cv::Mat1f map_back(const cv::Mat1f& input_map, const ResizePlan& plan, MapBackFilter filter) {
  WICO_CHECK(plan.kind != ResizeKind::kLsj,
             "an lsj (training) transform has no inverse for evaluation");
  WICO_CHECK(input_map.rows == plan.input_height() && input_map.cols == plan.input_width(),
             "map is ", input_map.cols, "x", input_map.rows, ", expected ", plan.input_width(),
             "x", plan.input_height());
  const int interpolation = filter == MapBackFilter::kCubic ? cv::INTER_CUBIC : cv::INTER_LINEAR;
  cv::Mat1f out;
  if (plan.kind == ResizeKind::kShortestEdge) {
    // sem_seg_postprocess: the image's part of the padded canvas, resized back (bilinear).
    const cv::Mat1f image = input_map(cv::Rect(0, 0, plan.resized_width, plan.resized_height));
    cv::resize(image, out, cv::Size(plan.width, plan.height), 0, 0, interpolation);
    return out;
  }
  if (plan.kind == ResizeKind::kPaste) {
    // callbacks/eval.py: pred[dy:dy + nh, dx:dx + nw], resized to the image.
    const cv::Mat1f image =
        input_map(cv::Rect(static_cast<int>(plan.offset_x), static_cast<int>(plan.offset_y),
                           plan.resized_width, plan.resized_height));
    cv::resize(image, out, cv::Size(plan.width, plan.height), 0, 0, interpolation);
  } else if (plan.kind != ResizeKind::kLetterbox) {
    cv::resize(input_map, out, cv::Size(plan.width, plan.height), 0, 0, interpolation);
  } else {
    cv::warpAffine(input_map, out, cv::Mat(plan.inverse()), cv::Size(plan.width, plan.height),
                   interpolation, cv::BORDER_CONSTANT, 0.0);
  }
  return out;
}

}  // namespace wico::data
