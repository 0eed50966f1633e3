// Evaluates a model on one split: runs it over every sample (each sentence of each ref), maps
// each branch's probability map back to the original image, binarises it at the model's
// threshold for that branch, scores it, and keeps the predictions (RLE) so the metrics can be
// recomputed later without the model. Also times each branch (seconds per 100 samples).
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "wico/data/loader.h"
#include "wico/eval/evaluator.h"
#include "wico/eval/predictions.h"

namespace wico::nn {
class RisModel;
}
namespace wico::data {
class Tokenizer;
class ReferDataset;
}

namespace wico::eval {

struct ModelEvalResult {
  SplitResult result;
  std::vector<Prediction> predictions;
  // Branch -> seconds per 100 samples of that branch's part of the forward; "model" is the whole
  // forward, "total" adds data loading and scoring.
  std::map<std::string, double> seconds_per_100;
  std::int64_t batch_size = 0;  // of the timed forwards
  // Branch -> mean sigma of its GSI confidence over the split (branches that predict one).
  std::map<std::string, double> mean_sigma;
  std::int64_t samples = 0;
};

// How a branch's confidence tracks its per-sample IoU (the paper's Figure 5 as numbers).
struct ConfidenceTracking {
  double pearson = 0, spearman = 0, mean_confidence = 0, mean_iou = 0;
};
ConfidenceTracking confidence_tracking(const std::vector<double>& confidences,
                                       const std::vector<double>& ious);

// `options` are the loader's (batch size, input size, device...); shuffle is turned off.
// eval.compat lavt scores at the input size against the loader's (nearest-resized) target, as
// LAVT does; every other definition scores at the original resolution.
ModelEvalResult evaluate_model(nn::RisModel& model, const data::ReferDataset& data,
                               const std::string& split, const data::Tokenizer& tokenizer,
                               data::LoaderOptions options, const EvalSettings& settings,
                               bool show_progress = true);

// Writes eval/<split>/: predictions.jsonl, metrics.json (with the speed and, for each branch with
// a confidence, its Pearson / Spearman correlation with the branch's IoU: "confidence"), report.md,
// the plots (IoU distribution, confidence density where the model predicts one) and the panels.
void write_model_eval(const data::ReferDataset& data, const ModelEvalResult& eval,
                      const EvalSettings& settings, const std::filesystem::path& dir);

}  // namespace wico::eval
