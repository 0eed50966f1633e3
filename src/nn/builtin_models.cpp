// The models `model.kind` can name: one line per model.
#include "wico/bottomup/backend.h"
#include "wico/core/config.h"
#include "wico/nn/ris_model.h"
#include "wico/topdown/top_down.h"
#include "wico/wico/wico_model.h"

namespace wico::nn {

void register_builtin_models(Registry<RisModelBuilder>& registry) {
  registry.add("bottom_up", [](const Config& c) {
    return std::make_shared<bottomup::BottomUpModel>(c);
  }, "a bottom-up backend alone (bottom_up.backend)");
  registry.add("top_down", [](const Config& c) {
    return std::make_shared<topdown::TopDownModel>(c);
  }, "the top-down branch alone (top_down.extractor + top_down.matcher)");
  registry.add("wico", [](const Config& c) {
    return std::make_shared<model::WicoModel>(c);
  }, "a WiCo pair: two branches, CFI and an integration strategy (wico.*)");
}

}  // namespace wico::nn
