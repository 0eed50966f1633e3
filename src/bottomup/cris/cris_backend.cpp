#include "wico/bottomup/cris/cris_backend.h"

#include <ATen/ATen.h>

#include <string>
#include <utility>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/core/schema.h"
#include "wico/data/loader.h"
#include "wico/nn/losses.h"

namespace wico::bottomup {

CrisBackendOptions CrisBackendOptions::from_config(const Config& c) {
  CrisBackendOptions o;
  const std::string& clip = c.text("cris.clip");
  if (clip == "rn50") {
    o.net = CrisOptions::r50();
  } else if (clip == "rn101") {
    o.net = CrisOptions::r101();
  } else {
    throw ConfigError("cris.clip: expected rn50 or rn101, got '" + clip + "'");
  }
  auto& v = o.net.visual;
  auto& t = o.net.text;
  if (c.integer("cris.width") > 0) v.width = c.integer("cris.width");
  if (!c.integers("cris.layers").empty()) v.layers = c.integers("cris.layers");
  if (c.integer("cris.word_dim") > 0) v.output_dim = c.integer("cris.word_dim");
  v.heads = v.width * 32 / 64;  // CLIP's rule
  t.embed_dim = v.output_dim;
  if (c.integer("cris.text_width") > 0) t.width = c.integer("cris.text_width");
  if (c.integer("cris.text_layers") > 0) t.layers = c.integer("cris.text_layers");
  if (c.integer("cris.text_heads") > 0) t.heads = c.integer("cris.text_heads");
  t.vocab_size = c.integer("cris.vocab_size");
  t.context_length = c.integer("cris.context_length");
  o.net.fpn_out = c.integers("cris.fpn_out");
  o.net.decoder_layers = c.integer("cris.decoder_layers");
  o.net.decoder_heads = c.integer("cris.decoder_heads");
  o.net.decoder_ffn = c.integer("cris.decoder_ffn");
  o.net.dropout = c.real("cris.dropout");
  o.clip_pretrained = c.text("cris.clip_pretrained");
  o.loss = c.text("cris.loss");
  o.net.validate();
  if (c.text("text.tokenizer") != "clip") {
    throw ConfigError("bottom_up.backend cris reads CLIP BPE ids: text.tokenizer must be clip (got " +
                      c.text("text.tokenizer") + ")");
  }
  const std::int64_t words = c.integer("text.max_length");
  if (words > t.context_length) {
    throw ConfigError("text.max_length " + std::to_string(words) +
                      " exceeds CLIP's position table (cris.context_length " +
                      std::to_string(t.context_length) + ")");
  }
  return o;
}

void add_cris_keys(Schema& schema) {
  schema.text("cris.clip", "rn50", "CLIP ResNet: rn50 (word_dim 1024) or rn101 (word_dim 512)",
              {"rn50", "rn101"})
      .integer("cris.width", 0, "CLIP ResNet stem width other than 64 (0: the preset's)", 0)
      .integers("cris.layers", {}, "Bottlenecks per stage other than the preset's", 1)
      .integer("cris.word_dim", 0,
               "C5 and sentence width other than the preset's (0: 1024 rn50, 512 rn101)", 0)
      .integer("cris.text_width", 0, "text transformer width other than 512 (0: 512)", 0)
      .integer("cris.text_layers", 0, "text transformer layers other than 12 (0: 12)", 0)
      .integer("cris.text_heads", 0, "text transformer heads other than 8 (0: 8)", 0)
      .integer("cris.vocab_size", 49408, "CLIP's BPE vocabulary (49408)", 2)
      .integer("cris.context_length", 77, "rows of CLIP's text position table (77)", 1)
      .integers("cris.fpn_out", {256, 512, 1024},
                "neck widths; fpn_out[1] is the decoder width and must equal the text width", 1)
      .integer("cris.decoder_layers", 3, "vision-language decoder layers", 1)
      .integer("cris.decoder_heads", 8, "decoder attention heads", 1)
      .integer("cris.decoder_ffn", 2048, "decoder feed-forward width", 1)
      .real("cris.dropout", 0.1, "decoder dropout (attention weights, residuals, FFN)", 0.0, 1.0)
      .text("cris.loss", "bce",
            "bce: the original's binary cross-entropy at S/4; bce_dice: plus soft Dice (for "
            "training from scratch, where BCE alone settles on background everywhere)",
            {"bce", "bce_dice"})
      .text("cris.clip_pretrained", "",
            "OpenAI's CLIP archive to start from (RN50.pt / RN101.pt, TorchScript); '' = random");
}

CrisBackend::CrisBackend(CrisBackendOptions options) : options_(std::move(options)) {
  net_ = CrisNet(options_.net);
  // The network's parts directly under the backend (backend.backbone.*, backend.neck.*, ...):
  // CRIS's own names one prefix down.
  for (const auto& item : net_->named_children()) register_module(item.key(), item.value());
}

std::vector<io::ImportReport> CrisBackend::load_pretrained() {
  std::vector<io::ImportReport> reports;
  if (!options_.clip_pretrained.empty()) {
    reports.push_back(io::import_component(
        *net_->backbone, "cris.clip_pretrained", options_.clip_pretrained, "openai_clip",
        "OpenAI's CLIP archive, as clip/clip.py's _MODELS lists it: "
        "https://openaipublic.azureedge.net/clip/models/"
        "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt or "
        "https://openaipublic.azureedge.net/clip/models/"
        "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt"));
  }
  return reports;
}

BottomUpOutput CrisBackend::forward(const data::Batch& batch) {
  const CrisOutput out = net_->forward(batch.images, batch.token_ids);
  kernel_ = out.kernel;
  return {out.pixel_embeddings, out.logits};
}

at::Tensor CrisBackend::decode(const at::Tensor& pixel_embeddings) {
  WICO_CHECK(kernel_.defined(), "CRIS decode: no sentence kernels yet (decode follows forward)");
  WICO_CHECK(kernel_.size(0) == pixel_embeddings.size(0), "CRIS decode: ", kernel_.size(0),
             " sentence kernels from the last forward for ", pixel_embeddings.size(0),
             " embeddings");
  return net_->apply_kernel(pixel_embeddings, kernel_);
}

at::Tensor CrisBackend::probabilities(const at::Tensor& logits, std::int64_t size) const {
  const at::Tensor p = logits.sigmoid();
  if (p.size(-2) == size && p.size(-1) == size) return p;
  return at::upsample_bicubic2d(p, {size, size}, /*align_corners=*/true).clamp_(0.0, 1.0);
}

at::Tensor CrisBackend::loss(const at::Tensor& logits, const at::Tensor& targets) {
  // F.interpolate(mask, pred.shape[-2:], mode='nearest'), then BCE with logits (mean).
  const at::Tensor target =
      targets.sizes().slice(2) == logits.sizes().slice(2)
          ? targets
          : at::upsample_nearest2d(targets, {logits.size(-2), logits.size(-1)});
  const at::Tensor t = target.to(logits.scalar_type());
  const at::Tensor bce = at::binary_cross_entropy_with_logits(logits, t);
  if (options_.loss == "bce") return bce;
  return bce + nn::soft_dice_loss(logits.sigmoid(), t);
}

}  // namespace wico::bottomup
