// `wico tables`: regenerates the paper's Table 1, 2 or 3 on a data root (trains or reuses the runs
// each table needs, evaluates them, prints ours beside the paper's).
#include <algorithm>
#include <iostream>
#include <sstream>

#include "../commands.h"
#include "wico/core/error.h"
#include "wico/core/runtime.h"
#include "wico/wico/tables.h"

namespace wico::tool {

Action add_tables_command(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "tables", "regenerate the paper's Table 1, 2 or 3: train or reuse the runs it needs, "
                "evaluate them, print ours beside the paper's numbers");
  struct Options {
    model::TablesOptions tables;
    std::string root = "data/synthetic", runs = "runs/tables", configs = "configs/tiny",
                paper = "configs/paper_results.yaml", seeds = "0", branch_runs, eval_root, backends,
                splits = "val,testA,testB";
  };
  auto o = std::make_shared<Options>();
  sub->add_option("--table", o->tables.table, "1, 2 or 3")->required()->check(CLI::Range(1, 3));
  sub->add_option("--root", o->root, "data root (data.root of every run)")->capture_default_str();
  sub->add_option("--runs", o->runs, "folder of the runs (reused when there)")->capture_default_str();
  sub->add_option("--configs", o->configs,
                  "folder of topdown.yaml, <backend>.yaml and wico_<backend>_mattnet.yaml")
      ->capture_default_str();
  sub->add_option("--paper", o->paper, "the paper's numbers")->capture_default_str();
  sub->add_option("--branch-runs", o->branch_runs,
                  "folder of the branches' own runs (default: --runs), shared by variants");
  sub->add_option("--eval-root", o->eval_root,
                  "evaluate on this data root's splits (e.g. a held-out synthetic set); the runs "
                  "train on --root");
  sub->add_option("--seeds", o->seeds, "comma-separated seeds of the fine-tuning runs (Table 2's spread)")
      ->capture_default_str();
  sub->add_option("--backends", o->backends,
                  "comma-separated bottom-up backends whose rows to make (default: every one "
                  "with a config in --configs)");
  sub->add_option("--set", o->tables.overrides, "KEY=VALUE for every run (repeatable)");
  sub->add_option("--eval-set", o->tables.eval_overrides,
                  "KEY=VALUE for the evaluations only (repeatable; kept in eval[KEY=VALUE]/)");
  sub->add_option("--splits", o->splits, "Table 2's splits, comma-separated")->capture_default_str();
  sub->add_flag("--dry-run", o->tables.dry_run, "print the commands it would run, run nothing");
  return [o]() {
    model::TablesOptions t = o->tables;
    t.data_root = o->root;
    t.runs = o->runs;
    t.configs = o->configs;
    t.paper = o->paper;
    t.branch_runs = o->branch_runs;
    t.eval_root = o->eval_root;
    t.wico = own_executable();
    t.seeds.clear();
    std::stringstream in(o->seeds);
    for (std::string s; std::getline(in, s, ',');) {
      if (!s.empty()) t.seeds.push_back(std::stoll(s));
    }
    if (t.seeds.empty()) throw ConfigError("--seeds needs at least one seed");
    t.splits.clear();
    std::stringstream split_list(o->splits);
    for (std::string s; std::getline(split_list, s, ',');) {
      if (!s.empty()) t.splits.push_back(s);
    }
    if (t.splits.empty()) throw ConfigError("--splits needs at least one split");
    std::stringstream backend_list(o->backends);
    for (std::string s; std::getline(backend_list, s, ',');) {
      if (s.empty()) continue;
      if (std::find(model::kBottomUpBackends.begin(), model::kBottomUpBackends.end(), s) ==
          model::kBottomUpBackends.end()) {
        throw ConfigError("--backends: unknown backend '" + s + "' (vlt, cris, lavt)");
      }
      t.backends.push_back(s);
    }
    std::cout << model::make_table(t);
    return 0;
  };
}

}  // namespace wico::tool
