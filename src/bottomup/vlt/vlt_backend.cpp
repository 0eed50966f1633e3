#include "wico/bottomup/vlt/vlt_backend.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <string>
#include <utility>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/core/schema.h"
#include "wico/data/glove.h"
#include "wico/data/loader.h"
#include "wico/data/tokenizer.h"
#include "wico/data/tokenizer_config.h"
#include "wico/io/darknet_weights.h"
#include "wico/io/import.h"
#include "wico/io/name_map.h"
#include "wico/nn/losses.h"

namespace wico::bottomup {

VltBackendOptions VltBackendOptions::from_config(const Config& c) {
  VltBackendOptions o;
  auto& n = o.net;
  n.darknet.width = c.integer("vlt.darknet_width");
  n.darknet.blocks = c.integers("vlt.darknet_blocks");
  n.darknet.head_convs = c.integer("vlt.head_convs");
  n.darknet.frozen_cbls = c.integer("vlt.frozen_cbls");
  n.input_size = c.integer("data.input_size");
  n.rnn_units = c.integer("vlt.rnn_units");
  n.hidden = c.integer("vlt.hidden");
  n.tf_width = c.integer("vlt.tf_width");
  n.queries = c.integer("vlt.queries");
  n.heads = c.integer("vlt.heads");
  n.encoder_layers = c.integer("vlt.encoder_layers");
  n.decoder_layers = c.integer("vlt.decoder_layers");
  n.ffn = c.integer("vlt.ffn");
  n.dropout = c.real("vlt.dropout");
  n.rnn_dropout = c.real("vlt.rnn_dropout");
  n.output_stride = c.integer("vlt.output_stride");
  o.embedding = c.text("vlt.embedding");
  o.darknet_pretrained = c.text("vlt.darknet_pretrained");
  o.loss = c.text("vlt.loss");
  const std::string& tokenizer = c.text("text.tokenizer");
  if (o.embedding == "glove") {
    if (tokenizer != "glove") {
      throw ConfigError("vlt.embedding glove reads the glove tokenizer's ids: text.tokenizer must "
                        "be glove (got " + tokenizer + "), or set vlt.embedding trainable");
    }
    o.vectors_path = data::vocab_path(c);  // text.vocab, else <data.root>/word_vectors.txt
    n.word_dim = 0;  // the file's, once read
  } else {
    if (tokenizer == "glove") {
      throw ConfigError("vlt.embedding trainable learns an embedding over word ids; the glove "
                        "tokenizer's ids index a fixed file (set text.tokenizer word)");
    }
    n.word_dim = c.integer("vlt.word_dim");
    o.vocab_size = c.integer("vlt.vocab_size");
    if (o.vocab_size == 0) {
      try {
        o.vocab_size = data::make_tokenizer_from_config(c)->vocab_size();
      } catch (const ConfigError& e) {
        throw ConfigError(std::string("vlt.vocab_size is 0 (the tokenizer's vocabulary), but ") +
                          e.what() + ": set vlt.vocab_size (or text.vocab)");
      }
    }
  }
  return o;
}

void add_vlt_keys(Schema& schema) {
  schema.integer("vlt.darknet_width", 32, "Darknet-53 stem width (stage s: width * 2^s; 32)", 1)
      .integers("vlt.darknet_blocks", {1, 2, 8, 8, 4}, "Darknet residual blocks per stage", 0)
      .integer("vlt.head_convs", 6, "YOLOv3 head CBLs after Darknet-53 (6)", 0)
      .integer("vlt.frozen_cbls", 56,
               "CBLs frozen from the first (56: Darknet-53 and head CBLs 1-4, the original's "
               "free_body 1; frozen batch norms keep their statistics but normalise with the "
               "batch's in training, as Keras 2.3.1)", 0)
      .text("vlt.embedding", "glove",
            "glove: fixed vectors from text.vocab (text.tokenizer glove), as the original's "
            "spaCy GloVe; trainable: an embedding learnt over text.tokenizer word's vocabulary",
            {"glove", "trainable"})
      .integer("vlt.word_dim", 300, "trainable embedding width (glove: the file's)", 1)
      .integer("vlt.vocab_size", 0, "trainable embedding rows (0: the tokenizer's vocabulary)", 0)
      .integer("vlt.rnn_units", 1024, "Bi-GRU units (directions summed)", 1)
      .integer("vlt.hidden", 256, "transformer width d_model (hidden_dim)", 1)
      .integer("vlt.tf_width", 256, "the neck CBL before the projection to vlt.hidden", 1)
      .integer("vlt.queries", 16, "queries Nq (num_query)", 1)
      .integer("vlt.heads", 8, "attention heads", 1)
      .integer("vlt.encoder_layers", 2, "transformer encoder layers", 0)
      .integer("vlt.decoder_layers", 2, "transformer decoder layers", 0)
      .integer("vlt.ffn", 256, "transformer feed-forward width", 1)
      .real("vlt.dropout", 0.1, "transformer sublayer dropout", 0.0, 1.0)
      .real("vlt.rnn_dropout", 0.1, "GRU input dropout and word-attention dropout", 0.0, 1.0)
      .integer("vlt.output_stride", 2, "logit stride (seg_out_stride: 2, 4, 8 or 16)", 2)
      .text("vlt.loss", "bce",
            "bce: the original's BCE summed over the pixels per image; bce_dice: plus soft Dice "
            "at the same scale (for training from scratch)",
            {"bce", "bce_dice"})
      .text("vlt.darknet_pretrained", "",
            "weights for the Darknet: MCN's Keras YOLOv3 (yolov3_480000.h5, the original's) or "
            "Darknet's own .weights (yolov3.weights, darknet53.conv.74); '' = random");
}

VltBackend::VltBackend(VltBackendOptions options) : options_(std::move(options)) {
  if (options_.embedding == "glove") {
    glove_ = data::GloveVectors::shared(options_.vectors_path);
    options_.net.word_dim = glove_->dim();
  } else {
    WICO_CHECK(options_.vocab_size > 0, "VLT's trainable embedding needs a vocabulary size");
    embedding_ = register_module("embedding",
                                 torch::nn::Embedding(options_.vocab_size, options_.net.word_dim));
  }
  net_ = vlt::VltNet(options_.net);
  // The network's parts directly under the backend (backend.backbone.*, backend.text.*, ...).
  for (const auto& item : net_->named_children()) register_module(item.key(), item.value());
}

std::vector<io::ImportReport> VltBackend::load_pretrained() {
  std::vector<io::ImportReport> reports;
  const std::string& path = options_.darknet_pretrained;
  if (!path.empty() && io::is_darknet_weights_path(path)) {
    // Darknet's own file: read in our Darknet's layout, section i into cbl.i.
    if (!std::filesystem::is_regular_file(path)) {
      throw ConfigError("vlt.darknet_pretrained: '" + path + "' does not exist");
    }
    const io::WeightFile file =
        io::read_darknet_weights(path, backbones::darknet_sections(options_.net.darknet));
    io::ImportReport report = io::import_weights(*net_->backbone, file, io::name_map("darknet"),
                                                 io::ImportMode::kStrict);
    spdlog::info("vlt.darknet_pretrained: {}", report.table());
    for (const auto& note : file.notes) spdlog::info("vlt.darknet_pretrained: {}", note);
    reports.push_back(std::move(report));
  } else if (!path.empty()) {
    reports.push_back(io::import_component(
        *net_->backbone, "vlt.darknet_pretrained", options_.darknet_pretrained, "darknet_keras",
        "MCN's yolov3_480000.h5 (luogen1996/MCN README: the Darknet-53 YOLOv3 trained on COCO "
        "without the RefCOCO/RefCOCO+/RefCOCOg val and test images)"));
  }
  return reports;
}

at::Tensor VltBackend::word_vectors(const at::Tensor& token_ids) {
  WICO_CHECK(token_ids.dim() == 2, "VLT expects [B, T] token ids, got ", token_ids.sizes());
  if (embedding_) return embedding_->forward(token_ids);
  const at::Tensor table = glove_->table();
  const std::int64_t rows = table.size(0);
  const at::Tensor ids = token_ids.to(at::kCPU);
  if (ids.numel() > 0) {
    const std::int64_t lo = ids.min().item<std::int64_t>(), hi = ids.max().item<std::int64_t>();
    if (lo < 0 || hi > rows) {
      throw ConfigError("VLT: token ids in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                        "] for a vectors file of " + std::to_string(rows) +
                        " words: the batch was not tokenised with this text.vocab");
    }
  }
  // Row id - 1; 0 (pad, unknown) gives the zero vector.
  const at::Tensor known = (ids > 0).unsqueeze(-1).to(at::kFloat);
  const at::Tensor vectors =
      table.index_select(0, (ids - 1).clamp_min(0).flatten()).view({ids.size(0), ids.size(1), -1});
  return (vectors * known).to(token_ids.device());
}

BottomUpOutput VltBackend::forward(const data::Batch& batch) {
  const vlt::VltOutput out = net_->forward(batch.images, word_vectors(batch.token_ids));
  return {out.pixel_embeddings, out.logits};
}

at::Tensor VltBackend::decode(const at::Tensor& pixel_embeddings) {
  return net_->decode(pixel_embeddings);
}

at::Tensor VltBackend::probabilities(const at::Tensor& logits, std::int64_t size) const {
  // callbacks/eval.py: the sigmoid at S/2, then cv2.resize to S with INTER_LINEAR
  // (half-pixel centres: align_corners false).
  const at::Tensor p = logits.sigmoid();
  if (p.size(-2) == size && p.size(-1) == size) return p;
  return at::upsample_bilinear2d(p, {size, size}, /*align_corners=*/false);
}

at::Tensor VltBackend::loss(const at::Tensor& logits, const at::Tensor& targets) {
  // The target at S taken to S/2 by nearest neighbour (cv2.INTER_NEAREST keeps the even pixels,
  // as upsample_nearest2d does), then K.sum(binary_crossentropy(from_logits)) / batch.
  const at::Tensor target =
      targets.sizes().slice(2) == logits.sizes().slice(2)
          ? targets
          : at::upsample_nearest2d(targets, {logits.size(-2), logits.size(-1)});
  const at::Tensor t = target.to(logits.scalar_type());
  const at::Tensor bce =
      at::binary_cross_entropy_with_logits(logits, t, {}, {}, at::Reduction::Sum) /
      static_cast<double>(logits.size(0));
  if (options_.loss == "bce") return bce;
  // bce_dice: soft Dice at the same per-image scale (times the pixels of an image).
  return bce + nn::soft_dice_loss(logits.sigmoid(), t) *
                   static_cast<double>(logits.size(-2) * logits.size(-1));
}

}  // namespace wico::bottomup
