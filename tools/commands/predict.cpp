// `wico predict`: segments what an expression refers to in one image (or a list of them) with a
// trained checkpoint; writes the binary mask and an overlay picture, prints the confidence when
// the model predicts one.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "../commands.h"
#include "wico/core/core_share.h"
#include "wico/core/error.h"
#include "wico/eval/predictor.h"

namespace fs = std::filesystem;

namespace wico::tool {

namespace {

struct Job {
  fs::path image;
  std::string text;
  std::string name;  // output file stem
};

std::vector<Job> read_batch_file(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw ConfigError("--batch file '" + file.string() + "' cannot be read");
  nlohmann::json list;
  try {
    list = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // malformed, or a number beyond double's range
    throw ConfigError("--batch file '" + file.string() + "' is not valid JSON: " + e.what());
  }
  if (!list.is_array()) {
    throw ConfigError("--batch file '" + file.string() +
                      "' must be a list of {\"image\": ..., \"text\": ..., \"name\": optional}");
  }
  std::vector<Job> jobs;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto& item = list[i];
    const std::string where = "--batch file '" + file.string() + "' entry " + std::to_string(i);
    if (!item.is_object() || !item.contains("image") || !item["image"].is_string() ||
        !item.contains("text") || !item["text"].is_string()) {
      throw ConfigError(where + ": expected {\"image\": \"path\", \"text\": \"expression\"}");
    }
    Job job;
    job.image = item["image"].get<std::string>();
    if (job.image.is_relative()) job.image = file.parent_path() / job.image;
    job.text = item["text"].get<std::string>();
    job.name = item.value("name", job.image.stem().string() + "_" + std::to_string(i));
    jobs.push_back(std::move(job));
  }
  return jobs;
}

}  // namespace

Action add_predict_command(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "predict", "segment the object an expression refers to: mask PNG, overlay PNG, confidence");
  struct Options {
    std::string checkpoint, image, text, batch, out = "predictions";
    std::vector<std::string> overrides;
  };
  auto o = std::make_shared<Options>();
  sub->add_option("--checkpoint", o->checkpoint, "a checkpoint written by wico train")
      ->required();
  sub->add_option("--image", o->image, "the image (JPEG, PNG, ...)");
  sub->add_option("--text", o->text, "the referring expression");
  sub->add_option("--batch", o->batch,
                  "a JSON list of {\"image\", \"text\", \"name\"} (relative to the list's folder)");
  sub->add_option("--out", o->out, "output folder")->capture_default_str();
  sub->add_option("--set", o->overrides, "override a key of the checkpoint's config, e.g. "
                                         "--set runtime.device=cpu")
      ->type_name("KEY=VALUE");
  return [o]() {
    std::vector<Job> jobs;
    if (!o->batch.empty()) {
      if (!o->image.empty() || !o->text.empty()) {
        throw ConfigError("give either --batch or --image with --text, not both");
      }
      jobs = read_batch_file(o->batch);
    } else {
      if (o->image.empty() || o->text.empty()) {
        throw ConfigError("wico predict needs --image and --text (or --batch list.json)");
      }
      jobs.push_back({o->image, o->text, fs::path(o->image).stem().string()});
    }
    // Check every input before loading the model.
    for (const auto& job : jobs) eval::read_image(job.image);
    eval::Predictor predictor(o->checkpoint, o->overrides);
    fs::create_directories(o->out);
    for (const auto& job : jobs) {
      share_cores_with_load();
      const cv::Mat3b image = eval::read_image(job.image);
      const eval::PredictResult r = predictor.predict(image, job.text);
      const fs::path mask_png = fs::path(o->out) / (job.name + "_mask.png");
      const fs::path overlay_png = fs::path(o->out) / (job.name + "_overlay.png");
      const cv::Mat1b mask255 = r.mask * 255;
      if (!cv::imwrite(mask_png.string(), mask255) ||
          !cv::imwrite(overlay_png.string(),
                       eval::draw_overlay(image, r.mask, job.text, r.confidence))) {
        throw Error("cannot write into '" + o->out + "'");
      }
      std::cout << fmt::format("{}: \"{}\" -> {} ({} pixels){}\n", job.image.string(), job.text,
                               mask_png.string(), cv::countNonZero(r.mask),
                               r.confidence ? fmt::format(", confidence {:.3f}", *r.confidence)
                                            : std::string());
    }
    return 0;
  };
}

}  // namespace wico::tool
