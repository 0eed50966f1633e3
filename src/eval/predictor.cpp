#include "wico/eval/predictor.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "wico/core/error.h"
#include "wico/core/runtime.h"
#include "wico/data/dataset.h"
#include "wico/data/refer.h"
#include "wico/data/tokenizer.h"
#include "wico/data/tokenizer_config.h"
#include "wico/data/transforms.h"
#include "wico/nn/ris_model.h"
#include "wico/train/checkpoint.h"

namespace fs = std::filesystem;

namespace wico::eval {

namespace {

Config load_checkpoint_config(const fs::path& checkpoint,
                              const std::vector<std::string>& overrides) {
  return train::Checkpoint::read(checkpoint).config(overrides);
}

std::unique_ptr<data::Tokenizer> tokenizer_for(const Config& config) {
  if (config.text("text.tokenizer") == "word" && config.text("text.vocab").empty()) {
    const fs::path root = config.text("data.root");
    try {
      const auto refer = data::ReferDataset::load(root, config.text("data.dataset"),
                                                  config.text("data.split_by"));
      return data::make_tokenizer_from_config(config, refer);
    } catch (const Error& e) {
      throw Error("this model's word vocabulary is counted on the training split of data.root '" +
                  root.string() + "', which did not load (" + e.what() +
                  "); pass --set data.root=<the data it was trained on>");
    }
  }
  // Sub-word tokenizers read their bundled vocabulary; no data set is needed.
  return data::make_tokenizer_from_config(config);
}

}  // namespace

Predictor::Predictor(const fs::path& checkpoint, const std::vector<std::string>& overrides)
    : config_(load_checkpoint_config(checkpoint, overrides)) {
  const RuntimeInfo runtime = apply_runtime(config_);
  model_ = nn::build_model(config_);
  train::Checkpoint::read(checkpoint).load_model(*model_);
  model_->to(runtime.device);
  model_->eval();
  tokenizer_ = tokenizer_for(config_);
  loader_options_ = data::LoaderOptions::from_config(config_);
  loader_options_.device = runtime.device;
}

Predictor::~Predictor() = default;

PredictResult Predictor::predict(const cv::Mat3b& image, const std::string& expression) {
  if (expression.find_first_not_of(" \t\r\n") == std::string::npos) {
    throw ConfigError("the expression is empty; say which object to segment, e.g. "
                      "--text \"woman far right with phone\"");
  }
  WICO_CHECK(!image.empty(), "predict() got an empty image");
  data::Sample sample;
  sample.sentence = expression;
  sample.image = image;
  sample.target = cv::Mat1b::zeros(image.rows, image.cols);
  std::vector<data::Sample> samples;
  samples.push_back(std::move(sample));
  const data::Batch batch =
      data::collate(std::move(samples), *tokenizer_, loader_options_).to(loader_options_.device);
  c10::InferenceMode inference;
  const nn::RisOutput out = model_->forward(batch, /*with_losses=*/false);
  const std::string branch = model_->result_branch();
  const at::Tensor p = out.probabilities.at(branch)[0][0].to(at::kCPU, at::kFloat).contiguous();
  cv::Mat1f at_input(static_cast<int>(p.size(0)), static_cast<int>(p.size(1)));
  std::copy_n(p.data_ptr<float>(), p.numel(), at_input.ptr<float>());
  PredictResult result;
  result.probability = data::map_back(at_input, batch.info[0].plan);
  result.mask = result.probability > model_->threshold(branch);
  result.mask /= 255;
  auto it = out.confidences.find(branch);
  if (it != out.confidences.end()) result.confidence = it->second[0].item<double>();
  return result;
}

cv::Mat3b read_image(const fs::path& path) {
  if (!fs::exists(path)) throw Error("image '" + path.string() + "' does not exist");
  cv::Mat3b image = cv::imread(path.string(), cv::IMREAD_COLOR);
  if (image.empty()) {
    throw Error("image '" + path.string() + "' could not be decoded (not an image OpenCV reads?)");
  }
  return image;
}

cv::Mat3b draw_overlay(const cv::Mat3b& image, const cv::Mat1b& mask,
                       const std::string& expression, std::optional<double> confidence) {
  const cv::Vec3b tint(60, 200, 255);  // BGR amber, readable on most photos
  cv::Mat3b body = image.clone();
  for (int y = 0; y < body.rows; ++y) {
    for (int x = 0; x < body.cols; ++x) {
      if (mask(y, x)) {
        for (int c = 0; c < 3; ++c) {
          body(y, x)[c] = static_cast<uchar>((body(y, x)[c] * 2 + tint[c] * 3) / 5);
        }
      }
    }
  }
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(mask.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  cv::drawContours(body, contours, -1, cv::Scalar(tint[0], tint[1], tint[2]),
                   std::max(2, body.cols / 300), cv::LINE_AA);
  // The expression on a dark band above the image, wrapped to its width.
  const double scale = std::clamp(body.cols / 900.0, 0.5, 1.2);
  const int thickness = scale > 0.8 ? 2 : 1;
  std::string text = "\"" + expression + "\"";
  if (confidence) text += fmt::format("  (confidence {:.2f})", *confidence);
  std::vector<std::string> lines;
  std::string line;
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t space = text.find(' ', pos);
    const std::string word = text.substr(pos, space == std::string::npos ? std::string::npos
                                                                         : space - pos);
    const std::string candidate = line.empty() ? word : line + " " + word;
    int baseline = 0;
    const cv::Size size =
        cv::getTextSize(candidate, cv::FONT_HERSHEY_SIMPLEX, scale, thickness, &baseline);
    if (size.width > body.cols - 16 && !line.empty()) {
      lines.push_back(line);
      line = word;
    } else {
      line = candidate;
    }
    pos = space == std::string::npos ? text.size() : space + 1;
  }
  if (!line.empty()) lines.push_back(line);
  const int line_height = static_cast<int>(32 * scale) + 4;
  cv::Mat3b canvas(body.rows + line_height * static_cast<int>(lines.size()) + 8, body.cols,
                   cv::Vec3b(32, 32, 32));
  for (std::size_t i = 0; i < lines.size(); ++i) {
    cv::putText(canvas, lines[i], cv::Point(8, line_height * static_cast<int>(i + 1)),
                cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(255, 255, 255), thickness,
                cv::LINE_AA);
  }
  body.copyTo(canvas(cv::Rect(0, canvas.rows - body.rows, body.cols, body.rows)));
  return canvas;
}

}  // namespace wico::eval
