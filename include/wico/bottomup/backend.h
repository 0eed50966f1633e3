// The bottom-up seam (DESIGN "Seams"): a backend turns a batch into pixel embeddings E_p and
// decodes them into a foreground logit with its own final 1x1 layer (the "Linear" of the paper's
// Eq. 2, which CFI reuses in Eq. 4). Backends register by name (`bottom_up.backend`); see
// docs/backends.md for how to add one.
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <string>

#include "wico/core/registry.h"
#include "wico/nn/ris_model.h"

namespace wico {
class Config;
}
namespace wico::data {
struct Batch;
}

namespace wico::bottomup {

struct BottomUpOutput {
  at::Tensor pixel_embeddings;  // E_p [B, C, h, w]
  at::Tensor logits;            // decode(E_p): [B, 1, h, w], foreground logit
};

class BottomUpBackend : public torch::nn::Module {
 public:
  virtual BottomUpOutput forward(const data::Batch& batch) = 0;
  // The backend's final 1x1 layer on (possibly enhanced) pixel embeddings -> [B, 1, h, w].
  virtual at::Tensor decode(const at::Tensor& pixel_embeddings) = 0;
  // The original's training loss given the backend's own logits [B, 1, h, w] (decode's output)
  // and the targets at the input size [B, 1, S, S]: each backend brings the two to the
  // resolution its original compares them at (LAVT up-samples the logits to S; CRIS resizes the
  // targets, nearest, to h x w).
  virtual at::Tensor loss(const at::Tensor& logits, const at::Tensor& targets) = 0;
  // C of E_p.
  virtual std::int64_t embedding_dim() const = 0;
  // The foreground probability at the input size [B, 1, S, S] from decode's logits, resized as
  // the original does at inference (default: the logits bilinearly, with align_corners(), then
  // the sigmoid; CRIS: the sigmoid first, then bicubic).
  virtual at::Tensor probabilities(const at::Tensor& logits, std::int64_t size) const;
  // The original's threshold on that probability (LAVT's argmax of two logits: 0.5; CRIS 0.35).
  virtual double threshold() const { return 0.5; }
  // Whether the default probabilities() up-samples with align_corners (LAVT: true).
  virtual bool align_corners() const { return false; }
};

using BackendBuilder = std::function<std::shared_ptr<BottomUpBackend>(const Config&)>;
// Backends by `bottom_up.backend`; built-ins are registered on first use (src/bottomup/backends.cpp).
Registry<BackendBuilder>& backend_registry();
std::shared_ptr<BottomUpBackend> build_backend(const Config& config);

// A bottom-up backend trained and evaluated on its own (model.kind: bottom_up): its probability
// map is the branch "bottom_up", thresholded at the backend's threshold().
class BottomUpModel : public nn::RisModel {
 public:
  explicit BottomUpModel(const Config& config);
  nn::RisOutput forward(const data::Batch& batch, bool with_losses) override;
  std::string result_branch() const override { return "bottom_up"; }
  double threshold(const std::string& branch) const override;
  BottomUpBackend& backend() { return *backend_; }

 private:
  std::shared_ptr<BottomUpBackend> backend_;
};

}  // namespace wico::bottomup
