#include "wico/topdown/mask2former/mask2former.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/core/schema.h"
#include "wico/topdown/mask2former/inference.h"

namespace wico::topdown {

Mask2FormerOptions Mask2FormerOptions::from_config(const Config& c) {
  Mask2FormerOptions o;
  o.backbone = backbones::ResNetOptions::preset(c.text("mask2former.backbone"));
  o.backbone.width = c.integer("mask2former.backbone_width");
  o.backbone.freeze_at = c.integer("mask2former.freeze_at");
  o.backbone.norm = c.text("mask2former.backbone_norm") == "frozen"
                        ? backbones::ResNetNorm::kFrozenBatchNorm
                        : backbones::ResNetNorm::kBatchNorm;
  const std::int64_t dim = c.integer("mask2former.hidden_dim");
  auto& pd = o.pixel_decoder;
  for (std::int64_t i = 0; i < 4; ++i) pd.in_channels.push_back(o.backbone.stage_channels(i));
  pd.conv_dim = dim;
  pd.mask_dim = dim;
  pd.num_layers = c.integer("mask2former.encoder_layers");
  pd.num_heads = c.integer("mask2former.heads");
  pd.num_points = c.integer("mask2former.encoder_points");
  pd.ffn_dim = c.integer("mask2former.encoder_ffn");
  pd.num_groups = c.integer("mask2former.groups");
  auto& d = o.decoder;
  d.in_channels = dim;
  d.hidden_dim = dim;
  d.mask_dim = dim;
  d.num_queries = c.integer("mask2former.queries");
  d.num_heads = c.integer("mask2former.heads");
  d.ffn_dim = c.integer("mask2former.decoder_ffn");
  d.num_layers = c.integer("mask2former.decoder_layers");
  d.num_classes = c.integer("top_down.num_classes");
  o.backbone_pretrained = c.text("mask2former.backbone_pretrained");
  o.pretrained = c.text("mask2former.pretrained");
  o.instance_inference = parse_instance_inference(c.text("mask2former.instance_inference"));
  auto& cr = o.criterion;
  cr.num_classes = d.num_classes;
  cr.class_weight = c.real("mask2former.class_weight");
  cr.mask_weight = c.real("mask2former.mask_weight");
  cr.dice_weight = c.real("mask2former.dice_weight");
  cr.no_object_weight = c.real("mask2former.no_object_weight");
  cr.num_points = c.integer("mask2former.points");
  cr.oversample_ratio = c.real("mask2former.oversample_ratio");
  cr.importance_sample_ratio = c.real("mask2former.importance_sample_ratio");
  o.validate();
  return o;
}

void Mask2FormerOptions::validate() const {
  backbone.validate();
  pixel_decoder.validate();
  decoder.validate();
  if (pixel_decoder.conv_dim % pixel_decoder.num_groups != 0) {
    throw ConfigError("mask2former.hidden_dim (" + std::to_string(pixel_decoder.conv_dim) +
                      ") must be a multiple of mask2former.groups (" +
                      std::to_string(pixel_decoder.num_groups) + ")");
  }
}

Mask2FormerExtractor::Mask2FormerExtractor(Mask2FormerOptions options)
    : options_(std::move(options)), criterion_(options_.criterion) {
  options_.validate();
  backbone = register_module("backbone", backbones::ResNet(options_.backbone));
  pixel_decoder = register_module("pixel_decoder", MSDeformAttnPixelDecoder(options_.pixel_decoder));
  predictor = register_module("predictor", MaskedTransformerDecoder(options_.decoder));
}

namespace {

// What the matcher pools of the trunk's res2..res5: res4 and res5.
ExtractorOutput with_trunk(const std::vector<at::Tensor>& trunk) {
  ExtractorOutput out;
  out.c4 = trunk[2];
  out.c5 = trunk[3];
  return out;
}

}  // namespace

at::Tensor Mask2FormerExtractor::trunk_input(const at::Tensor& images) const {
  const bool channels_last = !is_training() && images.is_cpu() && images.dim() == 4;
  return channels_last ? images.contiguous(at::MemoryFormat::ChannelsLast) : images;
}

ExtractorOutput Mask2FormerExtractor::forward(const at::Tensor& images) {
  return run(images, /*auxiliary=*/true);
}

ExtractorOutput Mask2FormerExtractor::predict(const at::Tensor& images) {
  return run(images, /*auxiliary=*/false);
}

ExtractorOutput Mask2FormerExtractor::run(const at::Tensor& images, bool auxiliary) {
  // Named scopes for the profiler (WICO_BENCH_PROFILE, scripts/profile_summary.py --scope).
  std::vector<at::Tensor> trunk;
  {
    RECORD_FUNCTION("wico::mask2former::trunk", std::vector<c10::IValue>());
    trunk = backbone->forward(trunk_input(images));  // res2..res5
  }
  PixelDecoderOutput pixels;
  {
    RECORD_FUNCTION("wico::mask2former::pixel_decoder", std::vector<c10::IValue>());
    pixels = pixel_decoder->forward(trunk);
  }
  DecoderPredictions p;
  {
    RECORD_FUNCTION("wico::mask2former::transformer_decoder", std::vector<c10::IValue>());
    p = predictor->forward(pixels.multi_scale, pixels.mask_features, auxiliary);
  }
  ExtractorOutput out = with_trunk(trunk);
  out.class_logits = std::move(p.class_logits);
  out.mask_logits = std::move(p.mask_logits);
  out.query_embeddings = std::move(p.query_embeddings);
  out.auxiliary = std::move(p.auxiliary);
  return out;
}

ExtractorOutput Mask2FormerExtractor::trunk_features(const at::Tensor& images) {
  return with_trunk(backbone->forward(images));
}

std::map<std::string, at::Tensor> Mask2FormerExtractor::loss(const ExtractorOutput& output,
                                                             const InstanceCandidates& targets) {
  DecoderPredictions p;
  p.class_logits = output.class_logits;
  p.mask_logits = output.mask_logits;
  p.query_embeddings = output.query_embeddings;
  p.auxiliary = output.auxiliary;
  return criterion_(p, targets);
}

InstanceCandidates Mask2FormerExtractor::detect(const ExtractorOutput& output, std::int64_t top_k,
                                                std::int64_t height, std::int64_t width) {
  RECORD_FUNCTION("wico::mask2former::instance_inference", std::vector<c10::IValue>());
  Detections d = detect_instances(output.class_logits, output.mask_logits, top_k, height, width,
                                  options_.instance_inference);
  d.instances.queries = d.query_index;
  return d.instances;
}

std::vector<io::ImportReport> Mask2FormerExtractor::load_pretrained() {
  std::vector<io::ImportReport> reports;
  if (!options_.backbone_pretrained.empty()) {
    reports.push_back(io::import_component(
        *backbone, "mask2former.backbone_pretrained", options_.backbone_pretrained,
        "auto:detectron2_resnet|torchvision_resnet",
        "the ImageNet ResNet Mask2Former starts from: detectron2's R-50.pkl (torchvision-converted: "
        "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/torchvision/R-50.pkl) or "
        "torchvision's resnet50-0676ba61.pth"));
  }
  if (!options_.pretrained.empty()) {
    reports.push_back(io::import_component(
        *this, "mask2former.pretrained", options_.pretrained, "mask2former",
        "a Mask2Former COCO instance model, e.g. R50 model_final_3c8ec9.pkl from "
        "https://dl.fbaipublicfiles.com/maskformer/mask2former/coco/instance/"
        "maskformer2_R50_bs16_50ep/model_final_3c8ec9.pkl"));
  }
  return reports;
}

void add_mask2former_keys(Schema& schema) {
  schema
      .text("mask2former.backbone_pretrained", "",
            "published ResNet weights for the trunk (detectron2 R-50.pkl or torchvision .pth); "
            "'' = random")
      .text("mask2former.pretrained", "",
            "a published Mask2Former checkpoint (model_final_*.pkl) for the whole extractor; "
            "'' = none")
      .text("mask2former.instance_inference", "original",
            "detections from the predictions: original (Mask2Former's instance_inference: the "
            "top_k (query, class) pairs by class probability, a query may come back under several "
            "classes) or per_query (each query once, under its best class, ranked by class x mask "
            "score)",
            {"original", "per_query"})
      .text("mask2former.backbone", "resnet50", "ResNet trunk: resnet18, resnet34, resnet50, resnet101")
      .integer("mask2former.backbone_width", 64,
               "channels of the trunk's stem (torchvision: 64; smaller for CPU-sized runs)", 1)
      .text("mask2former.backbone_norm", "frozen",
            "frozen (detectron2's FrozenBatchNorm, for pretrained trunks) or batch (trained "
            "from scratch)", {"frozen", "batch"})
      .integer("mask2former.freeze_at", 0, "detectron2's FREEZE_AT: 0 trains the whole trunk", 0, 5)
      .integer("mask2former.hidden_dim", 256, "pixel decoder and transformer decoder width", 1)
      .integer("mask2former.heads", 8, "attention heads (encoder and decoder)", 1)
      .integer("mask2former.encoder_layers", 6, "deformable-attention encoder layers", 0)
      .integer("mask2former.encoder_points", 4, "sampling points per head and level", 1)
      .integer("mask2former.encoder_ffn", 1024, "encoder feed-forward width", 1)
      .integer("mask2former.groups", 32, "GroupNorm groups of the pixel decoder", 1)
      .integer("mask2former.queries", 100, "object queries", 1)
      .integer("mask2former.decoder_layers", 9, "masked-attention decoder layers", 1)
      .integer("mask2former.decoder_ffn", 2048, "decoder feed-forward width", 1)
      .real("mask2former.class_weight", 2.0, "classification loss weight", 0.0)
      .real("mask2former.mask_weight", 5.0, "mask sigmoid cross-entropy weight", 0.0)
      .real("mask2former.dice_weight", 5.0, "mask Dice loss weight", 0.0)
      .real("mask2former.no_object_weight", 0.1, "class weight of 'no object'", 0.0)
      .integer("mask2former.points", 12544, "points sampled per mask for the mask losses", 1)
      .real("mask2former.oversample_ratio", 3.0, "PointRend over-sampling before picking uncertain points", 1.0)
      .real("mask2former.importance_sample_ratio", 0.75, "share of points picked by uncertainty", 0.0, 1.0);
}

}  // namespace wico::topdown
