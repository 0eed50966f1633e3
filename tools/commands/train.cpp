// `wico train`: trains the model a config describes (a branch alone or a WiCo pair), in one
// process or several (--nproc N on this machine; across machines through torchrun-style
// environment variables), and continues an interrupted run exactly (--resume runs/x).
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "../commands.h"
#include "wico/core/error.h"
#include "wico/core/logging.h"
#include "wico/core/run_dir.h"
#include "wico/core/runtime.h"
#include "wico/nn/ris_model.h"
#include "wico/train/distributed.h"
#include "wico/train/launcher.h"
#include "wico/train/trainer.h"

namespace fs = std::filesystem;

namespace wico::tool {

Action add_train_command(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "train", "train a model (a branch alone or a WiCo pair); --resume continues a run exactly");
  struct Options {
    ConfigOptions config;
    std::string resume;
    std::string run_dir;  // internal: a run directory the --nproc launcher already created
    int nproc = 1;
    bool list = false;
  };
  auto o = std::make_shared<Options>();
  o->config.add_to(*sub, false);
  sub->add_option("--resume", o->resume,
                  "continue the run in this directory from its newest checkpoint (its "
                  "config.yaml; a --config given too must be the same)");
  sub->add_option("--nproc", o->nproc,
                  "processes on this machine (data-parallel over c10d: Gloo on CPU, NCCL on CUDA)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  sub->add_option("--run-dir", o->run_dir)->group("");  // hidden: set by the launcher
  sub->add_flag("--list", o->list, "list the models model.kind can name");
  return [o]() {
    if (o->list) {
      for (const auto& name : nn::model_registry().names()) {
        std::cout << name << "  " << nn::model_registry().doc(name) << "\n";
      }
      return 0;
    }
    if (o->config.file.empty() && o->resume.empty() && o->run_dir.empty()) {
      throw ConfigError("wico train needs --config FILE (or --resume RUN_DIR)");
    }
    const train::DistributedEnv env = train::DistributedEnv::from_environment();
    const bool resume = !o->resume.empty();
    fs::path run_path = resume ? fs::path(o->resume) : fs::path(o->run_dir);
    Config config = [&] {
      if (!o->config.file.empty() && run_path.empty()) return o->config.load();
      if (!o->config.file.empty()) return o->config.load();  // compared with the checkpoint
      if (!fs::exists(run_path / "config.yaml")) {
        throw ConfigError("'" + run_path.string() + "' is not a run directory (no config.yaml)");
      }
      return Config::load(run_path / "config.yaml", o->config.overrides);
    }();
    if (env.rank != 0) config.set("log.level", std::string("warn"));
    const RuntimeInfo runtime = apply_runtime(config);

    if (o->nproc > 1 && !env.enabled()) {
      // The launcher: create the run (a fresh one) and start the workers on it.
      if (!resume) {
        RunDir run = RunDir::for_config(config, RunDir::Mode::kCreate);
        run.write_config(config);
        run_path = run.path();
      }
      std::vector<std::string> argv = {own_executable(), "train"};
      if (resume) {
        argv.insert(argv.end(), {"--resume", run_path.string()});
        if (!o->config.file.empty()) argv.insert(argv.end(), {"--config", o->config.file});
      } else {
        argv.insert(argv.end(), {"--run-dir", run_path.string()});
      }
      for (const auto& s : o->config.overrides) argv.insert(argv.end(), {"--set", s});
      spdlog::info("starting {} worker processes for {}", o->nproc, run_path.string());
      return train::launch_local_workers(o->nproc, argv, {});
    }

    if (run_path.empty()) {
      // A fresh single-process run, or rank 0 of a run started by an external launcher.
      RunDir run = RunDir::for_config(config, env.rank == 0 ? RunDir::Mode::kCreate
                                                            : RunDir::Mode::kReuse);
      if (env.rank == 0) run.write_config(config);
      run_path = run.path();
    }
    if (env.rank == 0) add_log_file(run_path / "log.txt");
    train::Distributed dist(env, runtime.device);
    train::Trainer trainer(config, run_path, resume, &dist);
    const train::TrainResult result = trainer.run();
    if (result.stopped_by_signal) {
      if (env.rank == 0) {
        spdlog::warn("stopped at step {}; continue with: wico train --resume {}",
                     result.state.iteration, run_path.string());
      }
      return 128 + result.stopped_by_signal;
    }
    if (env.rank == 0) {
      spdlog::info("done: {} steps; checkpoint {}", result.state.iteration,
                   result.last_checkpoint.string());
    }
    return 0;
  };
}

}  // namespace wico::tool
