// RefDataset: the samples of one split. At evaluation every sentence of every ref is a sample (as
// every original evaluates); at training one sentence is drawn per ref each epoch (or every
// sentence, data.train_sentences: all). A sample carries the image, the target mask, the
// sentence and the image's candidate instances for the top-down branch, all at the original
// resolution; the loader transforms and batches them.
#pragma once

#include <opencv2/core.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "wico/data/coco_mask.h"
#include "wico/data/refer.h"

namespace wico::data {

struct Candidate {
  std::int64_t ann_id = 0;
  std::int64_t category_id = 0;
  std::int64_t class_index = 0;  // contiguous (ReferDataset::class_index)
  bool iscrowd = false;          // COCO's crowd flag: not an instance the extractor learns
  std::array<double, 4> box{};  // x, y, w, h
  cv::Mat1b mask;               // 0/1, original resolution
};

struct Sample {
  std::int64_t ref_id = 0, sent_id = 0, image_id = 0, ann_id = 0;
  std::string sentence;  // the raw sentence
  cv::Mat3b image;       // BGR, original resolution
  cv::Mat1b target;      // 0/1, original resolution: the ref's segmentation parts combined by
                         //   data.mask_rule (union; lavt: pixels exactly one part covers)
  std::vector<Candidate> candidates;  // every annotation of the image
  int target_index = -1;              // the candidate that is the referred object
};

class RefDataset {
 public:
  enum class Mode { kEvaluation, kTrainSample, kTrainAll };

  RefDataset(const ReferDataset& data, const std::string& split, Mode mode);

  // Samples in one epoch: sentences (evaluation, train-all) or refs (train-sample).
  std::size_t size() const { return items_.size(); }
  // The (ref, sentence) of sample `index` in `epoch`; only kTrainSample depends on the epoch,
  // through `seed`, never on which thread asks.
  std::pair<const Ref*, std::size_t> item(std::size_t index, std::uint64_t seed,
                                          std::int64_t epoch) const;
  // Reads and decodes one sample (JPEG, masks). Throws wico::Error naming the image file.
  // `target_rule` builds the target only; candidate masks are always the union of their parts.
  Sample load(std::size_t index, std::uint64_t seed, std::int64_t epoch,
              MaskRule target_rule = MaskRule::kUnion) const;

  const ReferDataset& data() const { return data_; }
  const std::string& split() const { return split_; }

 private:
  const ReferDataset& data_;
  std::string split_;
  Mode mode_;
  std::vector<std::pair<const Ref*, std::size_t>> items_;  // sentence index unused in kTrainSample
};

}  // namespace wico::data
