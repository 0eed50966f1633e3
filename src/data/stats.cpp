#include "wico/data/stats.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <iomanip>
#include <ostream>
#include <random>
#include <set>
#include <sstream>

#include "wico/core/error.h"
#include "wico/core/progress.h"
#include "wico/data/coco_mask.h"
#include "wico/data/tokenizer.h"

namespace wico::data {

namespace {

std::vector<std::string> words_of(const RefSentence& s) {
  if (!s.tokens.empty()) return s.tokens;
  std::vector<std::string> words;
  std::istringstream in(s.sent);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// The annotation's RLE; a malformed segmentation is an error naming the file and annotation.
Rle decode_annotation(const ReferDataset& data, const CocoAnnotation& ann, const CocoImage& img) {
  try {
    return annotation_to_rle(ann.segmentation, img.height, img.width);
  } catch (const Error& e) {
    throw Error(data.instances_file().string() + ": annotation " + std::to_string(ann.id) +
                ": " + e.what());
  }
}

}  // namespace

DatasetStats compute_stats(const ReferDataset& data, const std::vector<std::string>& splits,
                           const Tokenizer* tokenizer) {
  DatasetStats stats;
  stats.name = data.dataset() + " (" + data.split_by() + ")";
  stats.images = static_cast<int>(data.num_images());
  stats.annotations = static_cast<int>(data.num_annotations());
  stats.categories = static_cast<int>(data.categories().size());
  std::set<std::string> vocabulary;
  for (const auto& ref : data.all_refs()) {
    for (const auto& s : ref.sentences) {
      for (auto w : words_of(s)) {
        std::transform(w.begin(), w.end(), w.begin(), [](unsigned char c) { return std::tolower(c); });
        vocabulary.insert(w);
      }
    }
  }
  stats.vocabulary = static_cast<int>(vocabulary.size());
  for (const auto& split : splits) {
    SplitStats& st = stats.splits[split];
    std::set<std::int64_t> images;
    double words = 0, tokens = 0, share = 0;
    for (const Ref* ref : data.refs(split)) {
      ++st.refs;
      images.insert(ref->image_id);
      const auto& ann = data.annotation(ref->ann_id);
      const auto& img = data.image(ref->image_id);
      share += static_cast<double>(rle_area(decode_annotation(data, ann, img))) /
               (static_cast<double>(img.height) * img.width);
      for (const auto& s : ref->sentences) {
        ++st.sentences;
        const int n = static_cast<int>(words_of(s).size());
        words += n;
        st.max_words = std::max(st.max_words, n);
        ++stats.words_histogram[n];
        if (tokenizer) {
          const Encoding e = tokenizer->encode(s.raw);
          int used = 0;
          for (auto m : e.attention_mask) used += m != 0;
          tokens += used;
          // A sentence that fills the whole context was (or may have been) cut.
          if (used >= tokenizer->max_length()) ++st.truncated;
        }
      }
    }
    st.images = static_cast<int>(images.size());
    if (st.sentences) {
      st.mean_words = words / st.sentences;
      st.mean_tokens = tokens / st.sentences;
    }
    if (st.refs) st.mean_mask_share = share / st.refs;
  }
  return stats;
}

void print_stats(const DatasetStats& stats, std::ostream& out) {
  out << stats.name << ": " << stats.images << " images, " << stats.annotations
      << " annotations, " << stats.categories << " categories, vocabulary " << stats.vocabulary
      << " words\n\n";
  out << std::left << std::setw(8) << "split" << std::right << std::setw(8) << "refs"
      << std::setw(11) << "sentences" << std::setw(8) << "images" << std::setw(12) << "words/sent"
      << std::setw(10) << "max words" << std::setw(13) << "tokens/sent" << std::setw(11)
      << "at max len" << std::setw(12) << "mask share" << "\n";
  out << std::fixed << std::setprecision(2);
  for (const auto& [split, s] : stats.splits) {
    out << std::left << std::setw(8) << split << std::right << std::setw(8) << s.refs
        << std::setw(11) << s.sentences << std::setw(8) << s.images << std::setw(12)
        << s.mean_words << std::setw(10) << s.max_words << std::setw(13) << s.mean_tokens
        << std::setw(11) << s.truncated << std::setw(11) << s.mean_mask_share * 100 << "%\n";
  }
  out << "\nsentence length (words): ";
  for (const auto& [n, count] : stats.words_histogram) out << n << ":" << count << " ";
  out << "\n";
}

void write_contact_sheet(const ReferDataset& data, const std::string& split, int count,
                         unsigned seed, const std::filesystem::path& png) {
  auto refs = data.refs(split);
  if (refs.empty()) throw Error("split '" + split + "' has no refs to draw");
  std::mt19937 rng(seed);
  std::shuffle(refs.begin(), refs.end(), rng);
  refs.resize(std::min<std::size_t>(refs.size(), static_cast<std::size_t>(std::max(1, count))));
  const int cell = 256, caption = 44, columns = std::min<int>(4, static_cast<int>(refs.size()));
  const int rows = (static_cast<int>(refs.size()) + columns - 1) / columns;
  cv::Mat3b sheet(rows * (cell + caption), columns * cell, cv::Vec3b(255, 255, 255));
  for (std::size_t i = 0; i < refs.size(); ++i) {
    const Ref& ref = *refs[i];
    const auto& img = data.image(ref.image_id);
    const auto path = data.image_path(img);
    cv::Mat3b image = cv::imread(path.string(), cv::IMREAD_COLOR);
    if (image.empty()) throw Error("cannot read image '" + path.string() + "'");
    if (image.cols != img.width || image.rows != img.height) {
      throw Error("image '" + path.string() + "' is " + std::to_string(image.cols) + "x" +
                  std::to_string(image.rows) + " but " + data.instances_file().string() +
                  " says " + std::to_string(img.width) + "x" + std::to_string(img.height));
    }
    const auto& ann = data.annotation(ref.ann_id);
    const cv::Mat1b mask = rle_decode(decode_annotation(data, ann, img));
    // Tint the target, outline it and draw its box.
    cv::Mat3b tinted = image.clone();
    tinted.setTo(cv::Scalar(0, 220, 255), mask);
    cv::addWeighted(image, 0.65, tinted, 0.35, 0, image);
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(mask.clone(), contours, cv::RETR_LIST, cv::CHAIN_APPROX_SIMPLE);
    cv::drawContours(image, contours, -1, cv::Scalar(0, 160, 255), 2);
    const auto& b = ann.bbox;
    cv::rectangle(image, cv::Rect(cv::Point(int(b[0]), int(b[1])), cv::Size(int(b[2]), int(b[3]))),
                  cv::Scalar(0, 255, 0), 1);
    const double scale = std::min(double(cell) / image.cols, double(cell) / image.rows);
    cv::Mat3b resized;
    cv::resize(image, resized, cv::Size(), scale, scale, cv::INTER_AREA);
    const int x = static_cast<int>(i % columns) * cell, y = static_cast<int>(i / columns) * (cell + caption);
    resized.copyTo(sheet(cv::Rect(x + (cell - resized.cols) / 2, y + (cell - resized.rows) / 2,
                                  resized.cols, resized.rows)));
    std::string text = ref.sentences.empty() ? "" : ref.sentences[0].raw;
    const std::string category = data.category(ref.category_id).name;
    cv::putText(sheet, text.substr(0, 34), cv::Point(x + 4, y + cell + 17), cv::FONT_HERSHEY_SIMPLEX,
                0.45, cv::Scalar(20, 20, 20), 1, cv::LINE_AA);
    cv::putText(sheet, "ref " + std::to_string(ref.ref_id) + " | " + category + " | " + ref.split,
                cv::Point(x + 4, y + cell + 36), cv::FONT_HERSHEY_SIMPLEX, 0.4,
                cv::Scalar(110, 110, 110), 1, cv::LINE_AA);
  }
  std::filesystem::create_directories(png.parent_path().empty() ? "." : png.parent_path());
  if (!cv::imwrite(png.string(), sheet)) throw Error("cannot write '" + png.string() + "'");
}

}  // namespace wico::data
