// COCO segmentation masks with pycocotools' exact semantics (common/maskApi.c and
// PythonAPI/pycocotools/_mask.pyx of cocodataset/cocoapi): run-length encoding, the compressed
// RLE string, polygon and box rasterisation, merging, area and bounding box. Ground-truth masks
// must match the official tools pixel for pixel, or every reported IoU drifts from the papers'.
//
// Masks are cv::Mat1b, H x W, values 0/1 (encoding treats any non-zero value as 1).
//
// Which rasteriser applies where (pycocotools' frPyObjects, as used by COCO.annToRLE and the refer
// API's getMask):
//   - rle_from_polygon: one polygon part, always (rleFrPoly). A part with exactly 4 numbers is a
//     degenerate two-vertex polygon here (usually empty), as frPoly does for a part that is not
//     the first one.
//   - rle_from_polygons / polygons_to_mask / annotation_to_*: a segmentation list whose FIRST
//     part has exactly 4 numbers is a list of boxes [x, y, w, h] (every part must then have 4
//     numbers) rasterised by rle_from_bbox; otherwise every part is a polygon. This is
//     frPyObjects' intent; the released pycocotools in fact raises a TypeError on such lists
//     (cocoapi issue #369), so no real annotation relies on it.
//   - rle_from_bbox: a box [x, y, w, h], rasterised as the polygon of its corners (rleFrBbox).
//
// Where we differ from pycocotools (it has undefined behaviour or silently returns garbage):
// a part with fewer than 2 numbers gives an empty mask (rleFrPoly reads uninitialised memory);
// an empty segmentation list gives an empty mask (frPyObjects raises IndexError); merging RLEs
// of different sizes, counts that do not sum to h * w, and malformed strings throw wico::Error.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <opencv2/core.hpp>

namespace wico::data {

// COCO run-length encoding: column-major pixel order (index = x * height + y); runs alternate
// background, foreground, ... starting with background, so counts[0] may be 0.
struct Rle {
  int height = 0;
  int width = 0;
  std::vector<std::uint32_t> counts;
};

bool operator==(const Rle& a, const Rle& b);
inline bool operator!=(const Rle& a, const Rle& b) { return !(a == b); }

// rleEncode: the canonical RLE of `mask` (no zero runs except possibly counts[0]).
Rle rle_encode(const cv::Mat1b& mask);
// rleDecode. Throws wico::Error unless the counts sum to height * width.
cv::Mat1b rle_decode(const Rle& rle);
// rleArea: the number of foreground pixels.
std::uint64_t rle_area(const Rle& rle);

// rleToString: LEB128-like, 6 bits a character (5 data bits, 0x20: more groups follow, 0x10 on
// the last group: negative), offset by 48. Counts from index 3 on are stored as the difference to
// the count two places earlier (pycocotools' `i > 2`; indices 0..2 are stored as they are).
// Example: counts [2, 3, 1, 1] <-> "231N".
std::string rle_to_string(const Rle& rle);
// rleFrString. Throws wico::Error naming the problem for characters outside '0'..'o', a string
// ending inside a number, counts outside 0..2^32-1, or counts not summing to height * width.
Rle rle_from_string(std::string_view text, int height, int width);

// rleFrPoly: `xy` = x0, y0, x1, y1, ... (an odd trailing number is dropped). Coordinates are scaled
// by 5 and rounded, edges traced on that grid, and the mask toggled where an edge crosses a pixel
// column's centre; close to "pixel centre inside the polygon" (even-odd rule).
Rle rle_from_polygon(const std::vector<double>& xy, int height, int width);
// rleFrBbox: box = x, y, w, h (pixels, top-left corner), as the polygon of its corners.
Rle rle_from_bbox(const std::array<double, 4>& box, int height, int width);
// frPyObjects + merge for a segmentation list (see the header comment for the box rule).
Rle rle_from_polygons(const std::vector<std::vector<double>>& polygons, int height, int width);

// rleMerge: union (default) or intersection. An empty list gives a 0 x 0 RLE; throws
// wico::Error when the sizes differ or an RLE's counts do not sum to height * width. Follows
// pycocotools' run walk exactly, so non-canonical input (zero runs) gives the same counts.
Rle rle_merge(const std::vector<Rle>& rles, bool intersect = false);

// rleToBbox: {x, y, w, h} of the foreground, {0, 0, 0, 0} when empty. Quirk kept: a foreground
// run that continues from one column into the next makes the box span the full image height.
std::array<double, 4> rle_to_bbox(const Rle& rle);

// How a mask is built from an annotation's polygon parts (data.mask_rule). kUnion: a pixel any
// part covers (the refer API's getMask sums the parts; pycocotools' merge; we keep `> 0`).
// kLavt: a pixel exactly one part covers, as LAVT's dataset keeps `getMask(ref)['mask'] == 1` of
// the sum (cast to uint8), so overlapping parts cancel. An RLE segmentation is one part.
enum class MaskRule { kUnion, kLavt };
// "union" or "lavt"; anything else is a ConfigError.
MaskRule parse_mask_rule(const std::string& name);

// A ref's mask from its polygon parts (the box rule of rle_from_polygons applies to each part).
cv::Mat1b polygons_to_mask(const std::vector<std::vector<double>>& polygons, int height,
                           int width, MaskRule rule = MaskRule::kUnion);

// A COCO annotation's "segmentation" in any of its three forms: a list of polygons, an
// uncompressed RLE {"counts": [ints], "size": [h, w]} (crowd annotations), or a compressed RLE
// {"counts": "string", "size": [h, w]}. An RLE's size must equal (height, width). Throws
// wico::Error saying what was expected for any other shape.
Rle annotation_to_rle(const nlohmann::json& segmentation, int height, int width);
cv::Mat1b annotation_to_mask(const nlohmann::json& segmentation, int height, int width,
                             MaskRule rule = MaskRule::kUnion);

}  // namespace wico::data
