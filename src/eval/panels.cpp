#include "wico/eval/panels.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>
#include <unordered_map>

#include "wico/core/error.h"
#include "wico/data/refer.h"

namespace wico::eval {

namespace {

// Layout (pixels). A cell holds an image fitted into it; 320 x 240 is half a 640 x 480 COCO
// image, large enough to read a mask's edge.
constexpr int kCellWidth = 320, kCellHeight = 240, kGap = 6, kTitleHeight = 44, kHeaderHeight = 30,
              kMargin = 10;
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;

const cv::Scalar kInk(40, 40, 40), kLetterbox(60, 60, 60), kWhite(255, 255, 255);
const cv::Scalar kTruthColour(60, 190, 60);  // BGR
// Branch colours in display order (BGR): blue, orange, magenta, then the rest.
const std::vector<cv::Scalar> kBranchColours = {{200, 120, 30}, {20, 140, 255}, {190, 60, 200},
                                                {40, 200, 220}, {150, 150, 40}, {90, 90, 220}};

double iou_of(const SplitResult& r, const std::string& branch, std::size_t sample) {
  return r.branches.at(branch).ious.at(sample);
}

// Hershey fonts draw ASCII only: anything else becomes '?', so a label never turns into garbage.
std::string printable(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      out.push_back(c >= 0x20 ? static_cast<char>(c) : ' ');
    } else if ((c & 0xC0) != 0x80) {  // one '?' per UTF-8 character, not per byte
      out.push_back('?');
    }
  }
  return out;
}

int text_width(const std::string& text, double scale, int thickness) {
  int baseline = 0;
  return cv::getTextSize(text, kFont, scale, thickness, &baseline).width;
}

// Greedy word wrap to `width` pixels; a word wider than a line is cut. At most `max_lines`
// lines, the last one ending in "..." when text was left over.
std::vector<std::string> wrap(const std::string& text, double scale, int thickness, int width,
                              std::size_t max_lines) {
  std::vector<std::string> words, lines;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t end = std::min(text.find(' ', i), text.size());
    if (end > i) words.push_back(text.substr(i, end - i));
    i = end + 1;
  }
  std::string line;
  for (std::string word : words) {
    while (text_width(word, scale, thickness) > width && word.size() > 1) {
      // Cut an over-long word where it fits, on a line of its own.
      std::size_t fit = word.size() - 1;
      while (fit > 1 && text_width(word.substr(0, fit), scale, thickness) > width) --fit;
      if (!line.empty()) lines.push_back(line);
      lines.push_back(word.substr(0, fit));
      line.clear();
      word = word.substr(fit);
    }
    const std::string candidate = line.empty() ? word : line + " " + word;
    if (text_width(candidate, scale, thickness) <= width) {
      line = candidate;
    } else {
      lines.push_back(line);
      line = word;
    }
  }
  if (!line.empty()) lines.push_back(line);
  if (lines.size() > max_lines) {
    lines.resize(max_lines);
    std::string& last = lines.back();
    while (!last.empty() && text_width(last + "...", scale, thickness) > width) last.pop_back();
    last += "...";
  }
  return lines;
}

// The image scaled to fit a cell, centred on a dark letterbox; `fit` receives where it landed.
cv::Mat3b fit_to_cell(const cv::Mat3b& image, cv::Rect& fit) {
  const double scale = std::min(double(kCellWidth) / image.cols, double(kCellHeight) / image.rows);
  const cv::Size size(std::max(1, int(image.cols * scale + 0.5)),
                      std::max(1, int(image.rows * scale + 0.5)));
  fit = cv::Rect((kCellWidth - size.width) / 2, (kCellHeight - size.height) / 2, size.width,
                 size.height);
  cv::Mat3b cell(kCellHeight, kCellWidth, cv::Vec3b(kLetterbox[0], kLetterbox[1], kLetterbox[2]));
  cv::resize(image, cell(fit), size, 0, 0, scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
  return cell;
}

// A label: text on a filled box, top-left corner at `at`.
void label(cv::Mat3b& canvas, const std::string& text, cv::Point at, double scale, int thickness,
           const cv::Scalar& box, const cv::Scalar& ink) {
  int baseline = 0;
  const cv::Size size = cv::getTextSize(text, kFont, scale, thickness, &baseline);
  cv::rectangle(canvas, cv::Rect(at.x, at.y, size.width + 10, size.height + baseline + 8), box,
                cv::FILLED);
  cv::putText(canvas, text, {at.x + 5, at.y + 4 + size.height}, kFont, scale, ink, thickness,
              cv::LINE_AA);
}

// The cell with `mask` (original resolution) tinted in `colour` and outlined.
cv::Mat3b masked_cell(const cv::Mat3b& image, const cv::Mat1b& mask, const cv::Scalar& colour) {
  cv::Rect fit;
  cv::Mat3b cell = fit_to_cell(image, fit);
  cv::Mat1b small;
  cv::resize(mask * 255, small, fit.size(), 0, 0, cv::INTER_LINEAR);
  small = small >= 128;
  cv::Mat3b view = cell(fit);
  cv::Mat3b tinted = view.clone();
  tinted.setTo(colour, small);
  cv::addWeighted(view, 0.45, tinted, 0.55, 0, view);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(small, contours, cv::RETR_LIST, cv::CHAIN_APPROX_SIMPLE);
  // A white rim under the coloured outline: a mask stays visible on an object of its own colour.
  cv::drawContours(view, contours, -1, kWhite, 4, cv::LINE_AA);
  cv::drawContours(view, contours, -1, colour, 2, cv::LINE_AA);
  return cell;
}

cv::Scalar zone_colour(double iou, const ErrorThresholds& t) {
  if (iou < t.pn_max) return {40, 40, 200};   // red: PN
  if (iou >= t.ip_max) return {50, 140, 50};  // green: precise
  if (iou >= t.ip_min) return {0, 120, 230};  // orange: IP
  return {90, 90, 90};
}

std::string kind_title(CaseKind kind, const ErrorThresholds& t) {
  char text[160];
  switch (kind) {
    case CaseKind::kPn:
      std::snprintf(text, sizeof(text), "PN cases: a branch's IoU < %.2f (another object)",
                    t.pn_max);
      break;
    case CaseKind::kIp:
      std::snprintf(text, sizeof(text),
                    "IP cases: a branch's IoU in [%.2f, %.2f) (right object, imprecise mask)",
                    t.ip_min, t.ip_max);
      break;
    case CaseKind::kNormal:
      std::snprintf(text, sizeof(text), "Normal cases: every branch's IoU >= %.2f", t.ip_max);
      break;
  }
  return text;
}

}  // namespace

const char* case_kind_name(CaseKind kind) {
  switch (kind) {
    case CaseKind::kPn:
      return "pn";
    case CaseKind::kIp:
      return "ip";
    case CaseKind::kNormal:
      return "normal";
  }
  return "?";
}

std::vector<std::string> display_order(const SplitResult& result) {
  std::vector<std::string> order;
  for (const char* first : {"top_down", "bottom_up", "fused"}) {
    if (result.branches.count(first)) order.push_back(first);
  }
  for (const auto& [name, b] : result.branches) {  // std::map: the others alphabetically
    if (std::find(order.begin(), order.end(), name) == order.end()) order.push_back(name);
  }
  return order;
}

std::vector<std::size_t> select_cases(const SplitResult& result, CaseKind kind, int count,
                                      const ErrorThresholds& t) {
  const auto branches = display_order(result);
  if (count <= 0 || branches.empty()) return {};
  const std::size_t n = result.samples.size();
  // A candidate: the branch at fault (its index in display order; 0 for normal cases), whether
  // another branch is right, and a strength (higher first).
  struct Candidate {
    std::size_t sample;
    std::size_t fault;
    bool disagree;
    double strength;
  };
  std::vector<Candidate> candidates;
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<double> ious;
    for (const auto& b : branches) ious.push_back(iou_of(result, b, i));
    if (kind == CaseKind::kNormal) {
      const double lowest = *std::min_element(ious.begin(), ious.end());
      if (lowest >= t.ip_max) candidates.push_back({i, 0, false, lowest});
      continue;
    }
    // The branch at fault: the lowest IoU in the zone (the first such in display order).
    auto in_zone = [&](double v) {
      return kind == CaseKind::kPn ? v < t.pn_max : v >= t.ip_min && v < t.ip_max;
    };
    std::size_t fault = branches.size();
    for (std::size_t b = 0; b < branches.size(); ++b) {
      if (in_zone(ious[b]) && (fault == branches.size() || ious[b] < ious[fault])) fault = b;
    }
    if (fault == branches.size()) continue;
    // Another branch right: above the MER threshold (PN), or precise (IP).
    double best_other = -1;
    for (std::size_t b = 0; b < branches.size(); ++b) {
      if (b != fault) best_other = std::max(best_other, ious[b]);
    }
    const bool disagree =
        kind == CaseKind::kPn ? best_other > t.mer_threshold : best_other >= t.ip_max;
    candidates.push_back({i, fault, disagree, best_other});
  }
  // Disagreeing samples first; within each tier the branch at fault takes turns in display
  // order, each branch's samples strongest first, ties to the earlier sample.
  std::vector<std::size_t> order;
  for (const bool tier : {true, false}) {
    std::map<std::size_t, std::vector<const Candidate*>> by_fault;
    for (const auto& c : candidates) {
      if (c.disagree == tier) by_fault[c.fault].push_back(&c);
    }
    for (auto& [fault, list] : by_fault) {
      std::stable_sort(list.begin(), list.end(), [](const Candidate* a, const Candidate* b) {
        return a->strength > b->strength;
      });
    }
    for (std::size_t round = 0;; ++round) {
      bool any = false;
      for (const auto& [fault, list] : by_fault) {
        if (round < list.size()) {
          order.push_back(list[round]->sample);
          any = true;
        }
      }
      if (!any) break;
    }
  }
  // One sentence per ref: several sentences of one ref make near-identical rows.
  std::vector<std::size_t> picked;
  std::set<std::int64_t> refs;
  for (std::size_t i : order) {
    if (static_cast<int>(picked.size()) == count) break;
    if (refs.insert(result.samples[i].ref_id).second) picked.push_back(i);
  }
  return picked;
}

void draw_panels(const data::ReferDataset& data, const SplitResult& result,
                 const std::vector<Prediction>& predictions,
                 const std::vector<std::size_t>& samples, const ErrorThresholds& t,
                 const std::string& title, const std::filesystem::path& png) {
  WICO_CHECK(!samples.empty(), "no samples to draw");
  const auto branches = display_order(result);
  std::map<std::pair<std::int64_t, std::int64_t>, const Prediction*> by_sample;
  for (const auto& p : predictions) by_sample[{p.ref_id, p.sent_id}] = &p;
  std::unordered_map<std::int64_t, const data::Ref*> refs;
  for (const auto& ref : data.all_refs()) refs[ref.ref_id] = &ref;

  const int columns = 2 + static_cast<int>(branches.size());
  const int width = 2 * kMargin + columns * kCellWidth + (columns - 1) * kGap;
  const int rows = static_cast<int>(samples.size());
  const int top = kTitleHeight + kHeaderHeight;
  cv::Mat3b canvas(top + rows * (kCellHeight + kGap) + kMargin - kGap, width,
                   cv::Vec3b(255, 255, 255));
  cv::putText(canvas, printable(title), {kMargin, 30}, kFont, 0.7, kInk, 2, cv::LINE_AA);
  // Column headers, each over a bar in the column's mask colour.
  std::vector<std::pair<std::string, cv::Scalar>> headers = {{"image + expression", kInk},
                                                             {"ground truth", kTruthColour}};
  for (std::size_t b = 0; b < branches.size(); ++b) {
    headers.emplace_back(branches[b], kBranchColours[b % kBranchColours.size()]);
  }
  for (int c = 0; c < columns; ++c) {
    const int x = kMargin + c * (kCellWidth + kGap);
    const std::string text = printable(headers[c].first);
    cv::putText(canvas, text, {x + (kCellWidth - text_width(text, 0.6, 1)) / 2, top - 12}, kFont,
                0.6, kInk, 1, cv::LINE_AA);
    cv::rectangle(canvas, cv::Rect(x, top - 5, kCellWidth, 3), headers[c].second, cv::FILLED);
  }

  for (int row = 0; row < rows; ++row) {
    const std::size_t i = samples[row];
    WICO_CHECK(i < result.samples.size(), "sample ", i, " is not in the split's ",
               result.samples.size(), " samples");
    const SampleKey& key = result.samples[i];
    auto ref_it = refs.find(key.ref_id);
    auto pred_it = by_sample.find({key.ref_id, key.sent_id});
    if (ref_it == refs.end() || pred_it == by_sample.end()) {
      throw Error("panels: no " + std::string(ref_it == refs.end() ? "ref" : "prediction") +
                  " for ref " + std::to_string(key.ref_id) + " sentence " +
                  std::to_string(key.sent_id));
    }
    const data::Ref& ref = *ref_it->second;
    const Prediction& prediction = *pred_it->second;
    const auto& info = data.image(ref.image_id);
    const auto path = data.image_path(info);
    const cv::Mat3b image = cv::imread(path.string(), cv::IMREAD_COLOR);
    if (image.empty()) {
      throw Error("panels: cannot read image '" + path.string() + "' (ref " +
                  std::to_string(ref.ref_id) + " of " + data.instances_file().string() + ")");
    }
    if (image.cols != info.width || image.rows != info.height) {
      throw Error("panels: image '" + path.string() + "' is " + std::to_string(image.cols) + "x" +
                  std::to_string(image.rows) + " but " + data.instances_file().string() + " says " +
                  std::to_string(info.width) + "x" + std::to_string(info.height));
    }
    std::string expression;
    for (const auto& s : ref.sentences) {
      if (s.sent_id == key.sent_id) expression = s.raw;
    }

    const int y = top + row * (kCellHeight + kGap);
    auto place = [&](const cv::Mat3b& cell, int column) {
      cell.copyTo(
          canvas(cv::Rect(kMargin + column * (kCellWidth + kGap), y, kCellWidth, kCellHeight)));
    };
    // 1. The image, the expression on a dark band along its bottom, the sample's ids on top.
    cv::Rect fit;
    cv::Mat3b first = fit_to_cell(image, fit);
    const double scale = 0.55;
    const int line_height = 20;
    const auto lines = wrap("\"" + printable(expression) + "\"", scale, 1, kCellWidth - 16, 4);
    const int band = static_cast<int>(lines.size()) * line_height + 10;
    cv::Mat3b strip = first(cv::Rect(0, kCellHeight - band, kCellWidth, band));
    cv::Mat3b dark(strip.size(), cv::Vec3b(20, 20, 20));
    cv::addWeighted(strip, 0.3, dark, 0.7, 0, strip);
    for (std::size_t l = 0; l < lines.size(); ++l) {
      cv::putText(first, lines[l],
                  {8, kCellHeight - band + 5 + line_height * static_cast<int>(l + 1) - 5}, kFont,
                  scale, kWhite, 1, cv::LINE_AA);
    }
    label(first, "ref " + std::to_string(ref.ref_id) + "  sent " + std::to_string(key.sent_id),
          {4, 4}, 0.45, 1, cv::Scalar(20, 20, 20), cv::Scalar(220, 220, 220));
    place(first, 0);
    // 2. The ground truth.
    const cv::Mat1b truth =
        data::annotation_to_mask(data.annotation(ref.ann_id).segmentation, info.height, info.width);
    place(masked_cell(image, truth, kTruthColour), 1);
    // 3. Each branch, with its IoU.
    for (std::size_t b = 0; b < branches.size(); ++b) {
      cv::Mat3b cell = masked_cell(image, prediction.mask(branches[b]),
                                   kBranchColours[b % kBranchColours.size()]);
      const double iou = iou_of(result, branches[b], i);
      // Truncated, not rounded: 0.799 reads 0.79, in the IP zone where its colour puts it.
      char text[32];
      std::snprintf(text, sizeof(text), "IoU %.2f", std::floor(iou * 100) / 100);
      label(cell, text, {4, 4}, 0.6, 1, zone_colour(iou, t), kWhite);
      place(cell, 2 + static_cast<int>(b));
    }
  }
  if (png.has_parent_path()) std::filesystem::create_directories(png.parent_path());
  if (!cv::imwrite(png.string(), canvas)) throw Error("cannot write '" + png.string() + "'");
}

std::vector<std::filesystem::path> write_panels(const data::ReferDataset& data,
                                                const SplitResult& result,
                                                const std::vector<Prediction>& predictions,
                                                const ErrorThresholds& t, int rows,
                                                const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> written;
  if (rows <= 0) return written;
  for (const CaseKind kind : {CaseKind::kPn, CaseKind::kIp, CaseKind::kNormal}) {
    const auto png = dir / (std::string("panels_") + case_kind_name(kind) + ".png");
    const auto samples = select_cases(result, kind, rows, t);
    if (samples.empty()) {
      // No such case: no file, and none left over from an earlier evaluation of the folder.
      std::error_code ec;
      std::filesystem::remove(png, ec);
      continue;
    }
    draw_panels(data, result, predictions, samples, t,
                kind_title(kind, t) + " | " + result.dataset + " " + result.split, png);
    written.push_back(png);
  }
  return written;
}

}  // namespace wico::eval
