// The models `model.kind` can name: one line per model.
#include "wico/bottomup/backend.h"
#include "wico/core/config.h"
#include "wico/nn/ris_model.h"

namespace wico::nn {

void register_builtin_models(Registry<RisModelBuilder>& registry) {
  registry.add("bottom_up", [](const Config& c) {
    return std::make_shared<bottomup::BottomUpModel>(c);
  }, "a bottom-up backend alone (bottom_up.backend)");
}

}  // namespace wico::nn
