// Loss pieces shared by models.
#pragma once
#include <ATen/core/Tensor.h>

namespace wico::nn {

// Soft Dice per sample with smoothing 1, averaged over the batch: probabilities and 0/1 targets
// of the same shape [B, ...].
at::Tensor soft_dice_loss(const at::Tensor& probabilities, const at::Tensor& targets);

}  // namespace wico::nn
