// RefDataset: the samples of one split. At evaluation every sentence of every ref is a sample (as
// every original evaluates); at training one sentence is drawn per ref each epoch (or every
// sentence, data.train_sentences: all). A sample carries the image, the target mask, the
// sentence and the image's candidate instances for the top-down branch, all at the original
// resolution; the loader transforms and batches them.
#pragma once

#include <ATen/core/Tensor.h>
#include <opencv2/core.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "wico/data/attributes.h"
#include "wico/data/coco_mask.h"
#include "wico/data/refer.h"
#include "wico/data/transforms.h"

namespace wico::data {

struct Candidate {
  std::int64_t ann_id = 0;
  std::int64_t category_id = 0;
  std::int64_t class_index = 0;  // contiguous (ReferDataset::class_index)
  bool iscrowd = false;          // COCO's crowd flag: not an instance the extractor learns
  std::array<double, 4> box{};  // x, y, w, h
  cv::Mat1b mask;               // 0/1, original resolution
  // The annotation's segmentation (owned by the ReferDataset), for transforms that re-rasterise
  // polygons (lsj).
  const nlohmann::json* segmentation = nullptr;
};

struct Sample {
  std::int64_t ref_id = 0, sent_id = 0, image_id = 0, ann_id = 0;
  std::string sentence;  // the raw sentence
  cv::Mat3b image;       // BGR, original resolution
  cv::Mat1b target;      // 0/1, original resolution: the ref's segmentation parts combined by
                         //   data.mask_rule (union; lavt: pixels exactly one part covers)
  std::vector<Candidate> candidates;  // every annotation of the image
  int target_index = -1;              // the candidate that is the referred object
  // Training only (RefDataset in a training mode):
  std::optional<LsjDraw> lsj;     // the instance-image augmentation's draws (set_lsj)
  std::string negative_sentence;  // a language negative (RefDataset::negative_ref); empty: none
  std::vector<std::int64_t> attributes;  // the ref's attribute words (RefDataset::set_attributes)
  std::int64_t attribute_vocabulary_size = 0;  // 0: no attribute labels
  at::Tensor attribute_weights;                // [attribute_vocabulary_size] the BCE weights
};

// Which of a ref's sentence fields a sample carries (data.sentence_field): the annotator's `raw`
// text (LAVT, MAttNet) or refer's lower-cased, re-tokenised `sent` (CRIS's data_process.py).
enum class SentenceField { kRaw, kSent };
SentenceField parse_sentence_field(const std::string& name);  // ConfigError for another name

class RefDataset {
 public:
  // kInstanceImages: one sample per image an instance extractor trains on
  // (ReferDataset::instance_training_images, images without annotations left out), for the
  // extractor's own training (stage 1 of the top-down protocol); `split` is not used, a sample's
  // nominal target is its image's first annotation that is not a crowd region, its sentence
  // empty.
  enum class Mode { kEvaluation, kTrainSample, kTrainAll, kInstanceImages };

  RefDataset(const ReferDataset& data, const std::string& split, Mode mode,
             bool exclude_eval_images = true);

  // Samples in one epoch: sentences (evaluation, train-all), refs (train-sample) or images.
  std::size_t size() const { return mode_ == Mode::kInstanceImages ? images_.size() : items_.size(); }
  Mode mode() const { return mode_; }
  // The (ref, sentence) of sample `index` in `epoch`; only kTrainSample depends on the epoch,
  // through `seed`, never on which thread asks.
  std::pair<const Ref*, std::size_t> item(std::size_t index, std::uint64_t seed,
                                          std::int64_t epoch) const;
  // Reads and decodes one sample (JPEG, masks). Throws wico::Error naming the image file.
  // `target_rule` builds the target only; candidate masks are always the union of their parts.
  Sample load(std::size_t index, std::uint64_t seed, std::int64_t epoch,
              MaskRule target_rule = MaskRule::kUnion,
              SentenceField field = SentenceField::kRaw) const;

  const ReferDataset& data() const { return data_; }
  const std::string& split() const { return split_; }

  // Mask2Former's large-scale jitter on every sample (kInstanceImages only: flips and crops
  // would break a referring expression): scale uniform in [min_scale, max_scale], the crop's
  // fraction uniform in [0, 1], a flip with probability 0.5, deterministic in (seed, epoch,
  // index). Throws ConfigError in another mode.
  void set_lsj(double min_scale, double max_scale);
  // MAttNet's attribute labels on every sample (and the vocabulary's loss weights).
  void set_attributes(std::shared_ptr<const AttributeVocabulary> vocabulary);
  const AttributeVocabulary* attributes() const { return attributes_.get(); }
  // The ref whose sentence is sample `index`'s language negative in `epoch`, as MAttNet's
  // gt_mrcn_loader.sample_neg_ids: with probability `same_category_ratio` a ref of another
  // object of the same category on the same image (if there is one), else one of another
  // category on the same image, else (none of another category there) any other ref of the
  // split, the original's random.choice over all refs;
  // nullptr when the split has no other ref. Deterministic in (seed, epoch, index).
  const Ref* negative_ref(std::size_t index, std::uint64_t seed, std::int64_t epoch,
                          double same_category_ratio = 0.3) const;

 private:
  const ReferDataset& data_;
  std::string split_;
  Mode mode_;
  std::vector<std::pair<const Ref*, std::size_t>> items_;  // sentence index unused in kTrainSample
  std::vector<std::int64_t> images_;  // kInstanceImages
  std::optional<std::pair<double, double>> lsj_scale_;
  std::vector<const Ref*> refs_;  // the split's refs with sentences
  std::unordered_map<std::int64_t, std::vector<const Ref*>> refs_of_image_;
  std::shared_ptr<const AttributeVocabulary> attributes_;
  std::unordered_map<std::int64_t, std::vector<std::int64_t>> attribute_labels_;  // by ref id
  at::Tensor attribute_weights_;
};

}  // namespace wico::data
