#include "wico/nn/ris_model.h"

#include <mutex>

#include "wico/core/config.h"
#include "wico/core/schema.h"

namespace wico::nn {

void register_builtin_models(Registry<RisModelBuilder>& registry);

Registry<RisModelBuilder>& model_registry() {
  static Registry<RisModelBuilder> registry("model", "model.kind");
  static std::once_flag once;
  std::call_once(once, [] { register_builtin_models(registry); });
  return registry;
}

std::shared_ptr<RisModel> build_model(const Config& config) {
  const std::string& kind = config.text("model.kind");
  if (kind.empty()) {
    throw ConfigError("model.kind is not set; one of: " + [] {
      std::string names;
      for (const auto& n : model_registry().names()) names += (names.empty() ? "" : ", ") + n;
      return names.empty() ? std::string("(none registered)") : names;
    }());
  }
  return model_registry().get(kind)(config);
}

}  // namespace wico::nn
