#include "wico/data/loader.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <algorithm>
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
                        &b.candidate_valid, &b.target_index}) {
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
  o.norm = normalization(config.text("data.normalize"));
  o.skip_bad_samples = config.text("data.on_bad_sample") == "skip";
  return o;
}

Loader::Loader(const RefDataset& dataset, const Tokenizer& tokenizer, LoaderOptions options)
    : dataset_(dataset), tokenizer_(tokenizer), options_(std::move(options)) {
  if (options_.batch_size < 1) throw ConfigError("data.batch_size must be at least 1");
  options_.prefetch = std::max(1, options_.prefetch);
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

std::int64_t Loader::batches_per_epoch() const {
  const auto n = static_cast<std::int64_t>(dataset_.size());
  return options_.drop_last ? n / options_.batch_size
                            : (n + options_.batch_size - 1) / options_.batch_size;
}

std::int64_t Loader::skipped() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return skipped_;
}

void Loader::start_epoch(std::int64_t epoch) {
  std::lock_guard<std::mutex> lock(mutex_);
  epoch_ = epoch;
  order_.resize(dataset_.size());
  std::iota(order_.begin(), order_.end(), 0);
  if (options_.shuffle) {
    std::mt19937_64 rng(options_.seed * 1000003ULL + static_cast<std::uint64_t>(epoch));
    std::shuffle(order_.begin(), order_.end(), rng);
  }
  ++generation_;
  next_to_make_ = 0;
  next_to_give_ = 0;
  ready_.clear();
  failed_.clear();
  wake_workers_.notify_all();
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
    const auto begin = static_cast<std::size_t>(k * options_.batch_size);
    const auto end = std::min(order_.size(), begin + static_cast<std::size_t>(options_.batch_size));
    std::vector<std::size_t> indices(order_.begin() + static_cast<std::ptrdiff_t>(begin),
                                     order_.begin() + static_cast<std::ptrdiff_t>(end));
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
      const auto begin = static_cast<std::size_t>(k * options_.batch_size);
      const auto end =
          std::min(order_.size(), begin + static_cast<std::size_t>(options_.batch_size));
      std::vector<std::size_t> indices(order_.begin() + static_cast<std::ptrdiff_t>(begin),
                                       order_.begin() + static_cast<std::ptrdiff_t>(end));
      ++next_to_give_;
      lock.unlock();
      std::int64_t skipped = 0;
      Batch batch = make_batch(indices, epoch_, &skipped);
      lock.lock();
      skipped_ += skipped;
      if (batch.size() > 0) return batch;
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
  return std::nullopt;
}

Batch Loader::make_batch(const std::vector<std::size_t>& indices, std::int64_t epoch,
                         std::int64_t* skipped) const {
  const int S = options_.input_size;
  std::vector<at::Tensor> images, targets, ids, masks;
  std::vector<std::vector<at::Tensor>> candidate_masks;
  std::vector<std::vector<std::array<float, 4>>> boxes;
  std::vector<std::vector<std::int64_t>> classes;
  std::vector<std::int64_t> target_index;
  Batch batch;
  for (std::size_t index : indices) {
    Sample s;
    try {
      s = dataset_.load(index, options_.seed, epoch);
    } catch (const Error& e) {
      if (!options_.skip_bad_samples) throw;
      spdlog::warn("skipping a bad sample (data.on_bad_sample: skip): {}", e.what());
      if (skipped) ++*skipped;
      continue;
    }
    const ResizePlan plan = plan_resize(s.image.cols, s.image.rows, S, options_.letterbox);
    images.push_back(image_to_tensor(resize_image(s.image, plan, options_.norm), options_.norm));
    targets.push_back(mask_to_tensor(resize_mask(s.target, plan)).unsqueeze(0));
    const Encoding e = tokenizer_.encode(s.sentence);
    ids.push_back(at::tensor(e.ids, at::kLong));
    masks.push_back(at::tensor(e.attention_mask, at::kLong));
    std::vector<at::Tensor> cm;
    std::vector<std::array<float, 4>> cb;
    std::vector<std::int64_t> cc;
    for (const auto& c : s.candidates) {
      cm.push_back(mask_to_tensor(resize_mask(c.mask, plan)));
      cb.push_back(map_box(c.box, plan));
      cc.push_back(c.category_id);
    }
    candidate_masks.push_back(std::move(cm));
    boxes.push_back(std::move(cb));
    classes.push_back(std::move(cc));
    target_index.push_back(s.target_index);
    batch.info.push_back({s.ref_id, s.sent_id, s.image_id, s.ann_id, s.sentence, plan,
                          std::move(s.target)});
  }
  const auto B = static_cast<std::int64_t>(batch.info.size());
  if (B == 0) return batch;
  batch.images = at::stack(images);
  batch.targets = at::stack(targets);
  batch.token_ids = at::stack(ids);
  batch.attention_mask = at::stack(masks);
  batch.target_index = at::tensor(target_index, at::kLong);
  std::int64_t N = 1;
  for (const auto& c : candidate_masks) N = std::max<std::int64_t>(N, static_cast<std::int64_t>(c.size()));
  batch.candidate_masks = at::zeros({B, N, S, S}, at::kFloat);
  batch.candidate_boxes = at::zeros({B, N, 4}, at::kFloat);
  batch.candidate_classes = at::zeros({B, N}, at::kLong);
  batch.candidate_valid = at::zeros({B, N}, at::kBool);
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::size_t n = 0; n < candidate_masks[b].size(); ++n) {
      const auto i = static_cast<std::int64_t>(n);
      batch.candidate_masks[b][i].copy_(candidate_masks[b][n]);
      const auto& box = boxes[b][n];
      batch.candidate_boxes[b][i].copy_(at::tensor({box[0], box[1], box[2], box[3]}));
      batch.candidate_classes[b][i] = classes[b][n];
      batch.candidate_valid[b][i] = true;
    }
  }
  return batch;
}

}  // namespace wico::data
