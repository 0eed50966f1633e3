#include "wico/eval/predictions.h"

#include <nlohmann/json.hpp>

#include "wico/core/error.h"
#include "wico/core/json_number.h"
#include "wico/data/coco_mask.h"

namespace wico::eval {

data::Rle Prediction::rle(const std::string& branch) const {
  auto it = masks.find(branch);
  if (it == masks.end()) {
    std::string have;
    for (const auto& [name, rle] : masks) have += (have.empty() ? "" : ", ") + name;
    throw Error("prediction of ref " + std::to_string(ref_id) + " sentence " +
                std::to_string(sent_id) + " has no '" + branch + "' mask (has: " + have + ")");
  }
  return data::rle_from_string(it->second, height, width);
}

cv::Mat1b Prediction::mask(const std::string& branch) const {
  return data::rle_decode(rle(branch));
}

std::string encode_mask(const cv::Mat1b& mask) {
  return data::rle_to_string(data::rle_encode(mask));
}

PredictionWriter::PredictionWriter(const std::filesystem::path& file)
    : file_(file), temp_(file.string() + ".partial"), out_(temp_) {
  if (!out_) throw Error("cannot write '" + temp_.string() + "'");
}

void PredictionWriter::write(const Prediction& p) {
  nlohmann::json j = {{"ref_id", p.ref_id}, {"sent_id", p.sent_id}, {"image_id", p.image_id},
                      {"height", p.height}, {"width", p.width},     {"masks", p.masks}};
  if (!p.scores.empty()) j["scores"] = p.scores;
  out_ << j.dump() << "\n";
  if (!out_) throw Error("cannot append to '" + temp_.string() + "'");
}

void PredictionWriter::close() {
  if (closed_) return;
  closed_ = true;
  out_.close();
  if (!out_) throw Error("cannot finish '" + temp_.string() + "'");
  std::error_code ec;
  std::filesystem::rename(temp_, file_, ec);
  if (ec) throw Error("cannot move '" + temp_.string() + "' to '" + file_.string() + "': " + ec.message());
}

PredictionWriter::~PredictionWriter() {
  if (!closed_) {  // not closed: an error or an interruption; keep no half file under the name
    out_.close();
    std::error_code ec;
    std::filesystem::remove(temp_, ec);
  }
}

std::vector<Prediction> read_predictions(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw Error("cannot read predictions '" + file.string() + "'");
  std::vector<Prediction> out;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      Prediction p;
      const auto integer = [&](const char* key, auto& out) {
        const auto v = json_integer<std::decay_t<decltype(out)>>(j.at(key));
        if (!v) {
          throw Error(file.string() + ":" + std::to_string(number) + ": \"" + key + "\" is " +
                      j.at(key).dump() + ", not an integer in range");
        }
        out = *v;
      };
      integer("ref_id", p.ref_id);
      integer("sent_id", p.sent_id);
      integer("image_id", p.image_id);
      integer("height", p.height);
      integer("width", p.width);
      p.masks = j.at("masks").get<std::map<std::string, std::string>>();
      if (j.contains("scores")) p.scores = j.at("scores").get<std::map<std::string, double>>();
      out.push_back(std::move(p));
    } catch (const nlohmann::json::exception& e) {
      throw Error(file.string() + ":" + std::to_string(number) + ": malformed prediction: " +
                  e.what());
    }
  }
  return out;
}

}  // namespace wico::eval
