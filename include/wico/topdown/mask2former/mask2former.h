// The Mask2Former instance extractor (facebookresearch/Mask2Former, the COCO instance model):
// a ResNet trunk, the multi-scale deformable-attention pixel decoder, the masked-attention
// transformer decoder and the set criterion, behind the InstanceExtractor seam
// (`top_down.extractor: mask2former`). The matcher pools the trunk's res4 and res5 outputs
// (ExtractorOutput::c4, c5), as MAttNet pooled its Mask R-CNN's C4 and ran res5 on the crops.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>

#include "wico/backbones/resnet.h"
#include "wico/io/pretrained.h"
#include "wico/topdown/instances.h"
#include "wico/topdown/mask2former/criterion.h"
#include "wico/topdown/mask2former/inference.h"
#include "wico/topdown/mask2former/pixel_decoder.h"
#include "wico/topdown/mask2former/transformer_decoder.h"

namespace wico {
class Config;
class Schema;
}  // namespace wico

namespace wico::topdown {

struct Mask2FormerOptions {
  backbones::ResNetOptions backbone = backbones::ResNetOptions::resnet50();
  PixelDecoderOptions pixel_decoder;
  TransformerDecoderOptions decoder;
  CriterionOptions criterion;
  // Published weights ('' = none): the trunk alone (torchvision .pth or detectron2 .pkl), or the
  // whole extractor from the Mask2Former model zoo (model_final_*.pkl).
  std::string backbone_pretrained, pretrained;
  // How detect() turns predictions into instances (mask2former.instance_inference).
  InstanceInference instance_inference = InstanceInference::kOriginal;

  // mask2former.* and top_down.num_classes.
  static Mask2FormerOptions from_config(const Config& config);
  void validate() const;
};

class Mask2FormerExtractor : public InstanceExtractor, public io::PretrainedWeights {
 public:
  explicit Mask2FormerExtractor(Mask2FormerOptions options);
  std::vector<io::ImportReport> load_pretrained() override;
  ExtractorOutput forward(const at::Tensor& images) override;
  ExtractorOutput predict(const at::Tensor& images) override;
  ExtractorOutput trunk_features(const at::Tensor& images) override;
  std::map<std::string, at::Tensor> loss(const ExtractorOutput& output,
                                         const InstanceCandidates& targets) override;
  // The images as the trunk takes them: in inference on the CPU channels-last, which oneDNN's
  // convolutions, the pixel decoder's GroupNorms, upsampling and 1x1 products all run faster in
  // (the layout carries through to the transformer decoder; docs/performance.md); else as given.
  at::Tensor trunk_input(const at::Tensor& images) const;
  InstanceCandidates detect(const ExtractorOutput& output, std::int64_t top_k,
                            std::int64_t height, std::int64_t width) override;
  const Mask2FormerOptions& options() const { return options_; }

  backbones::ResNet backbone{nullptr};
  MSDeformAttnPixelDecoder pixel_decoder{nullptr};
  MaskedTransformerDecoder predictor{nullptr};  // the original's sem_seg_head.predictor

 private:
  ExtractorOutput run(const at::Tensor& images, bool auxiliary);

  Mask2FormerOptions options_;
  SetCriterion criterion_;
};

void add_mask2former_keys(Schema& schema);

}  // namespace wico::topdown
