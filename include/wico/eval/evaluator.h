// Scores the predictions of one split against the ground truth at the original resolution and
// writes eval/<split>/{metrics.json, report.md, iou_distribution.png}. Works from a predictions
// file (`wico eval --from-predictions`), so metrics can be recomputed without the model.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "wico/eval/metrics.h"
#include "wico/eval/predictions.h"

namespace wico {
class Config;
}
namespace wico::data {
class ReferDataset;
}

namespace wico::eval {

struct EvalSettings {
  MetricCompat compat = MetricCompat::kDefault;
  ErrorThresholds thresholds;
  static EvalSettings from_config(const Config& config);
};

struct BranchResult {
  MetricSummary summary;
  std::vector<double> ious;  // per sample, in the split's sample order
  double pn = 0, ip = 0;
};

struct SplitResult {
  std::string split;
  std::string dataset;  // "refcoco (unc)"
  MetricCompat compat = MetricCompat::kDefault;
  std::map<std::string, BranchResult> branches;
  std::map<std::string, double> mer;  // "top_down|bottom_up" -> MER, for each branch pair
};

// Every sample (ref, sentence) of `split` must have exactly one prediction; a missing or
// unexpected one is a wico::Error naming it. Branches are those present in every prediction.
SplitResult score_predictions(const data::ReferDataset& data, const std::string& split,
                              const std::vector<Prediction>& predictions,
                              const EvalSettings& settings);

// metrics.json, report.md and iou_distribution.png in `dir` (created).
void write_split_outputs(const SplitResult& result, const EvalSettings& settings,
                         const std::filesystem::path& dir);
// The markdown table of one split, one row per branch (the paper's columns).
std::string report_markdown(const SplitResult& result);

}  // namespace wico::eval
