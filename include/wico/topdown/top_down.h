// The top-down branch of the paper (section 3.1): an instance extractor proposes masks M, a
// matcher scores them against the expression (S) and gives cross-modal instance embeddings (E);
// the branch's result is P_td = m^argmax(S) * s^argmax(S) (Eq. 1).
//
// Candidates: the matcher ranks the batch's ground-truth instances while training (as MAttNet
// trains on ground-truth boxes; `top_down.train_candidates`) and the extractor's top-k detections
// at evaluation (`top_down.eval_candidates`). When it ranks detections in training, the referred
// candidate is the one that overlaps the target most.
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "wico/nn/ris_model.h"
#include "wico/topdown/instances.h"

namespace wico {
class Config;
}
namespace wico::data {
struct Batch;
}

namespace wico::topdown {

struct TopDownOutput {
  at::Tensor masks;       // M [B, N, S, S] float 0/1 at the input size
  at::Tensor embeddings;  // E [B, N, C]
  at::Tensor scores;      // S [B, N], softmax over the valid candidates, 0 on padding
  at::Tensor valid;       // [B, N] bool
  at::Tensor best;        // [B] int64 argmax(S)
  at::Tensor target;      // [B] int64 the referred candidate (with_losses only)
  std::map<std::string, at::Tensor> losses;  // extractor and matcher losses (with_losses)
  double extractor_seconds = 0, matcher_seconds = 0;
};

// The ground-truth instances of a batch as candidates (masks at the input size).
InstanceCandidates ground_truth_candidates(const data::Batch& batch);

// Eq. 1: m^argmax(S) * s^argmax(S) -> [B, 1, S, S].
at::Tensor top_down_result(const TopDownOutput& output);

class TopDownBranch : public torch::nn::Module {
 public:
  explicit TopDownBranch(const Config& config);
  TopDownOutput forward(const data::Batch& batch, bool with_losses);

  std::int64_t embedding_dim() const { return matcher_->embedding_dim(); }
  InstanceExtractor& extractor() { return *extractor_; }
  InstanceMatcher& matcher() { return *matcher_; }

 private:
  std::shared_ptr<InstanceExtractor> extractor_;
  std::shared_ptr<InstanceMatcher> matcher_;
  std::int64_t num_classes_, top_k_;
  bool train_on_ground_truth_, eval_on_ground_truth_, detach_features_;
  std::string choose_;  // top_down.choose
  bool extractor_losses_, matcher_losses_;  // top_down.train
};

// The top-down branch trained and evaluated on its own (model.kind: top_down): its answer is the
// chosen mask ("top_down", thresholded at 0.5) and its confidence s^argmax(S).
class TopDownModel : public nn::RisModel {
 public:
  explicit TopDownModel(const Config& config);
  nn::RisOutput forward(const data::Batch& batch, bool with_losses) override;
  std::string result_branch() const override { return "top_down"; }
  double threshold(const std::string& branch) const override;
  TopDownBranch& branch() { return *branch_; }

 private:
  std::shared_ptr<TopDownBranch> branch_;
};

}  // namespace wico::topdown
