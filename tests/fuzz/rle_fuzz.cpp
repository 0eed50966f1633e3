// libFuzzer target for COCO masks: compressed RLE strings and segmentation JSON (polygons, boxes,
// RLE dicts with compressed or uncompressed counts) at a size from the first two bytes. Anything
// must decode or throw wico::Error; what decodes must agree with itself (area, re-encoding).
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "fuzz_util.h"
#include "wico/core/error.h"
#include "wico/data/coco_mask.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace wico::data;
  if (size < 3) return 0;
  const int height = 1 + data[0] % 64, width = 1 + data[1] % 64;
  const bool as_json = (data[2] & 1) != 0;
  const std::string_view text = wico::fuzz::as_text(data + 3, size - 3);
  Rle rle;
  try {
    if (as_json) {
      const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (json.is_discarded()) return 0;
      rle = annotation_to_rle(json, height, width);
    } else {
      rle = rle_from_string(text, height, width);
    }
  } catch (const wico::Error&) {
    return 0;
  }
  const cv::Mat1b mask = rle_decode(rle);
  if (static_cast<std::uint64_t>(cv::countNonZero(mask)) != rle_area(rle)) std::abort();
  if (rle_from_string(rle_to_string(rle_encode(mask)), height, width) != rle_encode(mask)) {
    std::abort();
  }
  return 0;
}
