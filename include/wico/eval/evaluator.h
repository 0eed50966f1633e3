// Scores the predictions of one split against the ground truth at the original resolution and
// writes eval/<split>/{metrics.json, report.md, iou_distribution.png}. Works from a predictions
// file (`wico eval --from-predictions`), so metrics can be recomputed without the model.
#pragma once

#include <filesystem>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
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
  int panels = 4;  // rows per kind of qualitative panel (eval.panels; 0: none)
  static EvalSettings from_config(const Config& config);
};

struct BranchResult {
  MetricSummary summary;
  std::vector<double> ious;  // per sample, in the split's sample order
  double pn = 0, ip = 0;
};

// One sample: a sentence of a ref.
struct SampleKey {
  std::int64_t ref_id = 0;
  std::int64_t sent_id = 0;
};

struct SplitResult {
  std::string split;
  std::string dataset;  // "refcoco (unc)"
  MetricCompat compat = MetricCompat::kDefault;
  std::map<std::string, BranchResult> branches;
  std::map<std::string, double> mer;  // "top_down|bottom_up" -> MER, for each branch pair
  std::vector<SampleKey> samples;     // the split's samples, in the order of BranchResult::ious
};

// Every sample (ref, sentence) of `split` must have exactly one prediction; a missing or
// unexpected one is a wico::Error naming it. Branches are those present in every prediction.
// Counts on RLE runs (overlap(Rle, Rle)), the ground truth rasterised once per annotation: the
// same counts as pixel by pixel, some 20x faster (docs/performance.md, `wico bench eval`).
SplitResult score_predictions(const data::ReferDataset& data, const std::string& split,
                              const std::vector<Prediction>& predictions,
                              const EvalSettings& settings);

// Fills result.branches (summary, IoUs, PN and IP rates) and result.mer (every branch pair) from
// per-branch accumulators of the split's samples.
void summarise_branches(const std::map<std::string, MetricAccumulator>& accumulators,
                        const ErrorThresholds& thresholds, SplitResult& result);

// metrics.json, report.md and iou_distribution.png in `dir` (created).
void write_split_outputs(const SplitResult& result, const EvalSettings& settings,
                         const std::filesystem::path& dir);
// The markdown table of one split, one row per branch (the paper's columns).
std::string report_markdown(const SplitResult& result);

// Figure 7 across evaluations: one bar per evaluation (label, folder holding
// <split>/metrics.json), the MER of one branch pair. `pair` is "a|b" or "a,b" in either order;
// empty means bottom_up|top_down where a file has it, else the file's only pair. A missing file,
// or a file without the pair, is a wico::Error naming the file and the pairs it has.
std::vector<std::pair<std::string, double>> read_mer_bars(
    const std::vector<std::pair<std::string, std::filesystem::path>>& evaluations,
    const std::string& split, const std::string& pair);

}  // namespace wico::eval
