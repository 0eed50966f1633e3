// VLT behind the bottom-up seam (bottom_up.backend: vlt; docs/backends.md). E_p is the mask
// head's last CBL output [B, hidden, S/2, S/2] (256 channels at 208 x 208 for 416 inputs);
// decode(E_p) is the original's final 3x3 convolution to one logit. The loss is the original's:
// sigmoid binary cross-entropy summed over the pixels of the batch and divided by the batch size,
// at S/2 against the targets resized there (nearest, as its cv2.INTER_NEAREST 416 -> 208).
// probabilities() is its evaluator's: the sigmoid at S/2, then a linear resize to S (the map back
// to the image is the evaluator's); threshold 0.35.
//
// Words: vlt.embedding glove reads the batch's glove-tokenizer ids (1 + the word's row in the
// text.vocab vectors file, 0 for a pad or an unknown word) and looks them up in the fixed vectors,
// shared with the tokenizer and never trained (not in the state dict: the file is an input, as
// spaCy's table is the original's); trainable learns an Embedding over a counted vocabulary
// (text.tokenizer word) for users without GloVe.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/embedding.h>

#include <memory>
#include <string>
#include <vector>

#include "wico/bottomup/backend.h"
#include "wico/bottomup/vlt/vlt.h"
#include "wico/io/pretrained.h"

namespace wico {
class Config;
class Schema;
}  // namespace wico
namespace wico::data {
class GloveVectors;
}

namespace wico::bottomup {

struct VltBackendOptions {
  vlt::VltOptions net;
  std::string embedding = "glove";  // glove | trainable
  std::string vectors_path;         // glove: text.vocab
  std::int64_t vocab_size = 0;      // trainable: the word tokenizer's vocabulary
  // MCN's Keras YOLOv3 (yolov3_480000.h5) for the Darknet, by the darknet_keras map ('' =
  // Keras's initialisers). A whole VLT model (best_map.h5) is train.init's vlt_keras:PATH.
  std::string darknet_pretrained;
  // bce: the original's; bce_dice: plus soft Dice x the pixels of an image (training from scratch)
  std::string loss = "bce";
  static VltBackendOptions from_config(const Config& config);
};

void add_vlt_keys(Schema& schema);

class VltBackend : public BottomUpBackend, public io::PretrainedWeights {
 public:
  explicit VltBackend(VltBackendOptions options);
  std::vector<io::ImportReport> load_pretrained() override;
  BottomUpOutput forward(const data::Batch& batch) override;
  at::Tensor decode(const at::Tensor& pixel_embeddings) override;
  at::Tensor loss(const at::Tensor& logits, const at::Tensor& targets) override;
  std::int64_t embedding_dim() const override { return options_.net.hidden; }
  at::Tensor probabilities(const at::Tensor& logits, std::int64_t size) const override;
  double threshold() const override { return 0.35; }

  // Token ids [B, T] -> word vectors [B, T, word_dim].
  at::Tensor word_vectors(const at::Tensor& token_ids);
  vlt::VltNet& net() { return net_; }
  const VltBackendOptions& options() const { return options_; }

 private:
  VltBackendOptions options_;
  vlt::VltNet net_{nullptr};
  torch::nn::Embedding embedding_{nullptr};          // trainable
  std::shared_ptr<const data::GloveVectors> glove_;  // glove
};

}  // namespace wico::bottomup
