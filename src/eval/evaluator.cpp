#include "wico/eval/evaluator.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/core/run_dir.h"
#include "wico/core/schema.h"
#include "wico/data/coco_mask.h"
#include "wico/data/refer.h"
#include "wico/eval/plots.h"

namespace wico::eval {

EvalSettings EvalSettings::from_config(const Config& config) {
  EvalSettings s;
  s.compat = parse_compat(config.text("eval.compat"));
  s.thresholds.pn_max = config.real("eval.pn_max");
  s.thresholds.ip_min = config.real("eval.ip_min");
  s.thresholds.ip_max = config.real("eval.ip_max");
  s.thresholds.mer_threshold = config.real("eval.mer_threshold");
  s.panels = static_cast<int>(config.integer("eval.panels"));
  return s;
}

SplitResult score_predictions(const data::ReferDataset& data, const std::string& split,
                              const std::vector<Prediction>& predictions,
                              const EvalSettings& settings) {
  if (settings.compat == MetricCompat::kLavt) {
    throw ConfigError("eval.compat lavt scores the model's 480x480 outputs; a predictions file "
                      "holds original-resolution masks (use default, cris or vlt)");
  }
  std::map<std::pair<std::int64_t, std::int64_t>, const Prediction*> by_sample;
  for (const auto& p : predictions) {
    if (!by_sample.emplace(std::make_pair(p.ref_id, p.sent_id), &p).second) {
      throw Error("two predictions for ref " + std::to_string(p.ref_id) + " sentence " +
                  std::to_string(p.sent_id));
    }
  }
  // Branches: those every prediction has.
  std::set<std::string> branches;
  if (!predictions.empty()) {
    for (const auto& [name, rle] : predictions[0].masks) branches.insert(name);
  }
  for (const auto& p : predictions) {
    for (auto it = branches.begin(); it != branches.end();) {
      it = p.masks.count(*it) ? std::next(it) : branches.erase(it);
    }
  }
  SplitResult result;
  result.split = split;
  result.dataset = data.dataset() + " (" + data.split_by() + ")";
  result.compat = settings.compat;
  // Every check first (so an error names the first bad sample in split order), then the counting.
  // Ground truth is rasterised once per annotation, as an RLE: scoring walks runs, not pixels.
  struct Sample {
    const Prediction* prediction;
    const data::Rle* target;
  };
  std::vector<Sample> samples;
  std::unordered_map<std::int64_t, data::Rle> targets;  // node-based: pointers stay valid
  for (const data::Ref* ref : data.refs(split)) {
    const auto& image = data.image(ref->image_id);
    auto [target, added] = targets.try_emplace(ref->ann_id);
    if (added) {
      target->second = data::annotation_to_rle(data.annotation(ref->ann_id).segmentation,
                                               image.height, image.width);
    }
    for (const auto& sentence : ref->sentences) {
      auto it = by_sample.find({ref->ref_id, sentence.sent_id});
      if (it == by_sample.end()) {
        throw Error("no prediction for ref " + std::to_string(ref->ref_id) + " sentence " +
                    std::to_string(sentence.sent_id) + " of split " + split + " (" +
                    std::to_string(predictions.size()) + " predictions given)");
      }
      const Prediction& p = *it->second;
      if (p.height != image.height || p.width != image.width) {
        throw Error("prediction for ref " + std::to_string(ref->ref_id) + " is " +
                    std::to_string(p.width) + "x" + std::to_string(p.height) + ", its image " +
                    std::to_string(image.width) + "x" + std::to_string(image.height));
      }
      samples.push_back({&p, &target->second});
      result.samples.push_back({ref->ref_id, sentence.sent_id});
    }
  }
  if (samples.size() != predictions.size()) {
    throw Error(std::to_string(predictions.size() - samples.size()) + " predictions are not "
                "samples of split " + split + " (wrong split or data set?)");
  }
  std::map<std::string, MetricAccumulator> accumulators;
  for (const auto& b : branches) accumulators.emplace(b, MetricAccumulator(settings.compat));
  for (const Sample& sample : samples) {
    for (auto& [name, acc] : accumulators) {
      acc.add(overlap(sample.prediction->rle(name), *sample.target));
    }
  }
  summarise_branches(accumulators, settings.thresholds, result);
  return result;
}

void summarise_branches(const std::map<std::string, MetricAccumulator>& accumulators,
                        const ErrorThresholds& thresholds, SplitResult& result) {
  for (const auto& [name, acc] : accumulators) {
    BranchResult r;
    r.summary = acc.summary();
    r.ious = acc.ious();
    r.pn = pn_rate(r.ious, thresholds);
    r.ip = ip_rate(r.ious, thresholds);
    result.branches[name] = std::move(r);
  }
  for (auto a = result.branches.begin(); a != result.branches.end(); ++a) {
    for (auto b = std::next(a); b != result.branches.end(); ++b) {
      result.mer[a->first + "|" + b->first] =
          mutual_error_rate(a->second.ious, b->second.ious, thresholds);
    }
  }
}

std::string report_markdown(const SplitResult& r) {
  std::ostringstream out;
  char line[512];
  out << "## " << r.dataset << " " << r.split << " (metrics: " << compat_name(r.compat)
      << ")\n\n";
  out << "| branch | samples | oIoU | mIoU | P@0.5 | P@0.6 | P@0.7 | P@0.8 | P@0.9 | PN | IP |\n";
  out << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& [name, b] : r.branches) {
    const auto& s = b.summary;
    std::snprintf(line, sizeof(line),
                  "| %s | %lld | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
                  name.c_str(), static_cast<long long>(s.samples), 100 * s.oiou, 100 * s.miou,
                  100 * s.precision[0], 100 * s.precision[1], 100 * s.precision[2],
                  100 * s.precision[3], 100 * s.precision[4], 100 * b.pn, 100 * b.ip);
    out << line;
  }
  if (!r.mer.empty()) {
    out << "\n| branch pair | MER |\n|---|---:|\n";
    for (const auto& [pair, v] : r.mer) {
      std::snprintf(line, sizeof(line), "| %s | %.2f |\n", pair.c_str(), 100 * v);
      out << line;
    }
  }
  out << "\nAll figures in %. oIoU = sum I / sum U; mIoU = mean per-sample IoU; P@X = share of "
         "samples with IoU above X; PN = IoU below the PN threshold; IP = IoU in the IP zone; "
         "MER = share of samples where exactly one branch of the pair is right.\n";
  return out.str();
}

void write_split_outputs(const SplitResult& r, const EvalSettings& settings,
                         const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  nlohmann::json j = {{"split", r.split}, {"dataset", r.dataset},
                      {"compat", compat_name(r.compat)}, {"branches", nlohmann::json::object()},
                      {"mer", r.mer}};
  for (const auto& [name, b] : r.branches) {
    const auto& s = b.summary;
    nlohmann::json precision = nlohmann::json::object();
    for (std::size_t k = 0; k < kPrecisionThresholds.size(); ++k) {
      char key[16];
      std::snprintf(key, sizeof(key), "%.1f", kPrecisionThresholds[k]);
      precision[key] = s.precision[k];
    }
    j["branches"][name] = {{"samples", s.samples}, {"miou", s.miou}, {"oiou", s.oiou},
                           {"precision", precision}, {"pn_rate", b.pn}, {"ip_rate", b.ip},
                           {"iou_histogram", iou_histogram(b.ious, 20)}};
  }
  atomic_write(dir / "metrics.json", j.dump(2) + "\n");
  atomic_write(dir / "report.md", report_markdown(r));
  std::vector<Series> series;
  for (const auto& [name, b] : r.branches) series.push_back({name, b.ious});
  if (!series.empty()) plot_iou_distribution(series, settings.thresholds, dir / "iou_distribution.png");
}

std::vector<std::pair<std::string, double>> read_mer_bars(
    const std::vector<std::pair<std::string, std::filesystem::path>>& evaluations,
    const std::string& split, const std::string& pair) {
  // metrics.json keys a pair by its two branch names in alphabetical order.
  auto normalise = [](const std::string& p) {
    const auto bar = p.find_first_of("|,");
    if (bar == std::string::npos) {
      throw ConfigError("branch pair '" + p + "' must be two branch names joined by '|' or ',', "
                        "e.g. bottom_up|top_down");
    }
    std::string a = p.substr(0, bar), b = p.substr(bar + 1);
    if (b < a) std::swap(a, b);
    return a + "|" + b;
  };
  const std::string wanted = pair.empty() ? "" : normalise(pair);
  std::vector<std::pair<std::string, double>> bars;
  for (const auto& [label, folder] : evaluations) {
    const auto file = folder / split / "metrics.json";
    std::ifstream in(file);
    if (!in) {
      throw Error("cannot read '" + file.string() + "' (evaluate split " + split + " first)");
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw Error(file.string() + ": malformed JSON: " + e.what());
    }
    const auto mer = j.value("mer", nlohmann::json::object());
    std::string have;
    for (const auto& [key, value] : mer.items()) have += (have.empty() ? "" : ", ") + key;
    // Figure 7's pair where the file has it; otherwise the file's only pair.
    std::string key = wanted;
    if (key.empty()) {
      key = mer.contains("bottom_up|top_down") || mer.size() != 1 ? "bottom_up|top_down"
                                                                  : mer.begin().key();
    }
    if (!mer.contains(key) || !mer[key].is_number()) {
      throw Error(file.string() + " has no MER for " + key + " (it has: " +
                  (have.empty() ? "none, a single branch" : have) + "); choose one with --pair");
    }
    bars.emplace_back(label, mer[key].get<double>());
  }
  return bars;
}

}  // namespace wico::eval

namespace wico {

void add_eval_keys(Schema& schema) {
  schema.text("eval.compat", "default",
              "metric definitions: default, or an original's (lavt, cris, vlt) to line numbers "
              "up with its published tables", {"default", "lavt", "cris", "vlt"})
      .real("eval.tau", 0.35, "threshold on the probability map (the paper's tau)", 0.0, 1.0)
      .real("eval.pn_max", 0.05, "PN: samples with IoU below this (DESIGN decision 5)", 0.0, 1.0)
      .real("eval.ip_min", 0.5, "IP zone lower bound", 0.0, 1.0)
      .real("eval.ip_max", 0.8, "IP zone upper bound", 0.0, 1.0)
      .real("eval.mer_threshold", 0.5, "MER: a branch is right when its IoU is above this", 0.0,
            1.0)
      .integer("eval.panels", 4,
               "qualitative panels: rows per kind (PN, IP, normal) in eval/<split>/panels_*.png; "
               "0: none", 0, 100)
      .integer("eval.batch_size", 0,
               "samples per forward in wico eval (0: data.batch_size); the seconds per 100 "
               "samples are timed at this batch (the paper's Table 3: 1)", 0, 65536);
}

}  // namespace wico
