#include "wico/data/loader.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <numeric>
#include <random>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/data/tokenizer.h"

namespace wico::data {

Batch Batch::to(const c10::Device& device) const {
  Batch b = *this;
  for (at::Tensor* t : {&b.images, &b.targets, &b.token_ids, &b.attention_mask,
                        &b.candidate_masks, &b.candidate_boxes, &b.candidate_classes,
                        &b.candidate_valid, &b.candidate_crowd, &b.target_index,
                        &b.negative_token_ids, &b.negative_attention_mask, &b.negative_valid,
                        &b.attribute_labels, &b.attribute_weights}) {
    if (t->defined()) *t = t->to(device, /*non_blocking=*/true);
  }
  return b;
}

LoaderOptions LoaderOptions::from_config(const Config& config) {
  LoaderOptions o;
  o.batch_size = static_cast<int>(config.integer("data.batch_size"));
  o.workers = static_cast<int>(config.integer("data.workers"));
  o.prefetch = static_cast<int>(config.integer("data.prefetch"));
  o.seed = static_cast<std::uint64_t>(config.integer("run.seed"));
  o.input_size = static_cast<int>(config.integer("data.input_size"));
  o.letterbox = config.text("data.resize") == "letterbox";
  o.paste = config.text("data.resize") == "paste";
  o.shortest_edge = config.text("data.resize") == "shortest_edge";
  o.min_size = static_cast<int>(config.integer("data.min_size"));
  o.max_size = static_cast<int>(config.integer("data.max_size"));
  o.size_divisibility = static_cast<int>(config.integer("data.size_divisibility"));
  o.resize_filter = parse_resize_filter(config.text("data.resize_filter"));
  check_resize_filter(o.letterbox || o.paste, o.resize_filter);  // at configuration
  o.mask_rule = parse_mask_rule(config.text("data.mask_rule"));
  o.soft_targets = config.flag("data.soft_targets");
  o.sentence_field = parse_sentence_field(config.text("data.sentence_field"));
  o.norm = normalization(config.text("data.normalize"));
  o.skip_bad_samples = config.text("data.on_bad_sample") == "skip";
  return o;
}

Loader::Loader(const RefDataset& dataset, const Tokenizer& tokenizer, LoaderOptions options)
    : dataset_(dataset), tokenizer_(tokenizer), options_(std::move(options)) {
  if (options_.batch_size < 1) throw ConfigError("data.batch_size must be at least 1");
  WICO_CHECK(options_.world_size >= 1 && options_.rank >= 0 && options_.rank < options_.world_size,
             "loader rank ", options_.rank, " of world size ", options_.world_size);
  options_.prefetch = std::max(1, options_.prefetch);
  // The workers parallelise over samples; OpenCV's own (TBB) thread pool on top of them only
  // competes with the training step for the cores.
  if (options_.workers > 0) cv::setNumThreads(0);
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { worker_loop(); });
}

Loader::~Loader() { stop_workers(); }

void Loader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_workers_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

std::int64_t Loader::samples_per_epoch() const {
  const auto n = static_cast<std::int64_t>(dataset_.size());
  return (n + options_.world_size - 1) / options_.world_size;
}

std::int64_t Loader::batches_per_epoch() const {
  const std::int64_t n = samples_per_epoch();
  return options_.drop_last ? n / options_.batch_size
                            : (n + options_.batch_size - 1) / options_.batch_size;
}

std::int64_t Loader::skipped() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return skipped_;
}

void Loader::start_epoch(std::int64_t epoch, std::int64_t first_batch) {
  WICO_CHECK(first_batch >= 0 && first_batch <= batches_per_epoch(), "first batch ", first_batch,
             " of an epoch of ", batches_per_epoch());
  std::lock_guard<std::mutex> lock(mutex_);
  epoch_ = epoch;
  std::vector<std::size_t> order(dataset_.size());
  std::iota(order.begin(), order.end(), 0);
  if (options_.shuffle) {
    std::mt19937_64 rng(options_.seed * 1000003ULL + static_cast<std::uint64_t>(epoch));
    std::shuffle(order.begin(), order.end(), rng);
  }
  if (options_.world_size > 1 && !order.empty()) {
    const auto world = static_cast<std::size_t>(options_.world_size);
    const std::size_t n = order.size();
    const std::size_t padded = (n + world - 1) / world * world;
    for (std::size_t i = n; i < padded; ++i) order.push_back(order[i - n]);
    order_.clear();
    for (std::size_t i = static_cast<std::size_t>(options_.rank); i < padded; i += world) {
      order_.push_back(order[i]);
    }
  } else {
    order_ = std::move(order);
  }
  ++generation_;
  next_to_make_ = first_batch;
  next_to_give_ = first_batch;
  ready_.clear();
  failed_.clear();
  skipped_ = 0;
  reported_skips_ = false;
  wake_workers_.notify_all();
}

std::vector<std::size_t> Loader::batch_indices(std::int64_t k) const {
  const auto begin = static_cast<std::size_t>(k * options_.batch_size);
  const auto end = std::min(order_.size(), begin + static_cast<std::size_t>(options_.batch_size));
  return {order_.begin() + static_cast<std::ptrdiff_t>(begin),
          order_.begin() + static_cast<std::ptrdiff_t>(end)};
}

void Loader::worker_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    wake_workers_.wait(lock, [&] {
      return stopping_ || (epoch_ >= 0 && next_to_make_ < batches_per_epoch() &&
                           next_to_make_ < next_to_give_ + options_.prefetch);
    });
    if (stopping_) return;
    const std::int64_t k = next_to_make_++;
    const std::int64_t generation = generation_, epoch = epoch_;
    const std::vector<std::size_t> indices = batch_indices(k);
    lock.unlock();
    std::optional<Batch> batch;
    std::exception_ptr error;
    std::int64_t skipped = 0;
    try {
      batch = make_batch(indices, epoch, &skipped);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    if (generation != generation_) continue;  // the epoch was restarted meanwhile
    skipped_ += skipped;
    if (error) {
      failed_[k] = error;
    } else {
      ready_[k] = std::move(*batch);
    }
    wake_consumer_.notify_all();
  }
}

std::optional<Batch> Loader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  WICO_CHECK(epoch_ >= 0, "Loader::next() before start_epoch()");
  while (next_to_give_ < batches_per_epoch()) {
    const std::int64_t k = next_to_give_;
    if (threads_.empty()) {  // no workers: load here
      const std::vector<std::size_t> indices = batch_indices(k);
      ++next_to_give_;
      lock.unlock();
      std::int64_t skipped = 0;
      Batch batch = make_batch(indices, epoch_, &skipped);
      lock.lock();
      skipped_ += skipped;
      if (batch.size() > 0) {
        return options_.device.is_cpu() ? std::move(batch) : batch.to(options_.device);
      }
      continue;
    }
    wake_consumer_.wait(lock, [&] { return ready_.count(k) || failed_.count(k); });
    ++next_to_give_;
    wake_workers_.notify_all();
    if (auto f = failed_.find(k); f != failed_.end()) {
      const auto error = f->second;
      failed_.erase(f);
      std::rethrow_exception(error);
    }
    Batch batch = std::move(ready_.at(k));
    ready_.erase(k);
    if (batch.size() > 0) {
      lock.unlock();
      return options_.device.is_cpu() ? std::move(batch) : batch.to(options_.device);
    }
  }
  if (skipped_ > 0 && !reported_skips_) {
    spdlog::warn("{} of {} samples of split '{}' were skipped as bad (data.on_bad_sample: skip)",
                 skipped_, dataset_.size(), dataset_.split());
    reported_skips_ = true;
  }
  return std::nullopt;
}

namespace {

// One sample after transforming, before collation.
struct Prepared {
  cv::Mat3b image;
  cv::Mat1b target;
  bool soft_target = false;  // target in 0..255 (data.soft_targets), else 0/1
  Encoding tokens;
  std::vector<cv::Mat1b> candidate_masks;
  std::vector<std::array<float, 4>> boxes;
  std::vector<std::int64_t> classes;
  std::vector<bool> crowd;
  std::int64_t target_index = 0;
  Encoding negative_tokens;  // empty without a negative
  bool has_negative = false;
  std::vector<std::int64_t> attributes;
  std::int64_t attribute_vocabulary_size = 0;
  at::Tensor attribute_weights;
};

// HWC uint8 BGR -> CHW float RGB, normalised, in one pass straight into the batch tensor (the
// workers avoid LibTorch's own thread pool, which the training step is using).
void write_normalised(const cv::Mat3b& image, const Normalization& norm, float* out, int width,
                      int height) {
  const std::size_t plane = static_cast<std::size_t>(height) * width;
  float scale[3], shift[3];
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.0f / (255.0f * norm.std[c]);
    shift[c] = -norm.mean[c] / norm.std[c];
  }
  for (int y = 0; y < image.rows; ++y) {
    const cv::Vec3b* row = image.ptr<cv::Vec3b>(y);
    const std::size_t base = static_cast<std::size_t>(y) * width;
    for (int x = 0; x < image.cols; ++x) {
      for (int c = 0; c < 3; ++c) out[c * plane + base + x] = row[x][2 - c] * scale[c] + shift[c];
    }
  }
}

// The paste letterbox's border at the normalisation's exact fill (a byte holds 127 or 128 of
// VLT's 127.5).
void write_paste_border(const ResizePlan& plan, const Normalization& norm, float* out) {
  const int S = plan.size;
  const std::size_t plane = static_cast<std::size_t>(S) * S;
  const int x0 = static_cast<int>(plan.offset_x), y0 = static_cast<int>(plan.offset_y);
  const int x1 = x0 + plan.resized_width, y1 = y0 + plan.resized_height;
  for (int c = 0; c < 3; ++c) {
    const float value = (norm.fill - norm.mean[c]) / norm.std[c];
    for (int y = 0; y < S; ++y) {
      float* row = out + c * plane + static_cast<std::size_t>(y) * S;
      if (y < y0 || y >= y1) {
        std::fill(row, row + S, value);
      } else {
        std::fill(row, row + x0, value);
        std::fill(row + x1, row + S, value);
      }
    }
  }
}

// A mask into rows of `width` values (the canvas; what lies beyond the mask stays as it was).
template <typename T>
void write_mask(const cv::Mat1b& mask, T* out, int width) {
  for (int y = 0; y < mask.rows; ++y) {
    const std::uint8_t* row = mask.ptr<std::uint8_t>(y);
    T* dst = out + static_cast<std::size_t>(y) * width;
    for (int x = 0; x < mask.cols; ++x) dst[x] = static_cast<T>(row[x] != 0);
  }
}

// A soft target (0..255) as fractions in [0, 1], as CRIS's `mask / 255.`.
void write_soft_mask(const cv::Mat1b& mask, float* out, int width) {
  for (int y = 0; y < mask.rows; ++y) {
    const std::uint8_t* row = mask.ptr<std::uint8_t>(y);
    float* dst = out + static_cast<std::size_t>(y) * width;
    for (int x = 0; x < mask.cols; ++x) dst[x] = static_cast<float>(row[x]) / 255.0f;
  }
}

// x1, y1, x2, y2 of a mask's pixels (detectron2's BitMasks.get_bounding_boxes: x2 = last + 1).
std::array<float, 4> mask_box(const cv::Mat1b& mask) {
  const cv::Rect r = cv::boundingRect(mask);
  return {static_cast<float>(r.x), static_cast<float>(r.y), static_cast<float>(r.x + r.width),
          static_cast<float>(r.y + r.height)};
}

}  // namespace

Batch Loader::make_batch(const std::vector<std::size_t>& indices, std::int64_t epoch,
                         std::int64_t* skipped) const {
  std::vector<Sample> samples;
  for (std::size_t index : indices) {
    try {
      samples.push_back(dataset_.load(index, options_.seed, epoch, options_.mask_rule,
                                    options_.sentence_field));
    } catch (const Error& e) {
      if (!options_.skip_bad_samples) throw;
      spdlog::warn("skipping a bad sample (data.on_bad_sample: skip): {}", e.what());
      if (skipped) ++*skipped;
    }
  }
  return collate(std::move(samples), tokenizer_, options_);
}

Batch collate(std::vector<Sample> samples, const Tokenizer& tokenizer,
              const LoaderOptions& options) {
  const int S = options.input_size;
  std::vector<Prepared> prepared;
  Batch batch;
  for (Sample& s : samples) {
    ResizePlan plan;
    if (s.lsj) {
      plan = plan_lsj(s.image.cols, s.image.rows, S, s.lsj->scale, s.lsj->crop_fraction,
                      s.lsj->flip);
    } else if (options.shortest_edge) {
      plan = plan_shortest_edge(s.image.cols, s.image.rows, options.min_size, options.max_size,
                                options.size_divisibility, options.resize_filter);
    } else if (options.paste) {
      plan = plan_paste(s.image.cols, s.image.rows, S);
    } else {
      plan = plan_resize(s.image.cols, s.image.rows, S, options.letterbox, options.resize_filter);
    }
    Prepared p;
    p.image = resize_image(s.image, plan, options.norm);
    p.tokens = tokenizer.encode(s.sentence);
    if (s.lsj) {
      // Mask2Former's instance mapper: polygons transformed and rasterised at the crop, boxes
      // from the masks, instances the crop left empty dropped (filter_empty_instances).
      p.target_index = 0;
      for (std::size_t i = 0; i < s.candidates.size(); ++i) {
        const auto& c = s.candidates[i];
        WICO_CHECK(c.segmentation != nullptr, "an lsj sample's candidates need their annotations");
        cv::Mat1b m = transform_annotation_mask(*c.segmentation, plan);
        if (cv::countNonZero(m) == 0) continue;
        if (static_cast<int>(i) == s.target_index) {
          p.target_index = static_cast<std::int64_t>(p.candidate_masks.size());
        }
        p.boxes.push_back(mask_box(m));
        p.candidate_masks.push_back(std::move(m));
        p.classes.push_back(c.class_index);
        p.crowd.push_back(c.iscrowd);
      }
      if (p.candidate_masks.empty()) {
        p.target = cv::Mat1b(S, S, std::uint8_t{0});
      } else {
        p.target = p.candidate_masks[static_cast<std::size_t>(p.target_index)].clone();
      }
    } else {
      p.soft_target = options.soft_targets;
      p.target = p.soft_target ? resize_soft_mask(s.target, plan) : resize_mask(s.target, plan);
      for (const auto& c : s.candidates) {
        p.candidate_masks.push_back(resize_mask(c.mask, plan));
        p.boxes.push_back(map_box(c.box, plan));
        p.classes.push_back(c.class_index);
        p.crowd.push_back(c.iscrowd);
      }
      p.target_index = s.target_index;
    }
    p.has_negative = !s.negative_sentence.empty();
    if (p.has_negative) p.negative_tokens = tokenizer.encode(s.negative_sentence);
    p.attributes = s.attributes;
    p.attribute_vocabulary_size = s.attribute_vocabulary_size;
    p.attribute_weights = s.attribute_weights;
    prepared.push_back(std::move(p));
    batch.info.push_back({s.ref_id, s.sent_id, s.image_id, s.ann_id, s.sentence, plan,
                          std::move(s.target), s.negative_sentence});
  }
  // The canvas: S x S, or (shortest_edge) the largest of the batch's padded images, as
  // ImageList.from_tensors pads.
  int H = 0, W = 0;
  for (const auto& info : batch.info) {
    H = std::max(H, info.plan.input_height());
    W = std::max(W, info.plan.input_width());
  }
  bool padded = false;
  for (auto& info : batch.info) {
    if (info.plan.kind == ResizeKind::kShortestEdge) {
      info.plan.canvas_width = W;
      info.plan.canvas_height = H;
      padded = true;
    }
  }
  const auto B = static_cast<std::int64_t>(prepared.size());
  if (B == 0) return batch;
  const auto L = static_cast<std::int64_t>(prepared[0].tokens.ids.size());
  std::int64_t N = 1;
  for (const auto& p : prepared) {
    N = std::max<std::int64_t>(N, static_cast<std::int64_t>(p.candidate_masks.size()));
  }
  // Zeroed with memset rather than at::zeros: the workers stay out of ATen's intra-op thread
  // pool, which the training step is using at the same time.
  auto zeros = [](at::IntArrayRef sizes, at::ScalarType type) {
    at::Tensor t = at::empty(sizes, type);
    std::memset(t.data_ptr(), 0, t.nbytes());
    return t;
  };
  batch.images = padded ? zeros({B, 3, H, W}, at::kFloat) : at::empty({B, 3, H, W}, at::kFloat);
  batch.targets = padded ? zeros({B, 1, H, W}, at::kFloat) : at::empty({B, 1, H, W}, at::kFloat);
  batch.token_ids = at::empty({B, L}, at::kLong);
  batch.attention_mask = at::empty({B, L}, at::kLong);
  batch.candidate_masks = zeros({B, N, H, W}, at::kByte);
  batch.candidate_boxes = zeros({B, N, 4}, at::kFloat);
  batch.candidate_classes = zeros({B, N}, at::kLong);
  batch.candidate_valid = zeros({B, N}, at::kBool);
  batch.candidate_crowd = zeros({B, N}, at::kBool);
  batch.target_index = at::empty({B}, at::kLong);
  const std::size_t plane = static_cast<std::size_t>(H) * W;
  for (std::int64_t b = 0; b < B; ++b) {
    const Prepared& p = prepared[b];
    WICO_CHECK(static_cast<std::int64_t>(p.tokens.ids.size()) == L &&
                   p.tokens.attention_mask.size() == p.tokens.ids.size(),
               "the tokenizer returned ", p.tokens.ids.size(), " ids, expected ", L);
    write_normalised(p.image, options.norm, batch.images.data_ptr<float>() + b * 3 * plane, W, H);
    if (batch.info[static_cast<std::size_t>(b)].plan.kind == ResizeKind::kPaste &&
        options.norm.fill >= 0) {
      write_paste_border(batch.info[static_cast<std::size_t>(b)].plan, options.norm,
                         batch.images.data_ptr<float>() + b * 3 * plane);
    }
    if (p.soft_target) {
      write_soft_mask(p.target, batch.targets.data_ptr<float>() + b * plane, W);
    } else {
      write_mask(p.target, batch.targets.data_ptr<float>() + b * plane, W);
    }
    std::copy(p.tokens.ids.begin(), p.tokens.ids.end(), batch.token_ids.data_ptr<std::int64_t>() + b * L);
    std::copy(p.tokens.attention_mask.begin(), p.tokens.attention_mask.end(),
              batch.attention_mask.data_ptr<std::int64_t>() + b * L);
    batch.target_index.data_ptr<std::int64_t>()[b] = p.target_index;
    for (std::size_t n = 0; n < p.candidate_masks.size(); ++n) {
      const auto i = b * N + static_cast<std::int64_t>(n);
      write_mask(p.candidate_masks[n], batch.candidate_masks.data_ptr<std::uint8_t>() + i * plane,
                 W);
      std::copy(p.boxes[n].begin(), p.boxes[n].end(), batch.candidate_boxes.data_ptr<float>() + i * 4);
      batch.candidate_classes.data_ptr<std::int64_t>()[i] = p.classes[n];
      batch.candidate_valid.data_ptr<bool>()[i] = true;
      batch.candidate_crowd.data_ptr<bool>()[i] = p.crowd[n];
    }
  }
  bool any_negative = false;
  for (const Prepared& p : prepared) any_negative = any_negative || p.has_negative;
  if (any_negative) {
    batch.negative_token_ids = at::empty({B, L}, at::kLong);
    batch.negative_attention_mask = at::empty({B, L}, at::kLong);
    batch.negative_valid = zeros({B}, at::kBool);
    for (std::int64_t b = 0; b < B; ++b) {
      // A sample without a negative repeats its own sentence (negative_valid says to skip it).
      const auto& t = prepared[b].has_negative ? prepared[b].negative_tokens : prepared[b].tokens;
      WICO_CHECK(static_cast<std::int64_t>(t.ids.size()) == L, "the tokenizer returned ",
                 t.ids.size(), " ids, expected ", L);
      std::copy(t.ids.begin(), t.ids.end(), batch.negative_token_ids.data_ptr<std::int64_t>() + b * L);
      std::copy(t.attention_mask.begin(), t.attention_mask.end(),
                batch.negative_attention_mask.data_ptr<std::int64_t>() + b * L);
      batch.negative_valid.data_ptr<bool>()[b] = prepared[b].has_negative;
    }
  }
  const std::int64_t A = prepared[0].attribute_vocabulary_size;
  if (A > 0) {
    batch.attribute_labels = zeros({B, A}, at::kFloat);
    for (std::int64_t b = 0; b < B; ++b) {
      WICO_CHECK(prepared[b].attribute_vocabulary_size == A,
                 "samples of one batch from two attribute vocabularies");
      for (std::int64_t a : prepared[b].attributes) {
        WICO_CHECK(a >= 0 && a < A, "attribute index ", a, " outside the vocabulary of ", A);
        batch.attribute_labels.data_ptr<float>()[b * A + a] = 1.0f;
      }
    }
    batch.attribute_weights = prepared[0].attribute_weights;
  }
  return batch;
}

}  // namespace wico::data
