// `wico tables`: the paper's Tables 1-3 regenerated on a data root. Each table names the runs it
// needs (branch runs, fine-tuned pairs, pairs composed without fine-tuning); a run whose
// checkpoints/best.pt exists is reused, any other is trained with `wico train`, and every run is
// evaluated with `wico eval` on the splits the table shows (kept evaluations are reused too).
// The table is printed in the paper's layout with the paper's numbers beside ours
// (configs/paper_results.yaml); rows whose backend does not exist in this build, and columns
// whose data set is not under the root, are listed as missing, never filled.
//
// What each table trains (all from the `--configs` folder: topdown.yaml, <backend>.yaml,
// wico_<backend>_mattnet.yaml):
//   1: the top-down branch, each bottom-up backend, and WiCo (GSI + CFI) per backend, per data set;
//   2: the seven integration rows of one pair (the paper's VLT + MAttNet; ours VLT where it
//      exists, else LAVT, else CRIS, or the first of --backends): intersection / union / average composed from the branches' runs, SI and GSI
//      learning their score heads on frozen branches, SI and GSI with CFI fine-tuned; per seed;
//   3: GSI alone (frozen branches, no CFI) on mixed pairs and pairs of one kind (a second run of
//      a branch with seed 1), with MER and the seconds per 100 samples of each part.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace wico::model {

// The paper's bottom-up backends, in its tables' order.
inline const std::vector<std::string> kBottomUpBackends = {"vlt", "cris", "lavt"};

struct TablesOptions {
  int table = 2;
  std::filesystem::path data_root = "data/synthetic";
  std::filesystem::path runs = "runs/tables";
  // Where the branches' own runs are (reused or trained there); empty: `runs`. Lets several
  // variants of a table share one pair of branch runs.
  std::filesystem::path branch_runs;
  // Evaluate on this data root's splits instead of data_root's (a held-out synthetic set: the runs
  // still train on data_root); evaluations go to eval@<folder name>/.
  std::filesystem::path eval_root;
  // Settings of the evaluations only (a checkpoint's config otherwise), e.g. wico.blend=paper on
  // pairs trained with the other blend; their evaluations go to eval[KEY=VALUE]/.
  std::vector<std::string> eval_overrides;
  // Table 2's splits (Tables 1 and 3 show theirs).
  std::vector<std::string> splits = {"val", "testA", "testB"};
  std::filesystem::path configs = "configs/tiny";
  std::filesystem::path paper = "configs/paper_results.yaml";
  std::vector<std::int64_t> seeds = {0};
  // The bottom-up backends whose rows are made (empty: every registered backend with a config);
  // a left-out backend's rows are listed as not asked for.
  std::vector<std::string> backends;
  std::vector<std::string> overrides;  // --set for every run (e.g. train.iterations=...)
  std::string wico;                    // the wico executable
  bool dry_run = false;                // list the runs and commands, run nothing
};

// Trains and evaluates what the table needs (unless dry_run), writes <runs>/table<N>.md and
// returns the table as markdown.
std::string make_table(const TablesOptions& options);

// The MER of the pair's two branches (metrics.json's "mer" entry for the two non-fused branches,
// keyed alphabetically), whatever their names; NaN when the file has no such pair.
double branch_pair_mer(const nlohmann::json& metrics);

}  // namespace wico::model
