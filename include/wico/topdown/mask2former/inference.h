// Mask2Former's instance inference (facebookresearch/Mask2Former, maskformer_model.py
// instance_inference) as the extractor's detect step.
//
// Per image and query: the class is the most likely foreground class (softmax over K + 1, the
// no-object column dropped) and the mask the logits resized bilinearly (align_corners false) to
// size x size; the score is that class probability times the mask score, the mean sigmoid inside
// the binarised mask (logit > 0; 0 for an empty mask, as the original's 1e-6 guard gives).
//
// Deviation: the original ranks the Q x K (query, class) pairs by class probability and keeps
// test_topk_per_image of them, so one query can come back under several classes. Here each query
// gets only its best class and the top_k queries are ranked by the final score (class x mask), so
// the matcher's candidate list never holds the same mask twice.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "wico/topdown/instances.h"

namespace wico::topdown {

struct Detections {
  // masks [B, k, size, size] sigmoid probabilities, boxes from them binarised at 0.5
  // (boxes_of_masks), classes [B, k] int64, valid [B, k] all true, scores [B, k] descending;
  // k = min(top_k, Q).
  InstanceCandidates instances;
  at::Tensor query_index;  // [B, k] int64: the query of each detection (to gather embeddings)
};

// class_logits [B, Q, K+1], mask_logits [B, Q, h, w] -> the best top_k queries of each image; no
// gradient.
Detections detect_instances(const at::Tensor& class_logits, const at::Tensor& mask_logits,
                            std::int64_t top_k, std::int64_t size);

}  // namespace wico::topdown
