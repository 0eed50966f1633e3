// The models `model.kind` can name: one line per model.
#include "wico/nn/ris_model.h"

namespace wico::nn {

void register_builtin_models(Registry<RisModelBuilder>& registry) {
  (void)registry;  // the bottom-up, top-down and WiCo models register here as they land
}

}  // namespace wico::nn
