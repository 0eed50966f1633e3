// `wico config`: prints the fully resolved config, or the schema of every key.
#include <iostream>

#include "../commands.h"

namespace wico::tool {

Action add_config_command(CLI::App& app) {
  auto* sub = app.add_subcommand("config", "print the fully resolved config, or the key schema");
  auto options = std::make_shared<ConfigOptions>();
  auto schema = std::make_shared<bool>(false);
  auto docs = std::make_shared<bool>(false);
  auto origins = std::make_shared<bool>(false);
  options->add_to(*sub, false);
  sub->add_flag("--schema", *schema, "list every key: type, default, allowed values, doc");
  sub->add_flag("--docs", *docs, "write each key's doc as a comment above it");
  sub->add_flag("--origins", *origins, "list where each value came from (file:line, --set, default)");
  return [=]() {
    if (*schema) {
      Schema::builtin().print(std::cout);
      return 0;
    }
    const Config config = options->load();
    if (*origins) {
      for (const auto& spec : config.schema().keys()) {
        std::cout << spec.path << " = " << format_value(config.value(spec.path)) << "    # "
                  << config.origin(spec.path).describe() << "\n";
      }
      return 0;
    }
    std::cout << config.to_yaml(*docs);
    return 0;
  };
}

}  // namespace wico::tool
