// The seam every trainable referring-segmentation model sits behind (a bottom-up backend alone,
// the top-down branch alone, or a WiCo pair): the trainer and the evaluator see only this.
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "wico/core/registry.h"

namespace wico {
class Config;
}
namespace wico::data {
struct Batch;
}

namespace wico::nn {

struct RisOutput {
  // Weighted loss parts ("seg", "iou_td", ...); the trainer minimises their sum. Empty when the
  // forward ran without losses.
  std::map<std::string, at::Tensor> losses;
  // Branch -> foreground probability [B, 1, S, S] at the input size ("bottom_up", "top_down",
  // "fused"). The model's answer is probabilities[result_branch()].
  std::map<std::string, at::Tensor> probabilities;
  // Branch -> [B] predicted quality of that branch's mask (GSI's mu, the matcher's score), for
  // the branches that predict one.
  std::map<std::string, at::Tensor> confidences;
  // Branch -> [B] GSI's sigma of that confidence, for the branches that predict one.
  std::map<std::string, at::Tensor> spreads;
  // Branch -> wall seconds its part of this forward took (Table 3's speed column).
  std::map<std::string, double> seconds;
};

class RisModel : public torch::nn::Module {
 public:
  // `with_losses`: compute the training losses (needs the batch's targets).
  virtual RisOutput forward(const data::Batch& batch, bool with_losses) = 0;
  // The branch whose probability map is the model's result.
  virtual std::string result_branch() const = 0;
  // The probability above which a pixel of `branch` is foreground.
  virtual double threshold(const std::string& branch) const = 0;
};

using RisModelBuilder = std::function<std::shared_ptr<RisModel>(const Config&)>;

// Models by `model.kind`; built-ins are registered on first use.
Registry<RisModelBuilder>& model_registry();

// The model a config describes (model.kind), on the CPU, in training mode.
std::shared_ptr<RisModel> build_model(const Config& config);

}  // namespace wico::nn
