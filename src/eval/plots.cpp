#include "wico/eval/plots.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "wico/core/error.h"

namespace wico::eval {

namespace {

// A round upper limit for a share axis and its tick count: steps of 0.05 up to 0.3, else 0.1.
std::pair<double, int> share_axis(double top) {
  const double step = top <= 0.3 ? 0.05 : 0.1;
  const int ticks = std::max(2, static_cast<int>(std::ceil(top / step - 1e-9)));
  return {ticks * step, ticks};
}

const cv::Scalar kInk(40, 40, 40), kGrid(225, 225, 225), kWhite(255, 255, 255);
// Distinguishable colours (BGR), in legend order.
const std::vector<cv::Scalar> kPalette = {{180, 119, 31}, {14, 127, 255}, {44, 160, 44},
                                          {40, 39, 214},  {189, 103, 148}, {75, 86, 140}};

// A plot area with axes, ticks and labels; maps data coordinates to pixels.
struct Axes {
  cv::Mat3b canvas;
  cv::Rect area;
  double x0, x1, y0, y1;

  Axes(int width, int height, double xmin, double xmax, double ymin, double ymax,
       const std::string& title, const std::string& xlabel, const std::string& ylabel)
      : canvas(height, width, cv::Vec3b(255, 255, 255)),
        area(80, 50, width - 110, height - 120),
        x0(xmin), x1(xmax), y0(ymin), y1(ymax) {
    text(title, {area.x, 32}, 0.7, kInk, 2);
    text(xlabel, {area.x + area.width / 2 - 6 * static_cast<int>(xlabel.size()) / 2,
                  area.br().y + 50}, 0.55, kInk, 1);
    // Vertical y label: drawn on a rotated strip.
    cv::Mat3b strip(28, area.height, cv::Vec3b(255, 255, 255));
    cv::putText(strip, ylabel, {area.height / 2 - 5 * static_cast<int>(ylabel.size()), 20},
                cv::FONT_HERSHEY_SIMPLEX, 0.55, kInk, 1, cv::LINE_AA);
    cv::Mat3b rotated;
    cv::rotate(strip, rotated, cv::ROTATE_90_COUNTERCLOCKWISE);
    rotated.copyTo(canvas(cv::Rect(8, area.y, rotated.cols, rotated.rows)));
  }
  cv::Point at(double x, double y) const {
    return {area.x + static_cast<int>(std::lround((x - x0) / (x1 - x0) * area.width)),
            area.br().y - static_cast<int>(std::lround((y - y0) / (y1 - y0) * area.height))};
  }
  void text(const std::string& s, cv::Point p, double scale, cv::Scalar colour, int thickness) {
    cv::putText(canvas, s, p, cv::FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv::LINE_AA);
  }
  void grid_and_ticks(int xticks, int yticks, const char* xfmt, const char* yfmt) {
    char buffer[32];
    for (int i = 0; i <= yticks; ++i) {
      const double v = y0 + (y1 - y0) * i / yticks;
      const cv::Point p = at(x0, v);
      cv::line(canvas, p, at(x1, v), kGrid, 1);
      std::snprintf(buffer, sizeof(buffer), yfmt, v);
      text(buffer, {p.x - 8 - 9 * static_cast<int>(std::string(buffer).size()), p.y + 5}, 0.45,
           kInk, 1);
    }
    for (int i = 0; xticks > 0 && i <= xticks; ++i) {
      const double v = x0 + (x1 - x0) * i / xticks;
      const cv::Point p = at(v, y0);
      cv::line(canvas, p, {p.x, p.y + 5}, kInk, 1);
      std::snprintf(buffer, sizeof(buffer), xfmt, v);
      text(buffer, {p.x - 4 * static_cast<int>(std::string(buffer).size()), p.y + 22}, 0.45,
           kInk, 1);
    }
  }
  void frame() { cv::rectangle(canvas, area, kInk, 1); }
  void legend(const std::vector<std::pair<std::string, cv::Scalar>>& entries) {
    int widest = 0;
    for (const auto& [name, colour] : entries) {
      int baseline = 0;
      widest = std::max(widest, cv::getTextSize(name, cv::FONT_HERSHEY_SIMPLEX, 0.5, 1,
                                                &baseline).width);
    }
    int y = area.y + 20;
    const int x = area.br().x - widest - 42;
    cv::rectangle(canvas, cv::Rect(x - 6, area.y + 4, widest + 44, 22 * int(entries.size()) + 6),
                  kWhite, cv::FILLED);
    cv::rectangle(canvas, cv::Rect(x - 6, area.y + 4, widest + 44, 22 * int(entries.size()) + 6),
                  kGrid, 1);
    for (const auto& [name, colour] : entries) {
      cv::rectangle(canvas, cv::Rect(x, y - 11, 22, 12), colour, cv::FILLED);
      text(name, {x + 30, y}, 0.5, kInk, 1);
      y += 22;
    }
  }
  void save(const std::filesystem::path& png) {
    frame();
    if (png.has_parent_path()) std::filesystem::create_directories(png.parent_path());
    if (!cv::imwrite(png.string(), canvas)) throw Error("cannot write '" + png.string() + "'");
  }
};

}  // namespace

void plot_iou_distribution(const std::vector<Series>& series, const ErrorThresholds& t,
                           const std::filesystem::path& png, int bins) {
  WICO_CHECK(!series.empty(), "nothing to plot");
  double top = 0.05;
  std::vector<std::vector<double>> shares;
  for (const auto& s : series) {
    const auto counts = iou_histogram(s.ious, bins);
    std::vector<double> share;
    for (auto c : counts) share.push_back(s.ious.empty() ? 0.0 : double(c) / s.ious.size());
    top = std::max(top, *std::max_element(share.begin(), share.end()));
    shares.push_back(std::move(share));
  }
  const auto [axis_top, yticks] = share_axis(top * 1.05);
  top = axis_top;
  Axes ax(900, 520, 0, 1, 0, top, "IoU distribution per branch", "IoU", "share of samples");
  // The paper's error zones: PN (almost no overlap) and IP (imprecise but right object).
  cv::Mat3b overlay = ax.canvas.clone();
  cv::rectangle(overlay, cv::Rect(ax.at(0, top), ax.at(t.pn_max, 0)), cv::Scalar(200, 200, 255),
                cv::FILLED);
  cv::rectangle(overlay, cv::Rect(ax.at(t.ip_min, top), ax.at(t.ip_max, 0)),
                cv::Scalar(200, 235, 255), cv::FILLED);
  cv::addWeighted(overlay, 0.6, ax.canvas, 0.4, 0, ax.canvas);
  // Zone names sit at the top left of each zone, below the legend's corner.
  ax.text("PN", {ax.at(0, top).x + 4, ax.area.y + 18}, 0.5, cv::Scalar(30, 30, 170), 1);
  ax.text("IP", {ax.at(t.ip_min, top).x + 4, ax.area.y + 18}, 0.5, cv::Scalar(0, 110, 170), 1);
  ax.grid_and_ticks(10, yticks, "%.1f", "%.2f");
  const double width = 1.0 / bins, bar = width / (series.size() + 1);
  std::vector<std::pair<std::string, cv::Scalar>> legend;
  for (std::size_t k = 0; k < series.size(); ++k) {
    const cv::Scalar colour = kPalette[k % kPalette.size()];
    for (int b = 0; b < bins; ++b) {
      const double x = b * width + bar * (k + 0.5);
      cv::rectangle(ax.canvas, cv::Rect(ax.at(x, shares[k][b]), ax.at(x + bar, 0)), colour,
                    cv::FILLED);
    }
    char label[160];
    std::snprintf(label, sizeof(label), "%s  PN %.1f%%  IP %.1f%%", series[k].name.c_str(),
                  100 * pn_rate(series[k].ious, t), 100 * ip_rate(series[k].ious, t));
    legend.emplace_back(label, colour);
  }
  ax.legend(legend);
  ax.save(png);
}

void plot_confidence_density(const std::vector<double>& confidence, const std::vector<double>& iou,
                             const std::string& title, const std::filesystem::path& png) {
  WICO_CHECK(confidence.size() == iou.size(), "confidence and IoU need the same samples");
  const int cells = 40;
  cv::Mat1f density = cv::Mat1f::zeros(cells, cells);
  for (std::size_t i = 0; i < iou.size(); ++i) {
    const int cx = std::clamp(static_cast<int>(confidence[i] * cells), 0, cells - 1);
    const int cy = std::clamp(static_cast<int>(iou[i] * cells), 0, cells - 1);
    density(cells - 1 - cy, cx) += 1;
  }
  cv::GaussianBlur(density, density, cv::Size(5, 5), 1.0);
  double max = 0;
  cv::minMaxLoc(density, nullptr, &max);
  Axes ax(620, 600, 0, 1, 0, 1, title, "predicted confidence", "real IoU");
  cv::Mat1b scaled;
  density.convertTo(scaled, CV_8U, max > 0 ? 255.0 / max : 0.0);
  cv::Mat3b coloured;
  cv::applyColorMap(255 - scaled, coloured, cv::COLORMAP_BONE);
  cv::resize(coloured, coloured, ax.area.size(), 0, 0, cv::INTER_LINEAR);
  coloured.copyTo(ax.canvas(ax.area));
  cv::line(ax.canvas, ax.at(0, 0), ax.at(1, 1), cv::Scalar(40, 40, 200), 1, cv::LINE_AA);
  ax.grid_and_ticks(5, 5, "%.1f", "%.1f");
  ax.text("ideal: confidence = IoU", {ax.area.x + 10, ax.area.y + 20}, 0.5,
          cv::Scalar(40, 40, 200), 1);
  ax.save(png);
}

void plot_mer_bars(const std::vector<std::pair<std::string, double>>& bars,
                   const std::filesystem::path& png) {
  WICO_CHECK(!bars.empty(), "nothing to plot");
  double top = 0.1;
  for (const auto& [name, v] : bars) top = std::max(top, v);
  const auto [axis_top, yticks] = share_axis(top * 1.1);
  top = axis_top;
  Axes ax(std::max(620, 160 * static_cast<int>(bars.size()) + 140), 480, 0,
          static_cast<double>(bars.size()), 0, top, "Mutually exclusive rate (MER) per model pair",
          "model pair", "MER");
  ax.grid_and_ticks(0, yticks, "%.0f", "%.2f");
  for (std::size_t k = 0; k < bars.size(); ++k) {
    const double v = bars[k].second;
    cv::rectangle(ax.canvas, cv::Rect(ax.at(k + 0.2, v), ax.at(k + 0.8, 0)),
                  kPalette[k % kPalette.size()], cv::FILLED);
    char value[32];
    std::snprintf(value, sizeof(value), "%.1f%%", 100 * v);
    ax.text(value, {ax.at(k + 0.35, v).x, ax.at(k, v).y - 6}, 0.5, kInk, 1);
    const std::string& name = bars[k].first;
    ax.text(name.substr(0, 20), {ax.at(k + 0.5, 0).x - 4 * static_cast<int>(std::min<std::size_t>(name.size(), 20)),
                                 ax.area.br().y + 22}, 0.45, kInk, 1);
  }
  ax.save(png);
}

}  // namespace wico::eval
