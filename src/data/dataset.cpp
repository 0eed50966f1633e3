#include "wico/data/dataset.h"

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <filesystem>

#include "wico/core/error.h"
#include "wico/data/coco_mask.h"

namespace wico::data {

RefDataset::RefDataset(const ReferDataset& data, const std::string& split, Mode mode,
                       bool exclude_eval_images)
    : data_(data), split_(split), mode_(mode) {
  if (mode == Mode::kInstanceImages) {
    split_ = exclude_eval_images ? "instance images less val/test" : "instance images";
    for (std::int64_t id : data.instance_training_images(exclude_eval_images)) {
      if (!data.annotations_of_image(id).empty()) images_.push_back(id);
    }
    return;
  }
  for (const Ref* ref : data.refs(split)) {
    if (ref->sentences.empty()) continue;
    refs_.push_back(ref);
    refs_of_image_[ref->image_id].push_back(ref);
    if (mode == Mode::kTrainSample) {
      items_.emplace_back(ref, 0);
    } else {
      for (std::size_t s = 0; s < ref->sentences.size(); ++s) items_.emplace_back(ref, s);
    }
  }
}

namespace {

// A hash of (seed, epoch, key) and an optional salt: the same value whatever the worker count
// (the per-epoch sentence draw uses it unsalted).
std::uint64_t sample_hash(std::uint64_t seed, std::int64_t epoch, std::uint64_t key,
                          std::uint64_t salt_term = 0) {
  std::uint64_t h = seed * 0x9e3779b97f4a7c15ULL ^ static_cast<std::uint64_t>(epoch) * 0xbf58476d1ce4e5b9ULL ^
                    key * 0x94d049bb133111ebULL ^ salt_term;
  h ^= h >> 31;
  h *= 0xd6e8feb86659fd93ULL;
  h ^= h >> 32;
  return h;
}

// sample_hash with draw number `salt`, mapped to [0, 1).
double uniform_draw(std::uint64_t seed, std::int64_t epoch, std::uint64_t key, std::uint64_t salt) {
  return static_cast<double>(sample_hash(seed, epoch, key, (salt + 1) * 0x2545f4914f6cdd1dULL) >> 11) *
         0x1.0p-53;
}

// The index of a uniform draw `u` in [0, 1) among `count` choices.
std::size_t pick_index(std::size_t count, double u) {
  return std::min(static_cast<std::size_t>(u * static_cast<double>(count)), count - 1);
}

const Ref* pick(const std::vector<const Ref*>& from, double u) {
  return from[pick_index(from.size(), u)];
}

}  // namespace

void RefDataset::set_lsj(double min_scale, double max_scale) {
  if (mode_ != Mode::kInstanceImages) {
    throw ConfigError("data.augment: lsj flips and crops images, which breaks referring "
                      "expressions (left/right, cut-off referents): it is for an instance "
                      "extractor's own training (data.train_on: instance_images)");
  }
  if (!(min_scale > 0.0 && max_scale >= min_scale)) {
    throw ConfigError("data.lsj_scale must be [min, max] with 0 < min <= max");
  }
  lsj_scale_ = std::make_pair(min_scale, max_scale);
}

void RefDataset::set_attributes(std::shared_ptr<const AttributeVocabulary> vocabulary) {
  attributes_ = std::move(vocabulary);
  attribute_labels_.clear();
  attribute_weights_ = at::Tensor();
  if (!attributes_) return;
  for (const Ref* ref : refs_) attribute_labels_[ref->ref_id] = attributes_->labels(*ref);
  attribute_weights_ = attributes_->loss_weights();
}

const Ref* RefDataset::negative_ref(std::size_t index, std::uint64_t seed, std::int64_t epoch,
                                    double same_category_ratio) const {
  WICO_CHECK(index < items_.size(), "sample ", index, " of ", items_.size());
  const Ref* ref = items_[index].first;
  const auto key = static_cast<std::uint64_t>(index);
  std::vector<const Ref*> same, other;
  for (const Ref* r : refs_of_image_.at(ref->image_id)) {
    if (r->ann_id == ref->ann_id) continue;
    (r->category_id == ref->category_id ? same : other).push_back(r);
  }
  if (!same.empty() && uniform_draw(seed, epoch, key, 1) < same_category_ratio) {
    return pick(same, uniform_draw(seed, epoch, key, 2));
  }
  if (!other.empty()) return pick(other, uniform_draw(seed, epoch, key, 2));
  // The original draws from every ref here (its random.choice(self.Refs.keys())), same-category
  // refs of the image included; other images' refs are what it almost always gets.
  std::vector<const Ref*> rest;
  for (const Ref* r : refs_) {
    if (r->ann_id != ref->ann_id) rest.push_back(r);
  }
  if (rest.empty()) return nullptr;
  return pick(rest, uniform_draw(seed, epoch, key, 2));
}

std::pair<const Ref*, std::size_t> RefDataset::item(std::size_t index, std::uint64_t seed,
                                                    std::int64_t epoch) const {
  WICO_CHECK(index < items_.size(), "sample ", index, " of ", items_.size());
  auto [ref, sentence] = items_[index];
  if (mode_ == Mode::kTrainSample) {
    // A hash of (seed, epoch, ref): the same sentence whatever the worker count.
    const std::uint64_t h = sample_hash(seed, epoch, static_cast<std::uint64_t>(ref->ref_id));
    sentence = static_cast<std::size_t>(h % ref->sentences.size());
  }
  return {ref, sentence};
}

SentenceField parse_sentence_field(const std::string& name) {
  if (name == "raw") return SentenceField::kRaw;
  if (name == "sent") return SentenceField::kSent;
  throw ConfigError("unknown sentence field '" + name + "' (data.sentence_field); valid: raw, sent");
}

Sample RefDataset::load(std::size_t index, std::uint64_t seed, std::int64_t epoch,
                        MaskRule target_rule, SentenceField field) const {
  const auto text = [field](const RefSentence& s) -> const std::string& {
    return field == SentenceField::kSent ? s.sent : s.raw;
  };
  Sample s;
  const Ref* ref = nullptr;
  if (mode_ == Mode::kInstanceImages) {
    WICO_CHECK(index < images_.size(), "sample ", index, " of ", images_.size());
    s.ref_id = s.sent_id = -1;
    s.image_id = images_[index];
    const auto& anns = data_.annotations_of_image(s.image_id);
    s.ann_id = anns.front();
    for (std::int64_t id : anns) {
      if (!data_.annotation(id).iscrowd) {
        s.ann_id = id;
        break;
      }
    }
  } else {
    const auto [r, sentence] = item(index, seed, epoch);
    ref = r;
    s.ref_id = ref->ref_id;
    s.sent_id = ref->sentences[sentence].sent_id;
    s.image_id = ref->image_id;
    s.ann_id = ref->ann_id;
    s.sentence = text(ref->sentences[sentence]);
  }
  const CocoImage& info = data_.image(s.image_id);
  const auto path = data_.image_path(info);
  if (!std::filesystem::is_regular_file(path)) {
    throw Error("missing image '" + path.string() + "' (" +
                (ref ? "ref " + std::to_string(ref->ref_id) : "image " + std::to_string(s.image_id)) +
                ")");
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
  for (std::int64_t ann_id : data_.annotations_of_image(s.image_id)) {
    const CocoAnnotation& ann = data_.annotation(ann_id);
    Candidate c;
    c.ann_id = ann_id;
    c.category_id = ann.category_id;
    c.class_index = data_.class_index(ann.category_id);
    c.iscrowd = ann.iscrowd;
    c.box = ann.bbox;
    c.segmentation = &ann.segmentation;
    const bool is_target = ann_id == s.ann_id;
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
  WICO_CHECK(s.target_index >= 0, "ref ", s.ref_id, " has no annotation on its image");
  if (mode_ == Mode::kInstanceImages) {
    if (lsj_scale_) {
      const auto key = static_cast<std::uint64_t>(index);
      const auto [lo, hi] = *lsj_scale_;
      s.lsj = LsjDraw{lo + (hi - lo) * uniform_draw(seed, epoch, key, 4),
                      uniform_draw(seed, epoch, key, 5), uniform_draw(seed, epoch, key, 6) < 0.5};
    }
    return s;
  }
  if (mode_ != Mode::kEvaluation) {
    if (const Ref* negative = negative_ref(index, seed, epoch)) {
      const double u = uniform_draw(seed, epoch, static_cast<std::uint64_t>(index), 3);
      s.negative_sentence = text(negative->sentences[pick_index(negative->sentences.size(), u)]);
    }
  }
  if (attributes_) {
    s.attributes = attribute_labels_.at(ref->ref_id);
    s.attribute_vocabulary_size = static_cast<std::int64_t>(attributes_->size());
    s.attribute_weights = attribute_weights_;
  }
  return s;
}

}  // namespace wico::data
