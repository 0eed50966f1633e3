// Predictions of an evaluation run, one JSON line per sample, each branch's binary mask as a COCO
// compressed RLE string at the original image resolution, so metrics can be recomputed (or other
// metrics computed) without running the model again:
//
//   {"ref_id": 7, "sent_id": 21, "image_id": 3, "height": 480, "width": 640,
//    "masks": {"fused": "<rle>", "top_down": "<rle>", "bottom_up": "<rle>"},
//    "scores": {"fused": 0.81}}
//
// "scores" holds the confidences a model predicts (GSI's mu, the matcher's score), if any.
#pragma once

#include <opencv2/core.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "wico/data/coco_mask.h"

namespace wico::eval {

struct Prediction {
  std::int64_t ref_id = 0, sent_id = 0, image_id = 0;
  int height = 0, width = 0;
  std::map<std::string, std::string> masks;  // branch -> compressed RLE
  std::map<std::string, double> scores;      // branch -> predicted confidence
  // The RLE of a branch (what scoring walks), and its decoded 0/1 mask (what pictures draw); a
  // missing branch is a wico::Error naming it.
  data::Rle rle(const std::string& branch) const;
  cv::Mat1b mask(const std::string& branch) const;
};

// Encodes a 0/1 mask for Prediction::masks.
std::string encode_mask(const cv::Mat1b& mask);

class PredictionWriter {
 public:
  explicit PredictionWriter(const std::filesystem::path& file);
  void write(const Prediction& p);
  // Flushes, then renames the temporary file over `file`: an interrupted run leaves no partial
  // predictions file behind.
  void close();
  ~PredictionWriter();

 private:
  std::filesystem::path file_, temp_;
  std::ofstream out_;
  bool closed_ = false;
};

// Reads a predictions file; a malformed line is a wico::Error naming the file and line.
std::vector<Prediction> read_predictions(const std::filesystem::path& file);

}  // namespace wico::eval
