// A hand-made batch with instances, shared by the top-down and WiCo tests.
#pragma once
#include <torch/torch.h>

#include "wico/data/loader.h"

namespace wico::test {

// Two images of 64x64, each with three rectangles (the second image's last one is padding).
inline data::Batch toy_instance_batch() {
  const std::int64_t B = 2, N = 3, S = 64, L = 6;
  data::Batch b;
  b.images = torch::randn({B, 3, S, S});
  b.candidate_masks = torch::zeros({B, N, S, S}, torch::kUInt8);
  b.candidate_boxes = torch::zeros({B, N, 4});
  const std::int64_t boxes[B][N][4] = {{{4, 4, 20, 30}, {30, 8, 60, 20}, {10, 40, 50, 60}},
                                       {{0, 0, 32, 32}, {32, 32, 64, 64}, {0, 0, 0, 0}}};
  for (std::int64_t i = 0; i < B; ++i) {
    for (std::int64_t j = 0; j < N; ++j) {
      const auto* box = boxes[i][j];
      b.candidate_masks.index_put_({i, j, torch::indexing::Slice(box[1], box[3]), torch::indexing::Slice(box[0], box[2])}, 1);
      for (int k = 0; k < 4; ++k) b.candidate_boxes[i][j][k] = static_cast<float>(box[k]);
    }
  }
  b.candidate_classes = torch::tensor({{0, 3, 5}, {1, 1, 0}}, torch::kLong);  // contiguous
  b.candidate_valid = torch::tensor({{true, true, true}, {true, true, false}});
  b.target_index = torch::tensor({1, 0}, torch::kLong);
  b.targets = b.candidate_masks.index({torch::arange(B), b.target_index}).unsqueeze(1).to(torch::kFloat);
  b.token_ids = torch::randint(1000, 2000, {B, L}, torch::kLong);
  b.attention_mask = torch::ones({B, L}, torch::kLong);
  b.attention_mask.index_put_({1, torch::indexing::Slice(4, L)}, 0);
  b.info.resize(B);
  return b;
}

}  // namespace wico::test
