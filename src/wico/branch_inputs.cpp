#include "wico/wico/branch_inputs.h"

#include <ATen/ATen.h>

#include <vector>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/data/loader.h"
#include "wico/data/tokenizer.h"
#include "wico/data/tokenizer_config.h"
#include "wico/data/transforms.h"

namespace wico::model {

namespace {

// Ids and attention masks of `sentences` by `tokenizer`, as [B, L] int64 tensors on `device`.
std::pair<at::Tensor, at::Tensor> encode(const data::Tokenizer& tokenizer,
                                         const std::vector<const std::string*>& sentences,
                                         const c10::Device& device) {
  const auto B = static_cast<std::int64_t>(sentences.size());
  const std::int64_t L = tokenizer.max_length();
  at::Tensor ids = at::empty({B, L}, at::kLong), mask = at::empty({B, L}, at::kLong);
  for (std::int64_t b = 0; b < B; ++b) {
    const data::Encoding e = tokenizer.encode(*sentences[static_cast<std::size_t>(b)]);
    WICO_CHECK(static_cast<std::int64_t>(e.ids.size()) == L, "the tokenizer returned ",
               e.ids.size(), " ids, expected ", L);
    std::copy(e.ids.begin(), e.ids.end(), ids.data_ptr<std::int64_t>() + b * L);
    std::copy(e.attention_mask.begin(), e.attention_mask.end(),
              mask.data_ptr<std::int64_t>() + b * L);
  }
  return {ids.to(device), mask.to(device)};
}

}  // namespace

BranchInputs::BranchInputs(const Config& branch, const Config& pair, const std::string& label) {
  for (const char* key : {"data.input_size", "data.resize", "data.resize_filter"}) {
    if (branch.value(key) != pair.value(key)) {
      throw ConfigError(label + " sets " + key + " unlike the pair: both branches read the "
                        "pair's images in one frame (the fused map, CFI's mask assignment and "
                        "the targets share it)");
    }
  }
  bool own_text = false;
  for (const char* key : {"text.tokenizer", "text.vocab", "text.max_length"}) {
    own_text = own_text || branch.value(key) != pair.value(key);
  }
  if (own_text) {
    if (branch.text("text.tokenizer") == "word" && branch.text("text.vocab").empty()) {
      throw ConfigError(label + " counts a word vocabulary on its training split; inside a pair "
                        "with other text settings it needs the saved list (text.vocab)");
    }
    tokenizer_ = data::make_tokenizer_from_config(branch);
  }
  if (branch.value("data.normalize") != pair.value("data.normalize")) {
    const data::Normalization from = data::normalization(pair.text("data.normalize"));
    const data::Normalization to = data::normalization(branch.text("data.normalize"));
    std::vector<float> scale(3), shift(3);
    for (int c = 0; c < 3; ++c) {
      scale[c] = from.std[c] / to.std[c];
      shift[c] = (from.mean[c] - to.mean[c]) / to.std[c];
    }
    scale_ = at::tensor(scale).view({1, 3, 1, 1});
    shift_ = at::tensor(shift).view({1, 3, 1, 1});
  }
}

BranchInputs::~BranchInputs() = default;
BranchInputs::BranchInputs(BranchInputs&&) noexcept = default;
BranchInputs& BranchInputs::operator=(BranchInputs&&) noexcept = default;

data::Batch BranchInputs::adapt(const data::Batch& batch) const {
  data::Batch out = batch;
  if (identity()) return out;
  const c10::Device device = batch.images.device();
  if (scale_.defined()) {
    out.images = batch.images * scale_.to(device, batch.images.scalar_type()) +
                 shift_.to(device, batch.images.scalar_type());
  }
  if (tokenizer_) {
    WICO_CHECK(static_cast<std::int64_t>(batch.info.size()) == batch.images.size(0),
               "a branch with its own tokenizer re-encodes the batch's sentences; the batch has ",
               batch.info.size(), " for ", batch.images.size(0), " images");
    std::vector<const std::string*> sentences, negatives;
    for (const auto& info : batch.info) {
      sentences.push_back(&info.sentence);
      negatives.push_back(info.negative_sentence.empty() ? &info.sentence : &info.negative_sentence);
    }
    std::tie(out.token_ids, out.attention_mask) = encode(*tokenizer_, sentences, device);
    if (batch.negative_token_ids.defined()) {
      std::tie(out.negative_token_ids, out.negative_attention_mask) =
          encode(*tokenizer_, negatives, device);
    }
  }
  return out;
}

}  // namespace wico::model
