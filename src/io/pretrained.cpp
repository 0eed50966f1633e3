// Loading components' published weights (see wico/io/pretrained.h).
#include "wico/io/pretrained.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "wico/core/error.h"

namespace wico::io {

std::vector<ImportReport> load_pretrained_weights(torch::nn::Module& model) {
  std::vector<ImportReport> reports;
  for (const auto& module : model.modules(/*include_self=*/true)) {
    if (auto* component = dynamic_cast<PretrainedWeights*>(module.get())) {
      for (auto& report : component->load_pretrained()) reports.push_back(std::move(report));
    }
  }
  return reports;
}

namespace {

ImportReport import_logged(torch::nn::Module& target, const std::string& path,
                           const std::string& map, ImportMode mode, const std::string& label) {
  const WeightFile file = read_weights(path);
  ImportReport report = import_weights(target, file, name_map(map), mode);
  spdlog::info("{}: {}", label, report.table());
  return report;
}

}  // namespace

ImportReport import_component(torch::nn::Module& target, const std::string& key,
                              const std::string& path, const std::string& map_name,
                              const std::string& download) {
  if (!std::filesystem::is_regular_file(path)) {
    throw ConfigError(detail::concat(key, ": '", path, "' does not exist. It is ", download,
                                     " (or set ", key, ": '' to start from random weights)"));
  }
  std::string map = map_name;
  if (map.rfind("auto:", 0) == 0) {
    const auto bar = map.find('|');
    WICO_CHECK(bar != std::string::npos, "auto map '", map, "' needs two names");
    map = detect_weight_format(path) == WeightFormat::kPickle ? map.substr(5, bar - 5)
                                                              : map.substr(bar + 1);
  }
  return import_logged(target, path, map, ImportMode::kPartial, key);
}

ImportReport import_published(torch::nn::Module& target, const std::string& spec,
                              const std::string& context, ImportMode mode) {
  const auto colon = spec.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size()) {
    throw ConfigError(detail::concat(context, ": expected map=NAME:path or part=map=NAME:path"));
  }
  const std::string path = spec.substr(colon + 1);
  if (!std::filesystem::is_regular_file(path)) {
    throw ConfigError(detail::concat(context, ": '", path, "' does not exist"));
  }
  return import_logged(target, path, spec.substr(0, colon), mode, context);
}

}  // namespace wico::io
