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
  const WeightFile file = read_weights(path);
  ImportReport report = import_weights(target, file, name_map(map), ImportMode::kPartial);
  spdlog::info("{}: {}", key, report.table());
  return report;
}

bool import_init_entry(torch::nn::Module& model, const std::string& entry) {
  std::string part, spec;
  if (entry.rfind("map=", 0) == 0) {
    spec = entry.substr(4);
  } else if (const auto at = entry.find("=map="); at != std::string::npos) {
    part = entry.substr(0, at);
    spec = entry.substr(at + 5);
  } else {
    return false;
  }
  const auto colon = spec.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size()) {
    throw ConfigError(detail::concat("train.init '", entry,
                                     "': expected map=NAME:path or part=map=NAME:path"));
  }
  const std::string map = spec.substr(0, colon);
  const std::string path = spec.substr(colon + 1);
  torch::nn::Module* target = &model;
  if (!part.empty()) {
    target = nullptr;
    for (const auto& item : model.named_modules()) {
      if (item.key() == part) target = item.value().get();
    }
    if (target == nullptr) {
      throw ConfigError(detail::concat("train.init '", entry, "': the model has no part named '",
                                       part, "'"));
    }
  }
  if (!std::filesystem::is_regular_file(path)) {
    throw ConfigError(detail::concat("train.init '", entry, "': '", path, "' does not exist"));
  }
  const WeightFile file = read_weights(path);
  const ImportReport report = import_weights(*target, file, name_map(map),
                                             part.empty() ? ImportMode::kStrict : ImportMode::kPartial);
  spdlog::info("train.init: {}", report.table());
  return true;
}

}  // namespace wico::io
