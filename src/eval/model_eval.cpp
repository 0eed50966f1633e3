#include "wico/eval/model_eval.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "wico/core/core_share.h"
#include "wico/core/error.h"
#include "wico/core/progress.h"
#include "wico/core/run_dir.h"
#include "wico/core/stopwatch.h"
#include "wico/data/dataset.h"
#include "wico/data/refer.h"
#include "wico/data/transforms.h"
#include "wico/eval/panels.h"
#include "wico/eval/plots.h"
#include "wico/nn/ris_model.h"

namespace fs = std::filesystem;

namespace wico::eval {

ConfidenceTracking confidence_tracking(const std::vector<double>& confidences,
                                       const std::vector<double>& ious) {
  ConfidenceTracking t;
  t.pearson = pearson_correlation(confidences, ious);
  t.spearman = spearman_correlation(confidences, ious);
  for (double c : confidences) t.mean_confidence += c;
  for (double v : ious) t.mean_iou += v;
  t.mean_confidence /= static_cast<double>(std::max<std::size_t>(confidences.size(), 1));
  t.mean_iou /= static_cast<double>(std::max<std::size_t>(ious.size(), 1));
  return t;
}

namespace {

using Clock = std::chrono::steady_clock;

cv::Mat1f to_mat(const at::Tensor& map2d) {
  const at::Tensor t = map2d.to(at::kCPU, at::kFloat).contiguous();
  cv::Mat1f m(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)));
  std::memcpy(m.data, t.data_ptr<float>(), sizeof(float) * static_cast<std::size_t>(t.numel()));
  return m;
}

cv::Mat1b binarise(const cv::Mat1f& probability, double threshold) {
  cv::Mat1b mask = probability > threshold;
  return mask / 255;
}

// LAVT's definition scores at the input size: the summary of per-branch overlaps computed there.
SplitResult summarise(const std::string& split, const data::ReferDataset& data,
                      const EvalSettings& settings,
                      const std::map<std::string, MetricAccumulator>& accumulators,
                      const std::vector<Prediction>& predictions) {
  SplitResult result;
  for (const auto& p : predictions) result.samples.push_back({p.ref_id, p.sent_id});
  result.split = split;
  result.dataset = data.dataset() + " (" + data.split_by() + ")";
  result.compat = settings.compat;
  summarise_branches(accumulators, settings.thresholds, result);
  return result;
}

}  // namespace

ModelEvalResult evaluate_model(nn::RisModel& model, const data::ReferDataset& data,
                               const std::string& split, const data::Tokenizer& tokenizer,
                               data::LoaderOptions options, const EvalSettings& settings,
                               bool show_progress) {
  const auto start = Clock::now();
  const data::RefDataset dataset(data, split, data::RefDataset::Mode::kEvaluation);
  if (dataset.size() == 0) throw Error("split '" + split + "' of " + data.dataset() + " is empty");
  options.shuffle = false;
  options.drop_last = false;
  options.rank = 0;
  options.world_size = 1;
  const c10::Device device = options.device;
  options.device = c10::Device(c10::kCPU);  // moved below, after the host-side bookkeeping
  data::Loader loader(dataset, tokenizer, options);
  loader.start_epoch(0);

  const bool was_training = model.is_training();
  model.eval();
  c10::InferenceMode inference;
  ModelEvalResult out;
  std::map<std::string, double> branch_seconds;
  double model_seconds = 0;
  std::map<std::string, MetricAccumulator> at_input;  // eval.compat lavt only
  const bool lavt = settings.compat == MetricCompat::kLavt;
  const auto map_back_filter = settings.compat == MetricCompat::kCris ? data::MapBackFilter::kCubic
                                                                      : data::MapBackFilter::kLinear;
  Progress::Options progress_options;
  progress_options.unit = "samples";
  progress_options.mode = show_progress ? ProgressMode::kAuto : ProgressMode::kOff;
  Progress progress("eval " + split, static_cast<std::int64_t>(dataset.size()), progress_options);
  std::map<std::string, std::pair<double, std::int64_t>> spread_sums;
  while (auto host_batch = loader.next()) {
    share_cores_with_load();
    const data::Batch batch = host_batch->to(device);
    synchronize_device(device);  // the clock counts this batch's work, not queued work
    const auto t0 = Clock::now();
    nn::RisOutput output = model.forward(batch, /*with_losses=*/false);
    synchronize_device(device);
    model_seconds += seconds_since(t0);
    for (auto& [name, p] : output.probabilities) p = p.to(at::kCPU, at::kFloat);
    for (auto& [name, c] : output.confidences) c = c.to(at::kCPU, at::kDouble);
    for (const auto& [name, s] : output.seconds) branch_seconds[name] += s;
    for (const auto& [name, sigma] : output.spreads) {
      auto& [sum, count] = spread_sums[name];
      sum += sigma.sum().item<double>();
      count += sigma.numel();
    }
    WICO_CHECK(!output.probabilities.empty(), "the model returned no probability map");
    for (std::int64_t i = 0; i < batch.size(); ++i) {
      const data::SampleInfo& info = batch.info[static_cast<std::size_t>(i)];
      Prediction p;
      p.ref_id = info.ref_id;
      p.sent_id = info.sent_id;
      p.image_id = info.image_id;
      p.height = info.plan.height;
      p.width = info.plan.width;
      for (const auto& [name, probabilities] : output.probabilities) {
        const double threshold = model.threshold(name);
        const cv::Mat1f at_size = to_mat(probabilities[i][0]);
        p.masks[name] = encode_mask(binarise(data::map_back(at_size, info.plan, map_back_filter), threshold));
        if (lavt) {
          const cv::Mat1b target = binarise(to_mat(host_batch->targets[i][0]), 0.5);
          at_input.try_emplace(name, settings.compat);
          at_input.at(name).add(overlap(binarise(at_size, threshold), target));
        }
      }
      for (const auto& [name, confidence] : output.confidences) {
        p.scores[name] = confidence[i].item<double>();
      }
      out.predictions.push_back(std::move(p));
    }
    progress.advance(batch.size());
  }
  progress.finish();
  if (was_training) model.train();
  out.samples = static_cast<std::int64_t>(out.predictions.size());
  out.result = lavt ? summarise(split, data, settings, at_input, out.predictions)
                    : score_predictions(data, split, out.predictions, settings);
  const double per100 = 100.0 / static_cast<double>(std::max<std::int64_t>(out.samples, 1));
  for (const auto& [name, s] : branch_seconds) out.seconds_per_100[name] = s * per100;
  out.seconds_per_100["model"] = model_seconds * per100;
  out.seconds_per_100["total"] = seconds_since(start) * per100;
  out.batch_size = options.batch_size;
  for (const auto& [name, sc] : spread_sums) out.mean_sigma[name] = sc.first / static_cast<double>(std::max<std::int64_t>(sc.second, 1));
  return out;
}

void write_model_eval(const data::ReferDataset& data, const ModelEvalResult& eval,
                      const EvalSettings& settings, const fs::path& dir) {
  write_split_outputs(eval.result, settings, dir);
  write_panels(data, eval.result, eval.predictions, settings.thresholds, settings.panels, dir);
  PredictionWriter writer(dir / "predictions.jsonl");
  for (const auto& p : eval.predictions) writer.write(p);
  writer.close();
  // Add the speed to metrics.json and report.md.
  const fs::path metrics = dir / "metrics.json";
  nlohmann::json j = nlohmann::json::parse(std::ifstream(metrics));
  j["seconds_per_100_samples"] = eval.seconds_per_100;
  j["speed_batch_size"] = eval.batch_size;
  j["samples"] = eval.samples;
  std::string extra = fmt::format("\nSeconds per 100 samples (batch {}):", eval.batch_size);
  for (const auto& [name, s] : eval.seconds_per_100) extra += fmt::format(" {} {:.2f};", name, s);
  extra.back() = '\n';
  // Figure 5 where the model predicts confidences (predictions and IoUs paired by sample), and
  // the same as numbers: how well each confidence tracks its branch's IoU.
  std::map<std::pair<std::int64_t, std::int64_t>, const Prediction*> by_sample;
  for (const auto& p : eval.predictions) by_sample[{p.ref_id, p.sent_id}] = &p;
  nlohmann::json tracking = nlohmann::json::object();
  std::string table;
  for (const auto& [name, branch] : eval.result.branches) {
    std::vector<double> confidences, ious;
    for (std::size_t i = 0; i < eval.result.samples.size(); ++i) {
      const SampleKey& key = eval.result.samples[i];
      const Prediction& p = *by_sample.at({key.ref_id, key.sent_id});
      auto it = p.scores.find(name);
      if (it == p.scores.end()) break;
      confidences.push_back(it->second);
      ious.push_back(branch.ious.at(i));
    }
    if (confidences.size() != eval.result.samples.size() || confidences.empty()) continue;
    plot_confidence_density(confidences, ious, name, dir / ("confidence_" + name + ".png"));
    const ConfidenceTracking t = confidence_tracking(confidences, ious);
    nlohmann::json entry = {{"pearson", t.pearson}, {"spearman", t.spearman},
                            {"mean_confidence", t.mean_confidence}, {"mean_iou", t.mean_iou}};
    const auto sigma = eval.mean_sigma.find(name);
    if (sigma != eval.mean_sigma.end()) entry["mean_sigma"] = sigma->second;
    tracking[name] = entry;
    table += fmt::format("| {} | {:.3f} | {:.3f} | {:.3f} | {:.3f} | {} |\n", name, t.pearson, t.spearman,
                         t.mean_confidence, t.mean_iou,
                         sigma != eval.mean_sigma.end() ? fmt::format("{:.3f}", sigma->second) : "-");
  }
  if (!table.empty()) {
    j["confidence"] = tracking;
    extra += "\nConfidence against the branch's IoU (Figure 5 as numbers):\n\n"
             "| branch | Pearson r | Spearman rho | mean confidence | mean IoU | mean sigma |\n"
             "|---|---:|---:|---:|---:|---:|\n" + table;
  }
  atomic_write(metrics, j.dump(2) + "\n");
  std::ifstream report_in(dir / "report.md");
  std::string report((std::istreambuf_iterator<char>(report_in)), {});
  atomic_write(dir / "report.md", report + extra);
}

}  // namespace wico::eval
