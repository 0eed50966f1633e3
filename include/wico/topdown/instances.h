// The top-down seams (DESIGN "Seams"): an instance extractor proposes masks from the image alone,
// a matcher scores a sample's candidate instances against its expression. Both register by name
// (`top_down.extractor`, `top_down.matcher`); TopDownBranch (top_down.h) ties them together.
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "wico/core/registry.h"

namespace wico {
class Config;
}

namespace wico::topdown {

// A padded set of instances per image: the ground truth of the batch (training the extractor,
// and the matcher as MAttNet does), or an extractor's detections (evaluation).
struct InstanceCandidates {
  at::Tensor masks;    // [B, N, h, w] float in [0, 1] (0/1 for ground truth); any resolution
  at::Tensor boxes;    // [B, N, 4] float x1, y1, x2, y2 as fractions of the input width/height
  at::Tensor classes;  // [B, N] int64 contiguous class index in [0, num_classes)
                       //   (ReferDataset::class_index: COCO's ids 1..90 -> 0..79)
  at::Tensor valid;    // [B, N] bool, false for padding
  at::Tensor scores;   // [B, N] float detection confidence (ground truth: 1); may be undefined
  at::Tensor queries;  // [B, N] int64 the extractor's query of each detection; undefined for
                       //   ground truth

  std::int64_t batch_size() const { return masks.size(0); }
  std::int64_t size() const { return masks.size(1); }
};

// What an extractor's forward gives: Mask2Former's outputs plus the trunk features the matcher
// pools (MAttNet reads a ResNet's C4 and C5, as its Mask R-CNN head did).
struct ExtractorOutput {
  at::Tensor class_logits;      // [B, Q, K + 1] (last: no object)
  at::Tensor mask_logits;       // [B, Q, H/4, W/4]
  at::Tensor query_embeddings;  // [B, Q, D] the last decoder layer's normalised queries
  // Deep supervision: {class_logits, mask_logits} of every earlier prediction, first to last.
  std::vector<std::pair<at::Tensor, at::Tensor>> auxiliary;
  at::Tensor c4;  // [B, C4, H/16, W/16] the trunk's res4 output
  at::Tensor c5;  // [B, C5, H/32, W/32] the trunk's res5 output
};

class InstanceExtractor : public torch::nn::Module {
 public:
  // images [B, 3, H, W] (normalised) -> predictions, with the deep supervision the losses need.
  virtual ExtractorOutput forward(const at::Tensor& images) = 0;
  // The same without what only the losses read (ExtractorOutput::auxiliary empty): what detect()
  // and the matcher need, which an extractor may compute for less (Mask2Former: docs/design.md).
  virtual ExtractorOutput predict(const at::Tensor& images) { return forward(images); }
  // Only what the matcher pools (c4, c5; the heads' outputs undefined): a matcher trained on
  // ground-truth instances over a frozen extractor needs no detections (the protocol's stage 2).
  virtual ExtractorOutput trunk_features(const at::Tensor& images) = 0;
  // Weighted training losses ("td_class", "td_mask", "td_dice", summed over the auxiliary
  // predictions as the original) against the ground-truth instances (masks at the input size).
  virtual std::map<std::string, at::Tensor> loss(const ExtractorOutput& output,
                                                 const InstanceCandidates& targets) = 0;
  // The `top_k` best instances of each image by class score times mask score, masks as
  // probabilities at `height` x `width` (the input's size), boxes from the binarised masks, no
  // gradient.
  virtual InstanceCandidates detect(const ExtractorOutput& output, std::int64_t top_k,
                                    std::int64_t height, std::int64_t width) = 0;
};

struct MatcherInput {
  at::Tensor c4, c5;  // the extractor's trunk features (ExtractorOutput::c4, c5), both covering
                      // the whole input, so that the candidates' fractional boxes index them
  InstanceCandidates candidates;
  // [B, N, D] each candidate's decoder query embedding (a detection's own query; a ground-truth
  // instance's best-overlapping query), when the matcher uses them (uses_query_embeddings()).
  at::Tensor candidate_embeddings;
  at::Tensor token_ids;       // [B, L] int64
  at::Tensor attention_mask;  // [B, L] int64, 1 for real tokens
  // Training extras from the loader (data::Batch; undefined when absent): a language negative
  // per sample (another ref of the same image) and the referent's attribute labels.
  at::Tensor negative_token_ids, negative_attention_mask;  // [B, L]
  at::Tensor negative_valid;                               // [B] bool
  at::Tensor attribute_labels;                             // [B, A] float 0/1
  at::Tensor attribute_weights;                            // [A] float
};

struct MatcherOutput {
  at::Tensor logits;          // [B, N] matching score before the softmax; padding -inf
  at::Tensor scores;          // S [B, N]: softmax of logits over each sample's valid candidates
  at::Tensor embeddings;      // E [B, N, C] cross-modal instance embeddings
  at::Tensor module_weights;  // [B, M] the expression's weights over the matcher's modules
};

class InstanceMatcher : public torch::nn::Module {
 public:
  virtual MatcherOutput forward(const MatcherInput& input) = 0;
  // Weighted training losses ("match_rank", "match_ce", ...) with `target_index` [B] the referred
  // candidate of each sample.
  virtual std::map<std::string, at::Tensor> loss(const MatcherInput& input,
                                                 const MatcherOutput& output,
                                                 const at::Tensor& target_index) = 0;
  // C of MatcherOutput::embeddings.
  virtual std::int64_t embedding_dim() const = 0;
  // Whether forward reads MatcherInput::candidate_embeddings (the branch then runs the whole
  // extractor even where the trunk would do).
  virtual bool uses_query_embeddings() const { return false; }
};

using ExtractorBuilder = std::function<std::shared_ptr<InstanceExtractor>(const Config&)>;
using MatcherBuilder = std::function<std::shared_ptr<InstanceMatcher>(const Config&)>;

// By `top_down.extractor` / `top_down.matcher`; built-ins are registered on first use
// (src/topdown/components.cpp).
Registry<ExtractorBuilder>& extractor_registry();
Registry<MatcherBuilder>& matcher_registry();
std::shared_ptr<InstanceExtractor> build_extractor(const Config& config);
std::shared_ptr<InstanceMatcher> build_matcher(const Config& config);

// Boxes [.., 4] (x1, y1, x2, y2 as fractions of the mask's width/height) of masks [.., h, w]
// binarised at `threshold`; an empty mask gets the zero box.
at::Tensor boxes_of_masks(const at::Tensor& masks, double threshold = 0.5);

}  // namespace wico::topdown
