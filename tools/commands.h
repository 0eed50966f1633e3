// The subcommands of the `wico` tool. Each lives in tools/commands/<name>.cpp, adds itself to the
// CLI11 app and runs through the library; tools/ holds no logic of its own beyond that.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "wico/core/config.h"

namespace wico::tool {

// --config FILE and --set KEY=VALUE (repeatable), shared by every subcommand that reads a config.
struct ConfigOptions {
  std::string file;
  std::vector<std::string> overrides;
  void add_to(CLI::App& app, bool required);
  Config load() const;  // the file (or the defaults when none was given) plus the overrides
};

// Each add_*_command registers a subcommand; the returned function runs it after parsing and
// returns the process exit code.
using Action = std::function<int()>;
Action add_config_command(CLI::App& app);
Action add_bench_command(CLI::App& app);
Action add_synth_command(CLI::App& app);
Action add_data_command(CLI::App& app);
Action add_eval_command(CLI::App& app);
Action add_predict_command(CLI::App& app);
Action add_train_command(CLI::App& app);
Action add_tables_command(CLI::App& app);
Action add_weights_command(CLI::App& app);

}  // namespace wico::tool
