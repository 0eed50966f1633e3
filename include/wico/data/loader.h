// The multi-threaded loader: N worker threads read, decode, transform and tokenise samples and
// collate them into Batches, at most `prefetch` batches ahead of the consumer. The order of
// samples depends only on the seed and the epoch, never on the number of workers or on timing.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "wico/data/dataset.h"
#include "wico/data/transforms.h"

namespace wico {
class Config;
}

namespace wico::data {

class Tokenizer;

// What evaluation needs to map a prediction back and score it, per sample.
struct SampleInfo {
  std::int64_t ref_id = 0, sent_id = 0, image_id = 0, ann_id = 0;
  std::string sentence;
  ResizePlan plan;
  cv::Mat1b target;  // original resolution, for IoU at the original size
  std::string negative_sentence;  // MAttNet's language negative ('' without one)
};

struct Batch {
  at::Tensor images;             // [B, 3, S, S] float, normalised (data.resize shortest_edge:
                                 //   [B, 3, H, W], the batch's canvas, 0 outside each image)
  at::Tensor targets;            // [B, 1, S, S] float 0/1 (data.soft_targets: in [0, 1])
  at::Tensor token_ids;          // [B, L] int64
  at::Tensor attention_mask;     // [B, L] int64, 1 for real tokens
  at::Tensor candidate_masks;    // [B, N, S, S] uint8 0/1 (N: most candidates in the batch;
                                 //   bytes, not floats: B*N*S*S is the largest thing here)
  at::Tensor candidate_boxes;    // [B, N, 4] float x1, y1, x2, y2 in input pixels
  at::Tensor candidate_classes;  // [B, N] int64 contiguous class indices (0 for padding)
  at::Tensor candidate_valid;    // [B, N] bool, false for padding
  at::Tensor candidate_crowd;    // [B, N] bool, COCO's iscrowd (false for padding)
  at::Tensor target_index;       // [B] int64: which candidate is the referred object
  // MAttNet's training extras (undefined at evaluation): a language negative per sample (a
  // sentence of another ref of the same image, RefDataset::negative_ref) and the referent's
  // attribute words.
  at::Tensor negative_token_ids;       // [B, L] int64
  at::Tensor negative_attention_mask;  // [B, L] int64
  at::Tensor negative_valid;           // [B] bool, false where the split had no other ref
  at::Tensor attribute_labels;         // [B, A] float 0/1 over the attribute vocabulary
  at::Tensor attribute_weights;        // [A] float, the BCE weights (AttributeVocabulary)
  std::vector<SampleInfo> info;

  std::int64_t size() const { return static_cast<std::int64_t>(info.size()); }
  // The tensors on `device` (info stays on the host).
  Batch to(const c10::Device& device) const;
};

struct LoaderOptions {
  int batch_size = 8;
  int workers = 2;      // 0: load in the consumer's thread
  int prefetch = 4;     // batches ready ahead
  bool shuffle = false;
  bool drop_last = false;
  std::uint64_t seed = 0;
  int input_size = 480;
  bool letterbox = false;
  bool paste = false;  // data.resize paste (MCN/VLT's letterbox)
  bool shortest_edge = false;  // data.resize shortest_edge (data.min_size, max_size, divisibility)
  int min_size = 800, max_size = 1333, size_divisibility = 32;
  ResizeFilter resize_filter = ResizeFilter::kOpenCv;  // data.resize_filter (plain resize)
  MaskRule mask_rule = MaskRule::kUnion;               // data.mask_rule (the target only)
  bool soft_targets = false;  // data.soft_targets: the target resampled bilinearly (CRIS)
  SentenceField sentence_field = SentenceField::kRaw;  // data.sentence_field
  Normalization norm = normalization("imagenet");
  bool skip_bad_samples = false;  // data.on_bad_sample: skip
  // Data-parallel sharding (as torch's DistributedSampler): every rank shuffles the same epoch
  // order, pads it by wrapping to a multiple of world_size and takes every world_size-th sample
  // from `rank`, so each sample is seen once per epoch and all ranks have as many batches.
  int rank = 0;
  int world_size = 1;
  c10::Device device{c10::kCPU};
  // The loader's part of a config: data.batch_size, workers, prefetch, input_size, resize,
  // resize_filter, mask_rule, soft_targets, sentence_field, normalize, on_bad_sample, run.seed. Throws ConfigError for
  // resize_filter pil with a letterbox resize.
  static LoaderOptions from_config(const Config& config);
};

// Resizes, normalises, tokenises and stacks samples into a Batch (what the loader's workers do;
// also used for a single image at prediction time).
Batch collate(std::vector<Sample> samples, const Tokenizer& tokenizer,
              const LoaderOptions& options);

class Loader {
 public:
  Loader(const RefDataset& dataset, const Tokenizer& tokenizer, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  std::int64_t batches_per_epoch() const;
  // Samples this rank sees per epoch.
  std::int64_t samples_per_epoch() const;
  // Starts (or restarts) an epoch at batch `first_batch` (a resumed run skips what it has done
  // without loading it); batches from a previous epoch still queued are dropped.
  void start_epoch(std::int64_t epoch, std::int64_t first_batch = 0);
  // The next batch of the epoch in order, or nothing at its end. A sample that failed to load is
  // rethrown here (data.on_bad_sample: error) or left out and counted (skip).
  std::optional<Batch> next();
  // Samples left out as bad in the current epoch (also logged once at its end).
  std::int64_t skipped() const;

  // Builds one batch from dataset indices (also used by the workers).
  Batch make_batch(const std::vector<std::size_t>& indices, std::int64_t epoch,
                   std::int64_t* skipped) const;

 private:
  void stop_workers();
  void worker_loop();
  // Dataset indices of batch k of the current epoch (caller holds mutex_).
  std::vector<std::size_t> batch_indices(std::int64_t k) const;

  const RefDataset& dataset_;
  const Tokenizer& tokenizer_;
  LoaderOptions options_;
  std::vector<std::size_t> order_;
  std::int64_t epoch_ = -1;

  mutable std::mutex mutex_;
  std::condition_variable wake_workers_, wake_consumer_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
  std::int64_t next_to_make_ = 0;
  std::int64_t next_to_give_ = 0;
  std::int64_t generation_ = 0;  // bumps on every start_epoch; stale work is discarded
  std::map<std::int64_t, Batch> ready_;
  std::map<std::int64_t, std::exception_ptr> failed_;
  std::int64_t skipped_ = 0;  // in the current epoch
  bool reported_skips_ = false;
};

}  // namespace wico::data
