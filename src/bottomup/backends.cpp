// The bottom-up backends `bottom_up.backend` can name: one line per backend.
#include "wico/bottomup/backend.h"
#include "wico/bottomup/lavt/lavt.h"
#include "wico/core/config.h"

namespace wico::bottomup {

void register_builtin_backends(Registry<BackendBuilder>& registry) {
  registry.add("lavt", [](const Config& c) {
    return std::make_shared<LavtBackend>(LavtOptions::from_config(c));
  }, "LAVT: Swin + PWAM + BERT, progressive conv decoder (yz93/LAVT-RIS)");
}

}  // namespace wico::bottomup
