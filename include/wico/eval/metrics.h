// Referring-segmentation metrics as the field computes them (DESIGN decision 7), and the
// originals' variants so a number can be lined up with a published table:
//
//   compat   per-sample IoU               empty pred & empty target   prec@X counts IoU ...
//   default  I / U                         1                           > X
//   lavt     I / U (0 when U = 0)          0                           >= X   (at 480 x 480 input)
//   cris     I / (U + 1e-6)                0                           > X
//   vlt      (I + 1e-10) / (U + 1e-10)     1                           > X
//
// mIoU is the mean of per-sample IoUs, oIoU the sum of intersections over the sum of unions.
// Where a variant evaluates at another resolution (LAVT: the 480 input), the evaluator chooses
// the masks; these functions only count.
#pragma once

#include <opencv2/core.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "wico/data/coco_mask.h"

namespace wico::eval {

enum class MetricCompat { kDefault, kLavt, kCris, kVlt };
// "default" | "lavt" | "cris" | "vlt" (eval.compat); anything else is a ConfigError.
MetricCompat parse_compat(const std::string& name);
const char* compat_name(MetricCompat compat);

struct Overlap {
  std::uint64_t intersection = 0;
  std::uint64_t union_ = 0;
};
// Pixel counts of two 0/1 (or 0/non-0) masks of the same size.
Overlap overlap(const cv::Mat1b& prediction, const cv::Mat1b& target);
// The same counts from two COCO RLEs of the same size, walked run by run without decoding a
// pixel: the evaluator's path, O(runs) instead of O(pixels) (at 640x480 a mask has a few hundred
// runs and 307,200 pixels). Equals overlap(rle_decode(prediction), rle_decode(target)) exactly,
// zero-length runs included; the counts of each RLE must sum to height * width.
Overlap overlap(const data::Rle& prediction, const data::Rle& target);

double sample_iou(const Overlap& o, MetricCompat compat);
bool counts_at(double iou, double threshold, MetricCompat compat);

// The precision thresholds every table reports.
constexpr std::array<double, 5> kPrecisionThresholds = {0.5, 0.6, 0.7, 0.8, 0.9};

struct MetricSummary {
  std::int64_t samples = 0;
  double miou = 0;
  double oiou = 0;
  std::array<double, 5> precision{};  // at kPrecisionThresholds
};

// Accumulates samples of one split (or one branch) and summarises them.
class MetricAccumulator {
 public:
  explicit MetricAccumulator(MetricCompat compat = MetricCompat::kDefault) : compat_(compat) {}
  void add(const Overlap& o);
  MetricSummary summary() const;
  const std::vector<double>& ious() const { return ious_; }

 private:
  MetricCompat compat_;
  std::vector<double> ious_;
  long double intersection_ = 0;
  long double union_ = 0;
};

// WiCo's error analysis (DESIGN decision 5): the paper's PN (IoU < pn_max) and IP
// (ip_min <= IoU < ip_max) rates, and MER between two branches (share of samples where exactly one
// branch has IoU > mer_threshold).
struct ErrorThresholds {
  double pn_max = 0.05;
  double ip_min = 0.5;
  double ip_max = 0.8;
  double mer_threshold = 0.5;
};
double pn_rate(const std::vector<double>& ious, const ErrorThresholds& t = {});
double ip_rate(const std::vector<double>& ious, const ErrorThresholds& t = {});
// Both vectors hold the same samples in the same order.
double mutual_error_rate(const std::vector<double>& a, const std::vector<double>& b,
                         const ErrorThresholds& t = {});
// Pearson's r of two equally long series; NaN when either is constant or has fewer than 2 values.
double pearson_correlation(const std::vector<double>& a, const std::vector<double>& b);
// Spearman's rho: Pearson's r of the ranks (tied values share their mean rank).
double spearman_correlation(const std::vector<double>& a, const std::vector<double>& b);
// Counts of IoUs in `bins` equal bins over [0, 1] (IoU 1 falls in the last).
std::vector<std::int64_t> iou_histogram(const std::vector<double>& ious, int bins = 20);

}  // namespace wico::eval
