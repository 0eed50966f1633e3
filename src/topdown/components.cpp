// The extractors and matchers `top_down.extractor` and `top_down.matcher` can name: one line per
// component (its name, builder, description and configuration keys). Adding one touches its own
// folder and this list.
#include <mutex>

#include "wico/core/config.h"
#include "wico/core/schema.h"
#include "wico/topdown/instances.h"
#include "wico/topdown/mask2former/mask2former.h"
#include "wico/topdown/mattnet/mattnet.h"

namespace wico::topdown {

namespace {

template <typename Builder>
struct Builtin {
  const char* name;
  Builder build;
  const char* doc;
  void (*add_keys)(Schema&);
};

const std::vector<Builtin<ExtractorBuilder>>& builtin_extractors() {
  static const std::vector<Builtin<ExtractorBuilder>> extractors = {
      {"mask2former",
       [](const Config& c) {
         return std::make_shared<Mask2FormerExtractor>(Mask2FormerOptions::from_config(c));
       },
       "Mask2Former: ResNet + MSDeformAttn pixel decoder + masked-attention decoder "
       "(facebookresearch/Mask2Former)",
       add_mask2former_keys},
  };
  return extractors;
}

const std::vector<Builtin<MatcherBuilder>>& builtin_matchers() {
  static const std::vector<Builtin<MatcherBuilder>> matchers = {
      {"mattnet",
       [](const Config& c) {
         return std::make_shared<MattnetMatcher>(MattnetOptions::from_config(c));
       },
       "MAttNet: modular subject/location/relationship matching (lichengunc/MAttNet)",
       add_mattnet_keys},
  };
  return matchers;
}

}  // namespace

Registry<ExtractorBuilder>& extractor_registry() {
  static Registry<ExtractorBuilder> registry("instance extractor", "top_down.extractor");
  static std::once_flag once;
  std::call_once(once, [] {
    for (const auto& e : builtin_extractors()) registry.add(e.name, e.build, e.doc);
  });
  return registry;
}

Registry<MatcherBuilder>& matcher_registry() {
  static Registry<MatcherBuilder> registry("instance matcher", "top_down.matcher");
  static std::once_flag once;
  std::call_once(once, [] {
    for (const auto& m : builtin_matchers()) registry.add(m.name, m.build, m.doc);
  });
  return registry;
}

std::shared_ptr<InstanceExtractor> build_extractor(const Config& config) {
  return extractor_registry().get(config.text("top_down.extractor"))(config);
}

std::shared_ptr<InstanceMatcher> build_matcher(const Config& config) {
  return matcher_registry().get(config.text("top_down.matcher"))(config);
}

}  // namespace wico::topdown

namespace wico {

// top_down.* and every built-in extractor's and matcher's own keys.
void add_top_down_keys(Schema& schema) {
  schema.text("top_down.extractor", "mask2former", "the instance extractor (a registered name)")
      .text("top_down.matcher", "mattnet", "the instance matcher (a registered name)")
      .integer("top_down.num_classes", 80,
               "instance classes: the categories of instances.json, indexed contiguously in "
               "the order of their ids (COCO: 80, the synthetic set: 6)", 1)
      .integer("top_down.top_k", 20, "detections kept per image as the matcher's candidates", 1)
      .text("top_down.train_candidates", "ground_truth",
            "the matcher's candidates in training: ground_truth (MAttNet) or predicted",
            {"ground_truth", "predicted"})
      .text("top_down.eval_candidates", "predicted",
            "the matcher's candidates at evaluation: predicted (the extractor's detections) or "
            "ground_truth (an oracle extractor)",
            {"predicted", "ground_truth"})
      .text("top_down.choose", "matcher",
            "which candidate the branch answers with: matcher (argmax S), random (a uniformly "
            "random candidate: the chance baseline) or oracle (the one overlapping the target "
            "most: the extractor's own mask quality); random and oracle are for evaluation",
            {"matcher", "random", "oracle"})
      .text("top_down.train", "joint",
            "which losses a training step computes: joint (extractor and matcher), extractor "
            "(stage 1 of the original two-stage protocol) or matcher (stage 2, on a frozen "
            "extractor: train.freeze it and train.init it from stage 1)",
            {"joint", "extractor", "matcher"})
      .text("top_down.protocol", "joint",
            "how `wico tables` trains the branch: one run of this config (joint), or the "
            "original's two stages, topdown_extractor.yaml then topdown_matcher.yaml of the same "
            "folder (two_stage)",
            {"joint", "two_stage"})
      .flag("top_down.detach_features", true,
               "the matcher's losses do not reach the extractor (MAttNet matches on a fixed "
               "detector's features)");
  for (const auto& e : topdown::builtin_extractors()) e.add_keys(schema);
  for (const auto& m : topdown::builtin_matchers()) m.add_keys(schema);
}

}  // namespace wico
