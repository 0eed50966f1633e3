// Single-image prediction (`wico predict`): a trained model from its checkpoint, an image and an
// expression in, the binary mask, an overlay picture and the model's confidence out.
#pragma once
#include <opencv2/core.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wico/core/config.h"
#include "wico/data/loader.h"

namespace wico::nn {
class RisModel;
}
namespace wico::data {
class Tokenizer;
}

namespace wico::eval {

struct PredictResult {
  cv::Mat1b mask;                     // 0/1 at the image's resolution
  cv::Mat1f probability;              // the result branch's probability, same size
  std::optional<double> confidence;   // when the model predicts one for its result
};

class Predictor {
 public:
  // The model, tokenizer and input settings from the checkpoint's own config (plus overrides,
  // e.g. runtime.device=cpu). A word-level tokenizer recounts its vocabulary on data.root.
  explicit Predictor(const std::filesystem::path& checkpoint,
                     const std::vector<std::string>& overrides = {});
  ~Predictor();

  // An empty (or all-space) expression is a ConfigError; the image must be non-empty.
  PredictResult predict(const cv::Mat3b& image, const std::string& expression);
  const Config& config() const { return config_; }

 private:
  Config config_;
  std::shared_ptr<nn::RisModel> model_;
  std::unique_ptr<data::Tokenizer> tokenizer_;
  data::LoaderOptions loader_options_;
};

// Reads an image for prediction; a missing or undecodable file is a wico::Error naming it.
cv::Mat3b read_image(const std::filesystem::path& path);

// The image with the mask tinted and outlined, and the expression (and confidence) written on a
// band at the top.
cv::Mat3b draw_overlay(const cv::Mat3b& image, const cv::Mat1b& mask,
                       const std::string& expression, std::optional<double> confidence);

}  // namespace wico::eval
