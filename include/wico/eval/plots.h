// The paper's pictures, drawn with OpenCV as PNG files:
//   Figure 2  IoU distribution of each branch and of the fused result, PN and IP zones marked
//   Figure 5  predicted confidence against real IoU, as a density plot
//   Figure 7  MER bars per model pair
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "wico/eval/metrics.h"

namespace wico::eval {

struct Series {
  std::string name;          // legend text, e.g. "top-down (MAttNet)"
  std::vector<double> ious;  // one per sample
};

void plot_iou_distribution(const std::vector<Series>& series, const ErrorThresholds& thresholds,
                           const std::filesystem::path& png, int bins = 20);

// Density of (predicted confidence, real IoU) pairs, both on [0, 1].
void plot_confidence_density(const std::vector<double>& confidence, const std::vector<double>& iou,
                             const std::string& title, const std::filesystem::path& png);

// One bar per model pair, e.g. {"LAVT + MAttNet", 0.21}.
void plot_mer_bars(const std::vector<std::pair<std::string, double>>& bars,
                   const std::filesystem::path& png);

}  // namespace wico::eval
