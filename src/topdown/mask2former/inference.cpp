#include "wico/topdown/mask2former/inference.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

#include "wico/core/cpu_features.h"
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

// ATen's bilinear resize (align_corners false, no scale factors given) along one axis: each
// output index's two source indices and weights, computed as upsample_bilinear2d computes them
// (area_pixel_compute_scale, area_pixel_compute_source_index, guard_index_and_lambda in float).
struct LinearTaps {
  std::vector<std::int64_t> first, second;
  std::vector<float> first_weight, second_weight;

  LinearTaps(std::int64_t in, std::int64_t out) {
    const float scale = static_cast<float>(in) / static_cast<float>(out);
    for (std::int64_t i = 0; i < out; ++i) {
      const float real = std::max(scale * (static_cast<float>(i) + 0.5f) - 0.5f, 0.0f);
      const std::int64_t index = std::min(static_cast<std::int64_t>(std::floor(real)), in - 1);
      const float lambda = std::min(std::max(real - static_cast<float>(index), 0.0f), 1.0f);
      first.push_back(index);
      second.push_back(index + (index < in - 1 ? 1 : 0));
      first_weight.push_back(1.0f - lambda);
      second_weight.push_back(lambda);
    }
  }
};

// exp(x) for x <= 0 by Cephes' expf (range reduction by ln 2, degree-5 polynomial, 2^n through
// the exponent bits; within 2 ulp of expf), written so that the compiler vectorises the row
// loop it sits in: no calls, and every choice between two values already computed (GCC does not
// if-convert a choice that would compute speculatively under its default -ftrapping-math).
inline float exp_nonpositive(float x) {
  x = x < -87.3f ? -87.3f : x;
  float fx = x * 1.44269504088896341f + 0.5f;
  const auto truncated = static_cast<std::int32_t>(fx);  // toward zero; fx may be negative
  float n = static_cast<float>(truncated);
  n -= n > fx ? 1.0f : 0.0f;  // floor
  x = x - n * 0.693359375f + n * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * x * x + x + 1.0f;
  std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return y * two_n;
}

// The logistic function from exp of a non-positive argument only (no overflow either side).
inline float sigmoid(float x) {
  const float e = exp_nonpositive(-std::abs(x));
  return (x >= 0 ? 1.0f : e) / (1.0f + e);
}

// What one output row adds to its mask's score: the probabilities where the logit is positive,
// and how many there are.
struct RowSums {
  float sum = 0, hits = 0;
};

// One output row: logits = a * top + b * bottom (two source rows already resized across, the
// vertical step of the bilinear resize) kept in `row`, their sigmoid written to `p`. Columns
// [from, width) in scalar-looking code the compiler vectorises in independent lanes (a float
// sum in one accumulator would not vectorise).
inline RowSums squash_row(const float* top, const float* bottom, float a, float b,
                          std::int64_t from, std::int64_t width, float* row, float* p) {
  constexpr int kLanes = 16;
  float acc[kLanes] = {}, hits[kLanes] = {};
  std::int64_t c = from;
  for (; c + kLanes <= width; c += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float x = top[c + j] * a + bottom[c + j] * b;
      const float q = sigmoid(x);
      const float on = x > 0 ? 1.0f : 0.0f;
      row[c + j] = x;
      p[c + j] = q;
      acc[j] += on * q;
      hits[j] += on;
    }
  }
  RowSums sums;
  for (; c < width; ++c) {
    const float x = top[c] * a + bottom[c] * b;
    const float q = sigmoid(x);
    row[c] = x;
    p[c] = q;
    if (x > 0) {
      sums.sum += q;
      sums.hits += 1;
    }
  }
  for (int j = 0; j < kLanes; ++j) {
    sums.sum += acc[j];
    sums.hits += hits[j];
  }
  return sums;
}

// One mask, fused: its logits resized bilinearly to height x width, their sigmoid written to
// `probabilities`, and the original's score (the mean probability where the logit is positive)
// and box of those pixels, without the full-size logits ever being stored. Rows are resized
// across first (each source row once, as ATen's kernel weighs the columns first), then each
// output row blends two of those rows (SquashRow: squash_row or its AVX2 twin).
template <typename SquashRow>
inline void summarise_one_mask(const float* logits, std::int64_t h, std::int64_t w,
                               const LinearTaps& rows, const LinearTaps& cols,
                               std::int64_t height, std::int64_t width, float* probabilities,
                               float* across, float* row, float* score, float* box,
                               SquashRow&& squash) {
  for (std::int64_t y = 0; y < h; ++y) {
    const float* src = logits + y * w;
    float* dst = across + y * width;
    for (std::int64_t c = 0; c < width; ++c) {
      dst[c] = src[cols.first[c]] * cols.first_weight[c] +
               src[cols.second[c]] * cols.second_weight[c];
    }
  }
  double sum = 0;
  std::int64_t count = 0, y1 = height, y2 = -1, x1 = width, x2 = -1;
  for (std::int64_t r = 0; r < height; ++r) {
    const RowSums sums =
        squash(across + rows.first[r] * width, across + rows.second[r] * width,
               rows.first_weight[r], rows.second_weight[r], width, row, probabilities + r * width);
    if (sums.hits == 0) continue;
    std::int64_t first = 0, last = width - 1;
    while (!(row[first] > 0)) ++first;
    while (!(row[last] > 0)) --last;
    sum += sums.sum;
    count += static_cast<std::int64_t>(sums.hits);
    y1 = std::min(y1, r);
    y2 = r;
    x1 = std::min(x1, first);
    x2 = std::max(x2, last);
  }
  // The original's (probs * binary).sum() / (binary.sum() + 1e-6).
  *score = static_cast<float>(sum / (static_cast<double>(count) + 1e-6));
  if (count > 0) {
    box[0] = static_cast<float>(x1) / static_cast<float>(width);
    box[1] = static_cast<float>(y1) / static_cast<float>(height);
    box[2] = static_cast<float>(x2 + 1) / static_cast<float>(width);
    box[3] = static_cast<float>(y2 + 1) / static_cast<float>(height);
  }
}

// Masks [begin, end) of summarise_masks.
template <typename SquashRow>
void summarise_mask_range(const float* logits, std::int64_t h, std::int64_t w,
                          const LinearTaps& rows, const LinearTaps& cols, std::int64_t height,
                          std::int64_t width, float* probabilities, float* scores, float* boxes,
                          std::int64_t begin, std::int64_t end, SquashRow&& squash) {
  std::vector<float> across(static_cast<std::size_t>(h * width)),
      row(static_cast<std::size_t>(width));
  for (std::int64_t m = begin; m < end; ++m) {
    summarise_one_mask(logits + m * h * w, h, w, rows, cols, height, width,
                       probabilities + m * height * width, across.data(), row.data(), scores + m,
                       boxes + 4 * m, squash);
  }
}

RowSums squash_row_baseline(const float* top, const float* bottom, float a, float b,
                            std::int64_t width, float* row, float* p) {
  return squash_row(top, bottom, a, b, 0, width, row, p);
}

#ifdef WICO_X86_TARGET_CLONES
// squash_row with AVX2 + FMA intrinsics, 8 columns at a time (GCC leaves the scalar-looking
// version unvectorised when compiled for AVX2: measured 8x slower than this on the sigmoid);
// the same exp polynomial.
__attribute__((target("avx2,fma"))) inline __m256 exp_nonpositive8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
  const __m256 n = _mm256_floor_ps(
      _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_add_ps(_mm256_fmadd_ps(y, _mm256_mul_ps(x, x), x), _mm256_set1_ps(1.0f));
  const __m256i two_n = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(two_n));
}

__attribute__((target("avx2,fma"))) RowSums squash_row_avx2(const float* top, const float* bottom,
                                                            float a, float b, std::int64_t width,
                                                            float* row, float* p) {
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b), one = _mm256_set1_ps(1.0f),
               zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
  __m256 acc = zero, hits = zero;
  std::int64_t c = 0;
  for (; c + 8 <= width; c += 8) {
    const __m256 x =
        _mm256_fmadd_ps(_mm256_loadu_ps(top + c), va, _mm256_mul_ps(_mm256_loadu_ps(bottom + c), vb));
    const __m256 e = exp_nonpositive8(_mm256_or_ps(x, sign));  // exp(-|x|)
    const __m256 nonnegative = _mm256_cmp_ps(x, zero, _CMP_GE_OQ);
    const __m256 q = _mm256_div_ps(_mm256_blendv_ps(e, one, nonnegative), _mm256_add_ps(one, e));
    const __m256 on = _mm256_cmp_ps(x, zero, _CMP_GT_OQ);
    _mm256_storeu_ps(row + c, x);
    _mm256_storeu_ps(p + c, q);
    acc = _mm256_add_ps(acc, _mm256_and_ps(on, q));
    hits = _mm256_add_ps(hits, _mm256_and_ps(on, one));
  }
  RowSums sums = squash_row(top, bottom, a, b, c, width, row, p);
  alignas(32) float lanes[8], counts[8];
  _mm256_store_ps(lanes, acc);
  _mm256_store_ps(counts, hits);
  for (int j = 0; j < 8; ++j) {
    sums.sum += lanes[j];
    sums.hits += counts[j];
  }
  return sums;
}

#endif

// logits [k, h, w] at the predictions' size -> each mask resized bilinearly (align_corners
// false) to height x width, its sigmoid, and the original's mask score and the box of logits > 0.
// On the CPU one fused pass per mask (summarise_one_mask): the full-size logits, a [k, H, W]
// tensor the resize, the sigmoid and the scan each went through memory for, are never stored
// (docs/performance.md). Elsewhere the tensor formulas.
MaskSummary summarise_masks(const at::Tensor& logits, std::int64_t height, std::int64_t width) {
  const std::int64_t k = logits.size(0);
  MaskSummary out;
  if (!logits.is_cpu()) {
    const at::Tensor up = at::upsample_bilinear2d(logits.to(at::kFloat).unsqueeze(0),
                                                  at::IntArrayRef({height, width}),
                                                  /*align_corners=*/false)[0];
    out.probabilities = up.sigmoid();
    const at::Tensor binary = (up > 0).to(at::kFloat);
    out.scores = (out.probabilities * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6);
    out.boxes = boxes_of_masks(binary, 0.5);
    return out;
  }
  const at::Tensor source = logits.to(at::kFloat).contiguous();
  const std::int64_t h = source.size(1), w = source.size(2);
  out.probabilities = at::empty({k, height, width}, source.options());
  out.scores = at::zeros({k}, source.options());
  out.boxes = at::zeros({k, 4}, source.options());
  const LinearTaps rows(h, height), cols(w, width);
  const float* in = source.data_ptr<float>();
  float* probabilities = out.probabilities.data_ptr<float>();
  float* scores = out.scores.data_ptr<float>();
  float* boxes = out.boxes.data_ptr<float>();
  at::parallel_for(0, k, 1, [&](std::int64_t begin, std::int64_t end) {
#ifdef WICO_X86_TARGET_CLONES
    if (cpu_has_avx2_fma()) {
      summarise_mask_range(in, h, w, rows, cols, height, width, probabilities, scores, boxes, begin,
                           end, squash_row_avx2);
      return;
    }
#endif
    summarise_mask_range(in, h, w, rows, cols, height, width, probabilities, scores, boxes, begin,
                         end, squash_row_baseline);
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
