#include "wico/nn/losses.h"

#include <ATen/ATen.h>

namespace wico::nn {

at::Tensor soft_dice_loss(const at::Tensor& probabilities, const at::Tensor& targets) {
  const at::Tensor p = probabilities.flatten(1), t = targets.flatten(1);
  return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean();
}

}  // namespace wico::nn
