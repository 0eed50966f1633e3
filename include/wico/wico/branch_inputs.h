// What one branch of a WiCo pair reads from the pair's batches. Both branches see the same
// images at the same geometry (data.input_size, data.resize, data.resize_filter must agree: the
// fused map, CFI's mask assignment and the targets share one frame), but each keeps its own text
// and pixel statistics: a branch whose text.tokenizer / text.vocab / text.max_length differ from
// the pair's gets the batch's sentences (and MAttNet's language negatives) encoded again by its
// own tokenizer, and one whose data.normalize differs gets the images renormalised per channel
// (x * std_pair / std_own + (mean_pair - mean_own) / std_own: exact for image pixels; a
// letterbox border keeps the pair's fill colour). So CRIS (CLIP BPE, CLIP statistics) pairs with
// a top-down branch trained on WordPiece and ImageNet statistics.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

namespace wico {
class Config;
}
namespace wico::data {
struct Batch;
class Tokenizer;
}  // namespace wico::data

namespace wico::model {

class BranchInputs {
 public:
  // `label` names the branch in errors ("wico.branches[1] (configs/tiny/cris.yaml)").
  BranchInputs(const Config& branch, const Config& pair, const std::string& label);
  ~BranchInputs();
  BranchInputs(BranchInputs&&) noexcept;
  BranchInputs& operator=(BranchInputs&&) noexcept;

  // True when the branch reads the pair's batch as it is.
  bool identity() const { return !tokenizer_ && !scale_.defined(); }
  bool retokenises() const { return tokenizer_ != nullptr; }
  bool renormalises() const { return scale_.defined(); }
  // The pair's batch as this branch reads it (the same tensors where nothing differs).
  data::Batch adapt(const data::Batch& batch) const;

 private:
  std::unique_ptr<data::Tokenizer> tokenizer_;  // null: the pair's token ids
  at::Tensor scale_, shift_;                    // [1, 3, 1, 1]; undefined: the pair's images
};

}  // namespace wico::model
