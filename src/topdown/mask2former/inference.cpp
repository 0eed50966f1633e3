#include "wico/topdown/mask2former/inference.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

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

namespace {

struct MaskSummary {
  at::Tensor probabilities;  // [k, H, W] sigmoid of the upsampled logits
  at::Tensor scores;         // [k] mean probability inside logits > 0 (0 when empty)
  at::Tensor boxes;          // [k, 4] normalised (x1, y1, x2, y2) of logits > 0 (0 when empty)
};

// The score and box of one mask from its logits and probabilities at the output size.
void score_and_box(const float* x, const float* p, std::int64_t h, std::int64_t w, float* score,
                   float* box) {
  double sum = 0;
  std::int64_t count = 0, y1 = h, y2 = -1, x1 = w, x2 = -1;
  for (std::int64_t r = 0; r < h; ++r) {
    const float* xr = x + r * w;
    const float* pr = p + r * w;
    float row_sum = 0;
    std::int64_t row_count = 0, first = w, last = -1;
    for (std::int64_t c = 0; c < w; ++c) {
      if (xr[c] > 0) {
        row_sum += pr[c];
        ++row_count;
        first = std::min(first, c);
        last = c;
      }
    }
    if (row_count == 0) continue;
    sum += row_sum;
    count += row_count;
    y1 = std::min(y1, r);
    y2 = r;
    x1 = std::min(x1, first);
    x2 = std::max(x2, last);
  }
  // The original's (probs * binary).sum() / (binary.sum() + 1e-6).
  *score = static_cast<float>(sum / (static_cast<double>(count) + 1e-6));
  if (count > 0) {
    box[0] = static_cast<float>(x1) / static_cast<float>(w);
    box[1] = static_cast<float>(y1) / static_cast<float>(h);
    box[2] = static_cast<float>(x2 + 1) / static_cast<float>(w);
    box[3] = static_cast<float>(y2 + 1) / static_cast<float>(h);
  }
}

// logits [k, h, w] at the predictions' size -> each mask resized bilinearly (align_corners
// false) to height x width, its sigmoid, and the original's mask score and the box of logits > 0.
// On the CPU the resize and the sigmoid run batched (ATen's kernels are fastest over many
// channels) and one scan per mask reads both for the score and the box, in place of the several
// [k, H, W] passes and temporaries the tensor formulas take; elsewhere those formulas. (Resizing,
// squashing and scanning one mask at a time while it sits in the cache was measured slower:
// ATen's resize of a single channel runs at half its batched speed.)
MaskSummary summarise_masks(const at::Tensor& logits, std::int64_t height, std::int64_t width) {
  const std::int64_t k = logits.size(0);
  const at::Tensor up = at::upsample_bilinear2d(logits.to(at::kFloat).unsqueeze(0),
                                                at::IntArrayRef({height, width}),
                                                /*align_corners=*/false)[0]
                            .contiguous();
  MaskSummary out;
  out.probabilities = up.sigmoid();
  if (!up.is_cpu()) {
    const at::Tensor binary = (up > 0).to(at::kFloat);
    out.scores = (out.probabilities * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6);
    out.boxes = boxes_of_masks(binary, 0.5);
    return out;
  }
  out.scores = at::zeros({k}, up.options());
  out.boxes = at::zeros({k, 4}, up.options());
  const float* x = up.data_ptr<float>();
  const float* p = out.probabilities.data_ptr<float>();
  float* score = out.scores.data_ptr<float>();
  float* box = out.boxes.data_ptr<float>();
  const std::int64_t plane = height * width;
  at::parallel_for(0, k, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t m = begin; m < end; ++m) {
      score_and_box(x + m * plane, p + m * plane, height, width, score + m, box + 4 * m);
    }
  });
  return out;
}

}  // namespace

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
  std::vector<at::Tensor> masks, boxes, classes, scores, picked;
  for (std::int64_t b = 0; b < batch; ++b) {  // one image at a time: k masks at the output size
    at::Tensor query, cls, score;
    MaskSummary summary;
    if (original) {
      // The (query, class) pairs by class probability, flattened query-major as the original's
      // scores.flatten(0, 1); each pair's mask summarised (a query picked twice, twice).
      const auto [top, pair] = prob[b].flatten().topk(k);
      query = at::floor_divide(pair, num_classes);
      cls = pair.remainder(num_classes);
      summary = summarise_masks(mask_logits[b].index_select(0, query), height, width);
      score = top * summary.scores;
    } else {
      summary = summarise_masks(mask_logits[b], height, width);
      const auto [top, index] = (class_score[b] * summary.scores).topk(k);
      query = index;
      cls = label[b].index_select(0, index);
      score = top;
      summary.probabilities = summary.probabilities.index_select(0, index);
      summary.boxes = summary.boxes.index_select(0, index);
    }
    picked.push_back(query);
    scores.push_back(score);
    classes.push_back(cls);
    masks.push_back(summary.probabilities);
    boxes.push_back(summary.boxes);
  }

  Detections out;
  out.query_index = at::stack(picked);
  // (One image: no copy of its k masks at the output size.)
  out.instances.masks = batch == 1 ? masks[0].unsqueeze(0) : at::stack(masks);
  out.instances.boxes = at::stack(boxes);
  out.instances.classes = at::stack(classes);
  out.instances.valid = at::ones({batch, k}, class_logits.options().dtype(at::kBool));
  out.instances.scores = at::stack(scores);
  return out;
}

}  // namespace wico::topdown
