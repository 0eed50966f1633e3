// A small but real referring-segmentation network for the engine's tests: a strided conv
// encoder with batch norm and dropout (so generator state and BN modes matter), a bag-of-words
// text vector that modulates the image features (FiLM), a 1x1 head, bilinear up-sampling and a
// BCE loss. Registered as model.kind "test_tiny" by register_tiny_test_model().
#pragma once
#include <torch/torch.h>

#include "wico/core/config.h"
#include "wico/data/loader.h"
#include "wico/nn/batch_norm.h"
#include "wico/nn/ris_model.h"

namespace wico::test {

class TinyRisModel : public nn::RisModel {
 public:
  explicit TinyRisModel(std::int64_t vocab = 30522) {
    int in = 3;
    for (int out : {8, 16, 16}) {
      body_->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(2).padding(1)));
      body_->push_back(nn::BatchNorm(out));
      body_->push_back(torch::nn::ReLU());
      in = out;
    }
    register_module("body", body_);
    words_ = register_module("words", torch::nn::Embedding(vocab, 2 * in));
    dropout_ = register_module("dropout", torch::nn::Dropout(dropout_p));
    head_ = register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, 1, 1)));
  }

  nn::RisOutput forward(const data::Batch& batch, bool with_losses) override {
    at::Tensor x = body_->forward(batch.images);
    const at::Tensor mask = batch.attention_mask.unsqueeze(-1).to(x.scalar_type());
    const at::Tensor text = (words_(batch.token_ids) * mask).sum(1) / mask.sum(1).clamp_min(1);
    const auto film = text.chunk(2, 1);
    x = x * (1 + film[0].unsqueeze(-1).unsqueeze(-1)) + film[1].unsqueeze(-1).unsqueeze(-1);
    at::Tensor logits = head_(dropout_(x));
    logits = torch::nn::functional::interpolate(
        logits, torch::nn::functional::InterpolateFuncOptions()
                    .size(std::vector<int64_t>{batch.images.size(2), batch.images.size(3)})
                    .mode(torch::kBilinear)
                    .align_corners(false));
    nn::RisOutput out;
    out.probabilities["bottom_up"] = logits.sigmoid();
    if (with_losses) {
      out.losses["seg"] = torch::binary_cross_entropy_with_logits(logits, batch.targets);
      if (nan_loss_at_step > 0 && ++steps_ == nan_loss_at_step) {
        out.losses["seg"] = out.losses["seg"] * std::numeric_limits<double>::quiet_NaN();
      }
    }
    return out;
  }
  std::string result_branch() const override { return "bottom_up"; }
  double threshold(const std::string&) const override { return 0.5; }

  static inline double dropout_p = 0.2;
  // Makes the loss NaN at this forward (counted from 1), to test the non-finite handling.
  static inline int nan_loss_at_step = 0;

 private:
  torch::nn::Sequential body_;
  torch::nn::Embedding words_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Conv2d head_{nullptr};
  int steps_ = 0;
};

inline void register_tiny_test_model() {
  auto& registry = nn::model_registry();
  if (!registry.contains("test_tiny")) {
    registry.add("test_tiny", [](const Config&) { return std::make_shared<TinyRisModel>(); },
                 "tests only");
  }
}

}  // namespace wico::test
