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
  // The original's training loss on logits up-sampled to the input size [B, 1, S, S] against the
  // 0/1 targets [B, 1, S, S].
  virtual at::Tensor loss(const at::Tensor& logits, const at::Tensor& targets) = 0;
  // C of E_p.
  virtual std::int64_t embedding_dim() const = 0;
  // Whether the original up-samples its logits with align_corners (LAVT: true, CRIS: false).
  virtual bool align_corners() const = 0;
};

using BackendBuilder = std::function<std::shared_ptr<BottomUpBackend>(const Config&)>;
// Backends by `bottom_up.backend`; built-ins are registered on first use (src/bottomup/backends.cpp).
Registry<BackendBuilder>& backend_registry();
std::shared_ptr<BottomUpBackend> build_backend(const Config& config);

// Logits [B, 1, h, w] -> [B, 1, S, S] bilinear, as the backend's original does.
at::Tensor upsample_logits(const BottomUpBackend& backend, const at::Tensor& logits,
                           std::int64_t size);

// A bottom-up backend trained and evaluated on its own (model.kind: bottom_up): its probability
// map is the branch "bottom_up", thresholded at 0.5 (LAVT's argmax of two logits).
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
