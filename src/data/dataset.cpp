#include "wico/data/dataset.h"

#include <opencv2/imgcodecs.hpp>

#include <filesystem>

#include "wico/core/error.h"
#include "wico/data/coco_mask.h"

namespace wico::data {

RefDataset::RefDataset(const ReferDataset& data, const std::string& split, Mode mode)
    : data_(data), split_(split), mode_(mode) {
  for (const Ref* ref : data.refs(split)) {
    if (ref->sentences.empty()) continue;
    if (mode == Mode::kTrainSample) {
      items_.emplace_back(ref, 0);
    } else {
      for (std::size_t s = 0; s < ref->sentences.size(); ++s) items_.emplace_back(ref, s);
    }
  }
}

std::pair<const Ref*, std::size_t> RefDataset::item(std::size_t index, std::uint64_t seed,
                                                    std::int64_t epoch) const {
  WICO_CHECK(index < items_.size(), "sample ", index, " of ", items_.size());
  auto [ref, sentence] = items_[index];
  if (mode_ == Mode::kTrainSample) {
    // A hash of (seed, epoch, ref): the same sentence whatever the worker count.
    std::uint64_t h = seed * 0x9e3779b97f4a7c15ULL ^ static_cast<std::uint64_t>(epoch) * 0xbf58476d1ce4e5b9ULL ^
                      static_cast<std::uint64_t>(ref->ref_id) * 0x94d049bb133111ebULL;
    h ^= h >> 31;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    sentence = static_cast<std::size_t>(h % ref->sentences.size());
  }
  return {ref, sentence};
}

Sample RefDataset::load(std::size_t index, std::uint64_t seed, std::int64_t epoch,
                        MaskRule target_rule) const {
  const auto [ref, sentence] = item(index, seed, epoch);
  const CocoImage& info = data_.image(ref->image_id);
  const auto path = data_.image_path(info);
  Sample s;
  s.ref_id = ref->ref_id;
  s.sent_id = ref->sentences[sentence].sent_id;
  s.image_id = ref->image_id;
  s.ann_id = ref->ann_id;
  s.sentence = ref->sentences[sentence].raw;
  if (!std::filesystem::is_regular_file(path)) {
    throw Error("missing image '" + path.string() + "' (ref " + std::to_string(ref->ref_id) + ")");
  }
  s.image = cv::imread(path.string(), cv::IMREAD_COLOR);
  if (s.image.empty()) {
    throw Error("cannot decode image '" + path.string() + "' (corrupt or not an image)");
  }
  if (s.image.cols != info.width || s.image.rows != info.height) {
    throw Error("image '" + path.string() + "' is " + std::to_string(s.image.cols) + "x" +
                std::to_string(s.image.rows) + " but instances.json says " +
                std::to_string(info.width) + "x" + std::to_string(info.height));
  }
  for (std::int64_t ann_id : data_.annotations_of_image(ref->image_id)) {
    const CocoAnnotation& ann = data_.annotation(ann_id);
    Candidate c;
    c.ann_id = ann_id;
    c.category_id = ann.category_id;
    c.class_index = data_.class_index(ann.category_id);
    c.iscrowd = ann.iscrowd;
    c.box = ann.bbox;
    const bool is_target = ann_id == ref->ann_id;
    try {
      c.mask = annotation_to_mask(ann.segmentation, info.height, info.width);
      if (is_target) {
        s.target = target_rule == MaskRule::kUnion
                       ? c.mask.clone()
                       : annotation_to_mask(ann.segmentation, info.height, info.width,
                                            target_rule);
      }
    } catch (const Error& e) {
      throw Error(data_.instances_file().string() + ": annotation " + std::to_string(ann_id) +
                  ": " + e.what());
    }
    if (is_target) s.target_index = static_cast<int>(s.candidates.size());
    s.candidates.push_back(std::move(c));
  }
  WICO_CHECK(s.target_index >= 0, "ref ", ref->ref_id, " has no annotation on its image");
  return s;
}

}  // namespace wico::data
