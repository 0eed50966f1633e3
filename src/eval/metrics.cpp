#include "wico/eval/metrics.h"

#include <algorithm>
#include <cmath>

#include "wico/core/error.h"

namespace wico::eval {

MetricCompat parse_compat(const std::string& name) {
  if (name == "default") return MetricCompat::kDefault;
  if (name == "lavt") return MetricCompat::kLavt;
  if (name == "cris") return MetricCompat::kCris;
  if (name == "vlt") return MetricCompat::kVlt;
  throw ConfigError("eval.compat '" + name + "' is not one of default, lavt, cris, vlt");
}

const char* compat_name(MetricCompat compat) {
  switch (compat) {
    case MetricCompat::kDefault: return "default";
    case MetricCompat::kLavt: return "lavt";
    case MetricCompat::kCris: return "cris";
    case MetricCompat::kVlt: return "vlt";
  }
  return "?";
}

Overlap overlap(const cv::Mat1b& prediction, const cv::Mat1b& target) {
  WICO_CHECK(prediction.size() == target.size(), "prediction is ", prediction.cols, "x",
             prediction.rows, " but the target is ", target.cols, "x", target.rows);
  Overlap o;
  for (int y = 0; y < target.rows; ++y) {
    const std::uint8_t* p = prediction.ptr<std::uint8_t>(y);
    const std::uint8_t* t = target.ptr<std::uint8_t>(y);
    for (int x = 0; x < target.cols; ++x) {
      const bool a = p[x] != 0, b = t[x] != 0;
      o.intersection += a && b;
      o.union_ += a || b;
    }
  }
  return o;
}

namespace {

// The foreground runs of an RLE as half-open intervals [begin, end) of column-major pixel
// positions, in order, skipping zero-length runs.
class ForegroundRuns {
 public:
  explicit ForegroundRuns(const std::vector<std::uint32_t>& counts) : counts_(counts) {
    advance();
  }
  bool done() const { return done_; }
  std::uint64_t begin() const { return begin_; }
  std::uint64_t end() const { return end_; }
  void advance() {
    while (next_ < counts_.size()) {
      const std::uint64_t length = counts_[next_];
      const bool foreground = next_ % 2 == 1;  // runs alternate, background first
      ++next_;
      if (foreground && length > 0) {
        begin_ = position_;
        end_ = position_ + length;
        position_ = end_;
        return;
      }
      position_ += length;
    }
    done_ = true;
  }

 private:
  const std::vector<std::uint32_t>& counts_;
  std::size_t next_ = 0;
  std::uint64_t position_ = 0, begin_ = 0, end_ = 0;
  bool done_ = false;
};

}  // namespace

Overlap overlap(const data::Rle& prediction, const data::Rle& target) {
  WICO_CHECK(prediction.height == target.height && prediction.width == target.width,
             "prediction is ", prediction.width, "x", prediction.height, " but the target is ",
             target.width, "x", target.height);
  // Intersection: the overlaps of the two sorted lists of disjoint intervals; union by
  // inclusion-exclusion.
  std::uint64_t intersection = 0;
  ForegroundRuns a(prediction.counts), b(target.counts);
  while (!a.done() && !b.done()) {
    const std::uint64_t lo = std::max(a.begin(), b.begin()), hi = std::min(a.end(), b.end());
    if (hi > lo) intersection += hi - lo;
    if (a.end() < b.end()) {
      a.advance();
    } else {
      b.advance();
    }
  }
  Overlap o;
  o.intersection = intersection;
  o.union_ = data::rle_area(prediction) + data::rle_area(target) - intersection;
  return o;
}

double sample_iou(const Overlap& o, MetricCompat compat) {
  const auto i = static_cast<double>(o.intersection), u = static_cast<double>(o.union_);
  switch (compat) {
    case MetricCompat::kDefault: return o.union_ == 0 ? 1.0 : i / u;
    case MetricCompat::kLavt: return o.union_ == 0 ? 0.0 : i / u;
    case MetricCompat::kCris: return i / (u + 1e-6);
    case MetricCompat::kVlt: return (i + 1e-10) / (u + 1e-10);
  }
  return 0.0;
}

bool counts_at(double iou, double threshold, MetricCompat compat) {
  return compat == MetricCompat::kLavt ? iou >= threshold : iou > threshold;
}

void MetricAccumulator::add(const Overlap& o) {
  ious_.push_back(sample_iou(o, compat_));
  intersection_ += o.intersection;
  union_ += o.union_;
}

MetricSummary MetricAccumulator::summary() const {
  MetricSummary s;
  s.samples = static_cast<std::int64_t>(ious_.size());
  if (ious_.empty()) return s;
  long double total = 0;
  for (double v : ious_) total += v;
  s.miou = static_cast<double>(total / ious_.size());
  s.oiou = union_ > 0 ? static_cast<double>(intersection_ / union_) : 0.0;
  for (std::size_t k = 0; k < kPrecisionThresholds.size(); ++k) {
    const auto hits = std::count_if(ious_.begin(), ious_.end(), [&](double v) {
      return counts_at(v, kPrecisionThresholds[k], compat_);
    });
    s.precision[k] = static_cast<double>(hits) / static_cast<double>(ious_.size());
  }
  return s;
}

double pn_rate(const std::vector<double>& ious, const ErrorThresholds& t) {
  if (ious.empty()) return 0.0;
  return static_cast<double>(std::count_if(ious.begin(), ious.end(),
                                           [&](double v) { return v < t.pn_max; })) /
         static_cast<double>(ious.size());
}

double ip_rate(const std::vector<double>& ious, const ErrorThresholds& t) {
  if (ious.empty()) return 0.0;
  return static_cast<double>(std::count_if(ious.begin(), ious.end(), [&](double v) {
           return v >= t.ip_min && v < t.ip_max;
         })) /
         static_cast<double>(ious.size());
}

double mutual_error_rate(const std::vector<double>& a, const std::vector<double>& b,
                         const ErrorThresholds& t) {
  WICO_CHECK(a.size() == b.size(), "MER needs the same samples for both branches (", a.size(),
             " vs ", b.size(), ")");
  if (a.empty()) return 0.0;
  std::size_t exactly_one = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    exactly_one += (a[i] > t.mer_threshold) != (b[i] > t.mer_threshold);
  }
  return static_cast<double>(exactly_one) / static_cast<double>(a.size());
}

double pearson_correlation(const std::vector<double>& a, const std::vector<double>& b) {
  WICO_CHECK(a.size() == b.size(), "a correlation needs two series of one length (", a.size(),
             " vs ", b.size(), ")");
  const std::size_t n = a.size();
  if (n < 2) return std::nan("");
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ma += a[i];
    mb += b[i];
  }
  ma /= static_cast<double>(n);
  mb /= static_cast<double>(n);
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  if (saa <= 0 || sbb <= 0) return std::nan("");
  return sab / std::sqrt(saa * sbb);
}

namespace {

std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<std::size_t> order(v.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return v[x] < v[y]; });
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    const double mean_rank = 0.5 * static_cast<double>(i + j) + 1.0;
    for (std::size_t k = i; k <= j; ++k) r[order[k]] = mean_rank;
    i = j + 1;
  }
  return r;
}

}  // namespace

double spearman_correlation(const std::vector<double>& a, const std::vector<double>& b) {
  return pearson_correlation(ranks(a), ranks(b));  // checks the lengths
}

std::vector<std::int64_t> iou_histogram(const std::vector<double>& ious, int bins) {
  WICO_CHECK(bins > 0, "a histogram needs at least one bin");
  std::vector<std::int64_t> counts(static_cast<std::size_t>(bins), 0);
  for (double v : ious) {
    const int k = std::clamp(static_cast<int>(v * bins), 0, bins - 1);
    ++counts[static_cast<std::size_t>(k)];
  }
  return counts;
}

}  // namespace wico::eval
