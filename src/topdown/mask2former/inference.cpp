#include "wico/topdown/mask2former/inference.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

#include "wico/core/error.h"

namespace wico::topdown {

InstanceInference parse_instance_inference(const std::string& name) {
  if (name == "original") return InstanceInference::kOriginal;
  if (name == "per_query") return InstanceInference::kPerQuery;
  throw ConfigError("mask2former.instance_inference: expected original or per_query, got '" +
                    name + "'");
}

Detections detect_instances(const at::Tensor& class_logits, const at::Tensor& mask_logits,
                            std::int64_t top_k, std::int64_t size, InstanceInference mode) {
  return detect_instances(class_logits, mask_logits, top_k, size, size, mode);
}

Detections detect_instances(const at::Tensor& class_logits, const at::Tensor& mask_logits,
                            std::int64_t top_k, std::int64_t height, std::int64_t width,
                            InstanceInference mode) {
  const at::NoGradGuard no_grad;
  WICO_CHECK(class_logits.dim() == 3 && class_logits.size(2) >= 2,
             "class logits must be [B, Q, K+1] with K >= 1, got ", class_logits.sizes());
  WICO_CHECK(mask_logits.dim() == 4 && mask_logits.size(0) == class_logits.size(0) &&
                 mask_logits.size(1) == class_logits.size(1),
             "mask logits must be [B, Q, h, w] beside class logits ", class_logits.sizes(),
             ", got ", mask_logits.sizes());
  WICO_CHECK(top_k > 0 && height > 0 && width > 0, "top_k and the size must be positive, got ",
             top_k, " and ", height, "x", width);
  const std::int64_t batch = class_logits.size(0), queries = class_logits.size(1);
  const std::int64_t num_classes = class_logits.size(2) - 1;
  const bool original = mode == InstanceInference::kOriginal;
  const std::int64_t k = std::min(top_k, original ? queries * num_classes : queries);

  const at::Tensor prob = class_logits.to(at::kFloat).softmax(-1).narrow(-1, 0, num_classes);
  const auto [class_score, label] = prob.max(-1);  // [B, Q]: kPerQuery's one class per query

  std::vector<at::Tensor> masks, classes, scores, picked;
  // One image at a time: Q masks at the output size can be large.
  for (std::int64_t b = 0; b < batch; ++b) {
    const at::Tensor logits = at::upsample_bilinear2d(mask_logits[b].unsqueeze(0).to(at::kFloat),
                                                      at::IntArrayRef({height, width}),
                                                      /*align_corners=*/false)[0];
    const at::Tensor binary = (logits > 0).to(at::kFloat).flatten(1);  // [Q, height * width]
    const at::Tensor probs = logits.sigmoid();
    const at::Tensor mask_score = (probs.flatten(1) * binary).sum(1) / (binary.sum(1) + 1e-6);
    at::Tensor query, cls, score;
    if (original) {
      // The (query, class) pairs by class probability, flattened query-major as the original's
      // scores.flatten(0, 1).
      const auto [top, pair] = prob[b].flatten().topk(k);
      query = at::floor_divide(pair, num_classes);
      cls = pair.remainder(num_classes);
      score = top * mask_score.index_select(0, query);
    } else {
      const auto [top, index] = (class_score[b] * mask_score).topk(k);  // sorted, descending
      query = index;
      cls = label[b].index_select(0, index);
      score = top;
    }
    picked.push_back(query);
    scores.push_back(score);
    classes.push_back(cls);
    masks.push_back(probs.index_select(0, query));
  }

  Detections out;
  out.query_index = at::stack(picked);
  out.instances.masks = at::stack(masks);
  out.instances.boxes = boxes_of_masks(out.instances.masks, 0.5);
  out.instances.classes = at::stack(classes);
  out.instances.valid = at::ones({batch, k}, class_logits.options().dtype(at::kBool));
  out.instances.scores = at::stack(scores);
  return out;
}

}  // namespace wico::topdown
