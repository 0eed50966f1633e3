// The bottom-up backends `bottom_up.backend` can name: one line per backend (its name, builder,
// description and configuration keys). Adding a backend touches its own folder and this list.
#include "wico/bottomup/backend.h"
#include "wico/bottomup/cris/cris_backend.h"
#include "wico/bottomup/lavt/lavt.h"
#include "wico/bottomup/vlt/vlt_backend.h"
#include "wico/core/config.h"
#include "wico/core/schema.h"

namespace wico::bottomup {

namespace {

struct BuiltinBackend {
  const char* name;
  BackendBuilder build;
  const char* doc;
  void (*add_keys)(Schema&);
};

const std::vector<BuiltinBackend>& builtin_backends() {
  static const std::vector<BuiltinBackend> backends = {
      {"lavt", [](const Config& c) { return std::make_shared<LavtBackend>(LavtOptions::from_config(c)); },
       "LAVT: Swin + PWAM + BERT, progressive conv decoder (yz93/LAVT-RIS)", add_lavt_keys},
      {"cris", [](const Config& c) { return std::make_shared<CrisBackend>(CrisBackendOptions::from_config(c)); },
       "CRIS: CLIP ResNet + CLIP text, sentence-gated neck, vision-language decoder, "
       "text-to-pixel dynamic kernel (DerrickWang005/CRIS.pytorch)", add_cris_keys},
      {"vlt", [](const Config& c) { return std::make_shared<VltBackend>(VltBackendOptions::from_config(c)); },
       "VLT: Darknet-53 + GloVe Bi-GRU, query generation, transformer, query balance "
       "(henghuiding/Vision-Language-Transformer)", add_vlt_keys},
  };
  return backends;
}

}  // namespace

void register_builtin_backends(Registry<BackendBuilder>& registry) {
  for (const auto& b : builtin_backends()) registry.add(b.name, b.build, b.doc);
}

void add_backend_keys(Schema& schema) {
  for (const auto& b : builtin_backends()) b.add_keys(schema);
}

}  // namespace wico::bottomup
