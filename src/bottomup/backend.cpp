#include "wico/bottomup/backend.h"

#include <ATen/ATen.h>

#include <chrono>
#include <mutex>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/core/schema.h"
#include "wico/data/loader.h"

namespace wico::bottomup {

void register_builtin_backends(Registry<BackendBuilder>& registry);

Registry<BackendBuilder>& backend_registry() {
  static Registry<BackendBuilder> registry("bottom-up backend", "bottom_up.backend");
  static std::once_flag once;
  std::call_once(once, [] { register_builtin_backends(registry); });
  return registry;
}

std::shared_ptr<BottomUpBackend> build_backend(const Config& config) {
  return backend_registry().get(config.text("bottom_up.backend"))(config);
}

at::Tensor BottomUpBackend::probabilities(const at::Tensor& logits, std::int64_t size) const {
  if (logits.size(-2) == size && logits.size(-1) == size) return logits.sigmoid();
  return at::upsample_bilinear2d(logits, {size, size}, align_corners()).sigmoid();
}

BottomUpModel::BottomUpModel(const Config& config) {
  backend_ = register_module("backend", build_backend(config));
}

nn::RisOutput BottomUpModel::forward(const data::Batch& batch, bool with_losses) {
  const auto start = std::chrono::steady_clock::now();
  const BottomUpOutput out = backend_->forward(batch);
  nn::RisOutput result;
  result.probabilities["bottom_up"] = backend_->probabilities(out.logits, batch.images.size(-1));
  if (with_losses) result.losses["seg"] = backend_->loss(out.logits, batch.targets);
  result.seconds["bottom_up"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

double BottomUpModel::threshold(const std::string& branch) const {
  WICO_CHECK(branch == "bottom_up", "a bottom-up model has no branch '", branch, "'");
  return backend_->threshold();
}

}  // namespace wico::bottomup

namespace wico {

namespace bottomup {
void add_backend_keys(Schema& schema);
}

// bottom_up.backend and every built-in backend's own keys.
void add_bottom_up_keys(Schema& schema) {
  schema.text("bottom_up.backend", "lavt", "the bottom-up backend (a registered name)");
  bottomup::add_backend_keys(schema);
}

}  // namespace wico
