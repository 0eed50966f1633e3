// The `wico` command-line tool: parses the command line and hands over to the library.
// Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "commands.h"
#include "wico/core/error.h"
#include "wico/core/logging.h"

namespace wico::tool {

void ConfigOptions::add_to(CLI::App& app, bool required) {
  auto* option = app.add_option("-c,--config", file, "YAML config file (see configs/)");
  if (required) option->required();
  app.add_option("--set", overrides,
                 "override a config key, typed by the schema: --set train.lr=1e-5 "
                 "--set model.depths=[2,2,6,2] (repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
}

Config ConfigOptions::load() const {
  return file.empty() ? Config::defaults(overrides) : Config::load(file, overrides);
}

}  // namespace wico::tool

namespace {

// OpenMP's default wait policy spins idle threads for a long while before they sleep. On a
// machine shared with anything else (a compiler, a second training process, the loader's own
// threads) the spinning threads steal the cores the working ones need: tiny LAVT ran 27x slower
// next to a two-job build. A short spin keeps the idle speed (docs/performance.md) and gives the
// cores back under load. libgomp reads the setting once, when it loads, so the tool sets it and
// starts itself again; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is left alone.
void limit_openmp_spinning(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  ::setenv("GOMP_SPINCOUNT", "10000", 1);
  ::execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
}

}  // namespace

int main(int argc, char** argv) {
  limit_openmp_spinning(argv);
  using namespace wico::tool;
  CLI::App app{"wico: train, fine-tune and evaluate WiCo referring image segmentation models"};
  app.set_version_flag("--version", std::string("wico ") + WICO_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);

  std::vector<std::pair<CLI::App*, Action>> commands;
  auto add = [&](Action (*adder)(CLI::App&)) {
    const std::size_t before = app.get_subcommands({}).size();
    Action action = adder(app);
    commands.emplace_back(app.get_subcommands({}).at(before), std::move(action));
  };
  add(add_config_command);
  add(add_synth_command);
  add(add_train_command);
  add(add_data_command);
  add(add_eval_command);
  add(add_predict_command);
  add(add_bench_command);
  add(add_tables_command);
  add(add_weights_command);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help, version or the parse error
    return code == 0 ? 0 : 2;
  }
  try {
    wico::init_logging("info");
    for (auto& [sub, action] : commands) {
      if (sub->parsed()) return action();
    }
    return 2;
  } catch (const wico::ConfigError& e) {
    spdlog::error("{}", e.what());
    return 2;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}
