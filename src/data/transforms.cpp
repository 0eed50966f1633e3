#include "wico/data/transforms.h"

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

#include <algorithm>

#include "wico/core/error.h"

namespace wico::data {

Normalization normalization(const std::string& name) {
  if (name == "imagenet") return {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
  if (name == "clip") {
    return {{0.48145466f, 0.4578275f, 0.40821073f}, {0.26862954f, 0.26130258f, 0.27577711f}};
  }
  throw ConfigError("unknown normalisation '" + name + "' (data.normalize); valid: clip, imagenet");
}

cv::Matx23d ResizePlan::forward() const {
  return {scale_x, 0, offset_x, 0, scale_y, offset_y};
}

cv::Matx23d ResizePlan::inverse() const {
  return {1.0 / scale_x, 0, -offset_x / scale_x, 0, 1.0 / scale_y, -offset_y / scale_y};
}

ResizePlan plan_resize(int width, int height, int size, bool letterbox) {
  WICO_CHECK(width > 0 && height > 0 && size > 0, "cannot resize a ", width, "x", height,
             " image to ", size);
  ResizePlan plan;
  plan.width = width;
  plan.height = height;
  plan.size = size;
  plan.letterbox = letterbox;
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

cv::Mat3b resize_image(const cv::Mat3b& image, const ResizePlan& plan, const Normalization& norm) {
  WICO_CHECK(image.cols == plan.width && image.rows == plan.height, "image is ", image.cols, "x",
             image.rows, " but the plan is for ", plan.width, "x", plan.height);
  cv::Mat3b out;
  if (!plan.letterbox) {
    cv::resize(image, out, cv::Size(plan.size, plan.size), 0, 0, cv::INTER_LINEAR);
    return out;
  }
  const cv::Scalar fill(norm.mean[2] * 255.0, norm.mean[1] * 255.0, norm.mean[0] * 255.0);  // BGR
  cv::warpAffine(image, out, cv::Mat(plan.forward()), cv::Size(plan.size, plan.size),
                 cv::INTER_CUBIC, cv::BORDER_CONSTANT, fill);
  return out;
}

cv::Mat1b resize_mask(const cv::Mat1b& mask, const ResizePlan& plan) {
  cv::Mat1b out;
  if (!plan.letterbox) {
    cv::resize(mask, out, cv::Size(plan.size, plan.size), 0, 0, cv::INTER_NEAREST);
  } else {
    cv::warpAffine(mask, out, cv::Mat(plan.forward()), cv::Size(plan.size, plan.size),
                   cv::INTER_NEAREST, cv::BORDER_CONSTANT, 0);
  }
  return out;
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

cv::Mat1f map_back(const cv::Mat1f& input_map, const ResizePlan& plan) {
  WICO_CHECK(input_map.rows == plan.size && input_map.cols == plan.size, "map is ",
             input_map.cols, "x", input_map.rows, ", expected ", plan.size, "x", plan.size);
  cv::Mat1f out;
  if (!plan.letterbox) {
    cv::resize(input_map, out, cv::Size(plan.width, plan.height), 0, 0, cv::INTER_LINEAR);
  } else {
    cv::warpAffine(input_map, out, cv::Mat(plan.inverse()), cv::Size(plan.width, plan.height),
                   cv::INTER_LINEAR, cv::BORDER_CONSTANT, 0.0);
  }
  return out;
}

}  // namespace wico::data
