// `wico bench eval`: how fast a split is scored, the model left out. On a data set written for the
// purpose at COCO's image sizes (640x480, 640x427, 427x640, 480x640, 500x375; polygon objects of
// 2% to 50% of the image; three sentences a ref) with three branches of realistic predictions
// (top_down: the object or another one, bottom_up: the object's mask grown, shrunk or shifted,
// fused: the better of the two), measures in one run:
//   1. reading predictions.jsonl and scoring it (eval::read_predictions + eval::score_predictions,
//      what `wico eval --from-predictions` does before writing its outputs): samples/s;
//   2. scoring alone, predictions in memory (ground truth rasterised from the polygons included);
//   3. the pixel baseline: the same scoring with every mask decoded to pixels and compared pixel
//      by pixel (the evaluator's first version);
//   4. a NumPy reference: the same masks (ground truth already rasterised, as uncompressed counts)
//      decoded with np.repeat and compared with logical and/or, as Python evaluation scripts do.
// All four must count the same intersections and unions; a difference is an error.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <opencv2/imgproc.hpp>
#include <random>

#include "wico/core/benchmark.h"
#include "wico/core/error.h"
#include "wico/data/coco_mask.h"
#include "wico/data/pickle.h"
#include "wico/data/refer.h"
#include "wico/eval/evaluator.h"
#include "wico/eval/predictions.h"

namespace wico {

namespace {

namespace fs = std::filesystem;
using data::PyValue;

// COCO's most common image sizes (width x height).
const std::vector<cv::Size> kCocoSizes = {
    {640, 480}, {640, 427}, {427, 640}, {480, 640}, {500, 375}};
const std::vector<std::string> kBranches = {"top_down", "bottom_up", "fused"};

// A star-shaped polygon around a random centre covering about `share` of the image: the outline
// of a real object has a few dozen vertices and a wobbly radius.
std::vector<double> random_object(std::mt19937& rng, cv::Size size, double share) {
  std::uniform_real_distribution<double> u(0, 1);
  const double radius = std::sqrt(share * size.area() / CV_PI);
  const double cx = size.width * (0.25 + 0.5 * u(rng)), cy = size.height * (0.25 + 0.5 * u(rng));
  const int vertices = 16 + static_cast<int>(u(rng) * 32);
  const double phase1 = u(rng) * 6.28, phase2 = u(rng) * 6.28;
  std::vector<double> xy;
  for (int k = 0; k < vertices; ++k) {
    const double a = 2 * CV_PI * k / vertices;
    const double r = radius * (1 + 0.25 * std::sin(3 * a + phase1) +
                               0.1 * std::sin(7 * a + phase2) + 0.08 * (u(rng) - 0.5));
    xy.push_back(std::clamp(cx + r * std::cos(a), 0.0, size.width - 1.0));
    xy.push_back(std::clamp(cy + r * std::sin(a), 0.0, size.height - 1.0));
  }
  return xy;
}

struct BenchSet {
  std::int64_t samples = 0;
  fs::path predictions;  // <root>/eval/val/predictions.jsonl
  fs::path numpy_input;  // the same masks as uncompressed counts, for the NumPy reference
};

// Writes instances.json, refs(unc).p (every ref in "val") and the predictions; no images (scoring
// never reads them).
BenchSet write_bench_set(const fs::path& root, int images) {
  std::mt19937 rng(0);
  std::uniform_real_distribution<double> u(0, 1);
  nlohmann::json coco_images = nlohmann::json::array(), annotations = nlohmann::json::array();
  PyValue::List refs;
  nlohmann::json numpy = nlohmann::json::array();
  fs::create_directories(root / "refcoco");
  fs::create_directories(root / "eval" / "val");
  eval::PredictionWriter writer(root / "eval" / "val" / "predictions.jsonl");
  BenchSet set;
  std::int64_t ann_id = 0, ref_id = 0, sent_id = 0;
  for (int image_id = 1; image_id <= images; ++image_id) {
    const cv::Size size = kCocoSizes[rng() % kCocoSizes.size()];
    coco_images.push_back({{"id", image_id},
                           {"file_name", fmt::format("{:012d}.jpg", image_id)},
                           {"height", size.height},
                           {"width", size.width}});
    // Two objects an image, each referred to once; log-uniform shares of 2% to 50%.
    std::vector<cv::Mat1b> masks;
    for (int k = 0; k < 2; ++k) {
      const double share = 0.02 * std::pow(25.0, u(rng));
      const auto polygon = random_object(rng, size, share);
      ++ann_id;
      annotations.push_back({{"id", ann_id},
                             {"image_id", image_id},
                             {"category_id", 1},
                             {"segmentation", {polygon}},
                             {"area", 0},
                             {"bbox", {0, 0, 1, 1}},
                             {"iscrowd", 0}});
      masks.push_back(data::polygons_to_mask({polygon}, size.height, size.width));
    }
    for (int k = 0; k < 2; ++k) {
      const cv::Mat1b& target = masks[k];
      const cv::Mat1b& other = masks[1 - k];
      nlohmann::json numpy_ref = {{"h", size.height},
                                  {"w", size.width},
                                  {"gt", data::rle_encode(target).counts},
                                  {"samples", nlohmann::json::array()}};
      PyValue::List sentences;
      for (int s = 0; s < 3; ++s, ++sent_id) {
        sentences.push_back(PyValue::dict({{PyValue::string("sent_id"), PyValue::integer(sent_id)},
                                           {PyValue::string("raw"), PyValue::string("object")},
                                           {PyValue::string("sent"), PyValue::string("object")}}));
        // top_down: the right instance (a slightly eroded mask, as a detector's), else the other.
        const bool right = u(rng) < 0.8;
        cv::Mat1b top_down;
        cv::erode(right ? target : other, top_down, cv::Mat(), cv::Point(-1, -1), 1);
        // bottom_up: the object grown or shrunk by up to 12 pixels and shifted a little.
        cv::Mat1b bottom_up;
        const int grow = static_cast<int>(u(rng) * 25) - 12;
        const cv::Mat kernel = cv::getStructuringElement(
            cv::MORPH_ELLIPSE, cv::Size(2 * std::abs(grow) + 1, 2 * std::abs(grow) + 1));
        if (grow >= 0) {
          cv::dilate(target, bottom_up, kernel);
        } else {
          cv::erode(target, bottom_up, kernel);
        }
        const cv::Mat shift = (cv::Mat_<double>(2, 3) << 1, 0, static_cast<int>(u(rng) * 9) - 4, 0,
                               1, static_cast<int>(u(rng) * 9) - 4);
        cv::warpAffine(bottom_up, bottom_up, shift, size, cv::INTER_NEAREST);
        const cv::Mat1b& fused = right ? top_down : bottom_up;
        eval::Prediction p{ref_id, sent_id, image_id, size.height, size.width, {}, {}};
        nlohmann::json numpy_sample = nlohmann::json::array();
        for (const cv::Mat1b* mask :
             std::initializer_list<const cv::Mat1b*>{&top_down, &bottom_up, &fused}) {
          const data::Rle rle = data::rle_encode(*mask);
          p.masks[kBranches[numpy_sample.size()]] = data::rle_to_string(rle);
          numpy_sample.push_back(rle.counts);
        }
        writer.write(p);
        numpy_ref["samples"].push_back(std::move(numpy_sample));
        ++set.samples;
      }
      refs.push_back(PyValue::dict({{PyValue::string("ref_id"), PyValue::integer(ref_id)},
                                    {PyValue::string("ann_id"), PyValue::integer(ann_id - 1 + k)},
                                    {PyValue::string("image_id"), PyValue::integer(image_id)},
                                    {PyValue::string("category_id"), PyValue::integer(1)},
                                    {PyValue::string("split"), PyValue::string("val")},
                                    {PyValue::string("sentences"), PyValue::list(sentences)}}));
      numpy.push_back(std::move(numpy_ref));
      ++ref_id;
    }
  }
  writer.close();
  const nlohmann::json instances = {{"images", coco_images},
                                    {"annotations", annotations},
                                    {"categories", {{{"id", 1}, {"name", "object"}}}}};
  std::ofstream(root / "refcoco" / "instances.json") << instances.dump();
  data::save_pickle(root / "refcoco" / "refs(unc).p", PyValue::list(refs), 2);
  set.predictions = root / "eval" / "val" / "predictions.jsonl";
  set.numpy_input = root / "numpy_input.json";
  std::ofstream(set.numpy_input) << numpy.dump();
  return set;
}

// The evaluator's first version: every mask decoded to pixels and compared pixel by pixel.
std::map<std::string, eval::Overlap> score_on_pixels(const data::ReferDataset& data,
                                                     const std::vector<eval::Prediction>& preds) {
  std::map<std::pair<std::int64_t, std::int64_t>, const eval::Prediction*> by_sample;
  for (const auto& p : preds) by_sample[{p.ref_id, p.sent_id}] = &p;
  std::map<std::string, eval::Overlap> totals;
  for (const data::Ref* ref : data.refs("val")) {
    const auto& image = data.image(ref->image_id);
    const cv::Mat1b target = data::annotation_to_mask(data.annotation(ref->ann_id).segmentation,
                                                      image.height, image.width);
    for (const auto& sentence : ref->sentences) {
      const eval::Prediction& p = *by_sample.at({ref->ref_id, sentence.sent_id});
      for (const auto& branch : kBranches) {
        const eval::Overlap o = eval::overlap(p.mask(branch), target);
        totals[branch].intersection += o.intersection;
        totals[branch].union_ += o.union_;
      }
    }
  }
  return totals;
}

const char* kNumpyReference = R"PY(
import json, time
import numpy as np
refs = json.load(open(INPUT))
def decode(counts, h, w):
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(w, h).T  # COCO's column-major order
def score():
    totals = [[0, 0] for _ in range(3)]
    for ref in refs:
        h, w = ref["h"], ref["w"]
        target = decode(ref["gt"], h, w)
        for sample in ref["samples"]:
            for b, counts in enumerate(sample):
                p = decode(counts, h, w)
                totals[b][0] += int(np.count_nonzero(p & target))
                totals[b][1] += int(np.count_nonzero(p | target))
    return totals
score()
times = []
for _ in range(REPEATS):
    s = time.perf_counter(); totals = score(); times.append(time.perf_counter() - s)
times.sort()
print(json.dumps({"numpy": np.__version__, "seconds": times[len(times) // 2], "totals": totals}))
)PY";

}  // namespace

nlohmann::json bench_eval(const BenchContext& ctx) {
  const int images = ctx.quick ? 40 : 400;
  const ScratchDir scratch("eval");
  const auto& root = scratch.path();
  const BenchSet set = write_bench_set(root, images);
  const auto refer = data::ReferDataset::load(root, "refcoco", "unc");
  const auto settings = eval::EvalSettings::from_config(ctx.config);
  const double n = static_cast<double>(set.samples);

  // 1. Read and score, as `wico eval --from-predictions` does.
  eval::SplitResult result;
  const double full_seconds = median_seconds(
      [&] {
        result = eval::score_predictions(refer, "val", eval::read_predictions(set.predictions),
                                         settings);
      },
      ctx.repeats, ctx.warmup);
  // 2. Scoring alone.
  const auto predictions = eval::read_predictions(set.predictions);
  const double score_seconds =
      median_seconds([&] { result = eval::score_predictions(refer, "val", predictions, settings); },
                     ctx.repeats, ctx.warmup);
  // 3. The pixel baseline.
  std::map<std::string, eval::Overlap> pixel_totals;
  const double pixel_seconds = median_seconds(
      [&] { pixel_totals = score_on_pixels(refer, predictions); }, ctx.repeats, ctx.warmup);
  // 4. NumPy on the same masks.
  std::string script = kNumpyReference;
  auto replace = [&](const std::string& key, const std::string& value) {
    script.replace(script.find(key), key.size(), value);
  };
  replace("INPUT", nlohmann::json(set.numpy_input.string()).dump());
  replace("REPEATS", std::to_string(ctx.repeats));
  const auto reference = run_python_reference(ctx.python, script);

  // Every path must count the same pixels. Our totals: oIoU's sums, recovered exactly from the
  // pixel baseline's and checked against the evaluator's summary.
  for (std::size_t b = 0; b < kBranches.size(); ++b) {
    const auto& totals = pixel_totals.at(kBranches[b]);
    const double oiou = static_cast<double>(static_cast<long double>(totals.intersection) /
                                            static_cast<long double>(totals.union_));
    if (oiou != result.branches.at(kBranches[b]).summary.oiou) {
      throw Error(fmt::format("bench eval: the RLE and pixel paths disagree on {} (oIoU {} vs {})",
                              kBranches[b], result.branches.at(kBranches[b]).summary.oiou, oiou));
    }
    if (!reference.is_null() &&
        (reference["totals"][b][0].get<std::uint64_t>() != totals.intersection ||
         reference["totals"][b][1].get<std::uint64_t>() != totals.union_)) {
      throw Error("bench eval: the NumPy reference counts other pixels on " + kBranches[b]);
    }
  }
  const double full_rate = n / full_seconds, score_rate = n / score_seconds,
               pixel_rate = n / pixel_seconds;
  const double numpy_rate = reference.is_null() ? 0.0 : n / reference["seconds"].get<double>();
  auto ratio = [&](double ours) {
    return numpy_rate > 0 ? fmt::format("{:.1f}x", ours / numpy_rate) : std::string("-");
  };
  std::cout << fmt::format(
      "{} samples ({} refs x 3 sentences, {} images at COCO sizes), {} branches each, median of "
      "{}\n"
      "  {:<44} {:>12} {:>10} {:>10}\n"
      "  {:<44} {:>12.0f} {:>10} {:>10}\n"
      "  {:<44} {:>12.0f} {:>9.1f}x {:>10}\n"
      "  {:<44} {:>12.0f} {:>10} {:>10}\n"
      "  {:<44} {:>12} {:>10} {:>10}\n"
      "all paths counted the same intersections and unions\n",
      set.samples, set.samples / 3, images, kBranches.size(), ctx.repeats, "", "samples/s",
      "vs pixels", "vs NumPy", "read predictions.jsonl + score (RLE)", full_rate, "",
      ratio(full_rate), "score alone (RLE)", score_rate, score_rate / pixel_rate, ratio(score_rate),
      "score alone, masks decoded to pixels", pixel_rate, "1.0x", ratio(pixel_rate),
      "NumPy: decode to pixels + logical and/or",
      numpy_rate > 0 ? fmt::format("{:.0f}", numpy_rate) : "-", "", numpy_rate > 0 ? "1.0x" : "-");
  return {{"benchmark", "eval"},
          {"samples", set.samples},
          {"images", images},
          {"branches", kBranches.size()},
          {"read_and_score_samples_per_s", full_rate},
          {"score_samples_per_s", score_rate},
          {"pixel_baseline_samples_per_s", pixel_rate},
          {"numpy_samples_per_s", numpy_rate > 0 ? nlohmann::json(numpy_rate) : nullptr},
          {"score_vs_pixels", score_rate / pixel_rate},
          {"score_vs_numpy", numpy_rate > 0 ? nlohmann::json(score_rate / numpy_rate) : nullptr},
          {"numpy", reference.is_null() ? nullptr : reference["numpy"]}};
}

}  // namespace wico
