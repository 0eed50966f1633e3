// Mask2Former's instance inference (facebookresearch/Mask2Former, maskformer_model.py
// instance_inference) as the extractor's detect step.
//
// The original (InstanceInference::kOriginal, the default): the class probabilities (softmax over
// K + 1, the no-object column dropped) of all Q x K (query, class) pairs, the top_k pairs by that
// probability (so one query can come back under several classes, as in the original), each
// pair's mask the query's logits resized bilinearly (align_corners false) to size x size, its
// score the class probability times the mask score: the mean sigmoid inside the binarised mask
// (logit > 0; 0 for an empty mask, as the original's 1e-6 guard gives). The original's topk is
// unsorted (its order unspecified); ours lists the pairs by descending class probability.
//
// InstanceInference::kPerQuery (mask2former.instance_inference: per_query), an option kept from
// before: each query gets only its best foreground class, and the top_k queries are ranked by
// the final score, so the candidate list never holds the same mask twice.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "wico/topdown/instances.h"

namespace wico::topdown {

enum class InstanceInference { kOriginal, kPerQuery };
InstanceInference parse_instance_inference(const std::string& name);  // throws ConfigError

struct Detections {
  // masks [B, k, height, width] sigmoid probabilities, boxes [B, k, 4] of the binarised masks
  // (logit > 0, the original's pred_masks; normalised x1, y1, x2, y2 as boxes_of_masks; 0 when
  // empty), classes [B, k] int64, valid [B, k] all true, scores [B, k] (kPerQuery:
  // descending; kOriginal: in the order of the class probabilities); k = min(top_k, Q x K)
  // (kOriginal) or min(top_k, Q) (kPerQuery).
  InstanceCandidates instances;
  at::Tensor query_index;  // [B, k] int64: the query of each detection (to gather embeddings)
};

// class_logits [B, Q, K+1], mask_logits [B, Q, h, w] -> the top_k detections of each image; no
// gradient.
Detections detect_instances(const at::Tensor& class_logits, const at::Tensor& mask_logits,
                            std::int64_t top_k, std::int64_t height, std::int64_t width,
                            InstanceInference mode);
// Square outputs (size x size).
Detections detect_instances(const at::Tensor& class_logits, const at::Tensor& mask_logits,
                            std::int64_t top_k, std::int64_t size,
                            InstanceInference mode = InstanceInference::kOriginal);

}  // namespace wico::topdown
