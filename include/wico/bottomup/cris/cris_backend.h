// CRIS behind the bottom-up seam (bottom_up.backend: cris; docs/backends.md). E_p is the
// projector's pixel embeddings Z_v [B, 256, S/4, S/4] (fpn_out[1] / 2 channels): the features the
// sentence's dynamic kernel reads. decode(E_p) applies that kernel (a 3x3, 256 -> 1 convolution
// and a bias, computed by proj.txt from the sentence state) to E_p; the kernels are those of the
// batch the last forward saw, so CFI's enhanced embeddings of the same batch are decoded with
// their own sentences' kernels (decode before any forward, or on another batch size, is an
// error). The loss is the original's: binary cross-entropy with logits at the logits' size
// against the targets resized there (nearest); cris.loss bce_dice adds soft Dice there.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "wico/bottomup/backend.h"
#include "wico/bottomup/cris/cris.h"
#include "wico/io/pretrained.h"

namespace wico {
class Config;
class Schema;
}  // namespace wico

namespace wico::bottomup {

struct CrisBackendOptions {
  CrisOptions net = CrisOptions::r50();
  std::string clip_pretrained;  // OpenAI RN50.pt / RN101.pt ('' = random)
  // bce: the original's; bce_dice: plus soft Dice, for training from scratch (cris.loss)
  std::string loss = "bce";
  static CrisBackendOptions from_config(const Config& config);
};

void add_cris_keys(Schema& schema);

class CrisBackend : public BottomUpBackend, public io::PretrainedWeights {
 public:
  explicit CrisBackend(CrisBackendOptions options);
  std::vector<io::ImportReport> load_pretrained() override;
  BottomUpOutput forward(const data::Batch& batch) override;
  at::Tensor decode(const at::Tensor& pixel_embeddings) override;
  at::Tensor loss(const at::Tensor& logits, const at::Tensor& targets) override;
  std::int64_t embedding_dim() const override { return options_.net.projector_dim(); }
  // As the original's test.py: the sigmoid at S/4, then bicubic with align_corners=True to S
  // (clamped to [0, 1]: bicubic overshoots, and a pair's losses read probabilities); > 0.35.
  at::Tensor probabilities(const at::Tensor& logits, std::int64_t size) const override;
  double threshold() const override { return 0.35; }

  CrisNet& net() { return net_; }
  const CrisBackendOptions& options() const { return options_; }

 private:
  CrisBackendOptions options_;
  CrisNet net_{nullptr};  // its children registered here (backbone, neck, decoder, proj)
  at::Tensor kernel_;  // the last forward's dynamic kernels [B, C * k * k + 1]
};

}  // namespace wico::bottomup
