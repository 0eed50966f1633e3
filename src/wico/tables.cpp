#include "wico/wico/tables.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "wico/bottomup/backend.h"
#include "wico/core/config.h"
#include "wico/core/error.h"

namespace wico::model {

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kSplits = {"val", "testA", "testB"};

struct DataSet {
  std::string name, split_by;
  std::vector<std::string> splits;
};
const std::vector<DataSet>& data_sets() {
  static const std::vector<DataSet> sets = {{"refcoco", "unc", {"val", "testA", "testB"}},
                                            {"refcoco+", "unc", {"val", "testA", "testB"}},
                                            {"refcocog", "umd", {"val"}}};
  return sets;
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// One run a table needs: trained by `wico train` (or composed from its init weights, evaluated
// with `wico eval --compose`).
struct Run {
  std::string name;
  fs::path config;
  std::vector<std::string> sets;
  bool compose = false;
  bool branch = false;  // a branch's own run (under --branch-runs)
  fs::path pair_config;  // the branch's config in a pair (empty: `config`)
  std::vector<Run> before;  // runs trained first (the top-down protocol's stage 1)
};

struct Cell {  // mean and spread of a metric over seeds; empty when not measured
  std::vector<double> values;
  std::string text(int digits = 2) const {
    if (values.empty()) return "-";
    const double m = mean();
    if (values.size() == 1) return fmt::format("{:.{}f}", m, digits);
    double var = 0;
    for (double v : values) var += (v - m) * (v - m);
    return fmt::format("{:.{}f} ± {:.{}f}", m, digits,
                       std::sqrt(var / static_cast<double>(values.size() - 1)), digits);
  }
  double mean() const {
    double m = 0;
    for (double v : values) m += v;
    return values.empty() ? NAN : m / static_cast<double>(values.size());
  }
};

std::string delta(double ours, double base) {
  if (std::isnan(ours) || std::isnan(base)) return "";
  return fmt::format(" ({}{:.2f})", ours >= base ? "↑" : "↓", std::abs(ours - base));
}

// The non-fused branches of a pair's metrics.json, in alphabetical order (how the file keys a
// pair's MER).
std::vector<std::string> pair_branches(const nlohmann::json& metrics) {
  std::vector<std::string> names;
  if (!metrics.contains("branches")) return names;
  for (auto it = metrics["branches"].begin(); it != metrics["branches"].end(); ++it) {
    if (it.key() != "fused") names.push_back(it.key());
  }
  std::sort(names.begin(), names.end());
  return names;
}

class TableMaker {
 public:
  explicit TableMaker(TablesOptions o) : o_(std::move(o)) {
    if (!fs::exists(o_.paper)) throw ConfigError("no paper results file " + o_.paper.string());
    paper_ = YAML::LoadFile(o_.paper.string());
  }

  std::string make() {
    switch (o_.table) {
      case 1: return table1();
      case 2: return table2();
      case 3: return table3();
      default: throw ConfigError(fmt::format("--table {}: the paper has tables 1, 2 and 3", o_.table));
    }
  }

 private:
  TablesOptions o_;
  YAML::Node paper_;
  std::vector<std::string> notes_;

  bool backend_exists(const std::string& backend) const {
    return bottomup::backend_registry().contains(backend) && fs::exists(o_.configs / (backend + ".yaml"));
  }
  bool backend_asked(const std::string& backend) const {
    return o_.backends.empty() ||
           std::find(o_.backends.begin(), o_.backends.end(), backend) != o_.backends.end();
  }
  // A backend whose rows this table makes.
  bool backend_used(const std::string& backend) const {
    return backend_asked(backend) && backend_exists(backend);
  }
  // Why a backend's rows stay empty.
  std::string absence(const std::string& backend) const {
    return backend_exists(backend) ? "not asked for (--backends)" : "not in this build";
  }
  bool data_present(const DataSet& d) const {
    return fs::exists(o_.data_root / d.name / ("refs(" + d.split_by + ").p"));
  }
  std::vector<std::string> data_keys(const DataSet& d) const {
    return {"data.root=" + o_.data_root.string(), "data.dataset=" + d.name, "data.split_by=" + d.split_by};
  }

  Run branch_run(const std::string& branch, const DataSet& d, std::int64_t seed) const {
    Run r;
    r.name = fmt::format("{}_{}_s{}", branch, d.name, seed);
    r.config = o_.configs / (branch == "td" ? "topdown.yaml" : branch + ".yaml");
    r.sets = data_keys(d);
    r.sets.push_back(fmt::format("run.seed={}", seed));
    r.branch = true;
    if (branch == "td" && two_stage_top_down()) {
      // top_down.protocol two_stage: topdown_extractor.yaml first, then topdown_matcher.yaml on
      // its frozen extractor; a pair still builds the branch from topdown.yaml.
      Run stage1 = r;
      stage1.name = fmt::format("td_extractor_{}_s{}", d.name, seed);
      stage1.config = o_.configs / "topdown_extractor.yaml";
      r.pair_config = r.config;
      r.config = o_.configs / "topdown_matcher.yaml";
      r.sets.push_back("train.init=[branch.extractor=" + best(stage1).string() + "]");
      r.before.push_back(std::move(stage1));
    }
    return r;
  }

  // configs/<dir>/topdown.yaml's top_down.protocol (two_stage needs the two stage configs).
  bool two_stage_top_down() const {
    const fs::path td = o_.configs / "topdown.yaml";
    if (!fs::exists(td) || Config::load(td).text("top_down.protocol") != "two_stage") return false;
    for (const char* stage : {"topdown_extractor.yaml", "topdown_matcher.yaml"}) {
      if (!fs::exists(o_.configs / stage)) {
        throw ConfigError(td.string() + " asks for top_down.protocol two_stage but " +
                          (o_.configs / stage).string() + " is missing");
      }
    }
    return true;
  }

  fs::path folder(const Run& r) const { return (r.branch ? o_.branch_runs : o_.runs) / r.name; }
  fs::path best(const Run& r) const { return folder(r) / "checkpoints" / "best.pt"; }
  // Where a run's evaluations go: eval/, or eval@<root>/ for another data root's splits.
  // --eval-set settings add their own suffix: eval[wico.blend=paper]/.
  fs::path eval_folder(const Run& r, const std::string& tag = "") const {
    std::string name = "eval";
    if (!o_.eval_root.empty()) name += "@" + o_.eval_root.filename().string();
    for (const auto& x : o_.eval_overrides) name += "[" + x + "]";
    return folder(r) / (name + tag);
  }

  // A pair: alpha and beta as branch runs; integration; CFI; frozen branches (GSI alone).
  Run pair_run(const Run& alpha, const Run& beta, const std::string& backend, const DataSet& d,
               const std::string& integration, bool cfi, bool frozen, std::int64_t seed,
               bool compose) const {
    Run r;
    r.name = fmt::format("pair_{}+{}_{}{}", alpha.name, beta.name, integration, cfi ? "_cfi" : "");
    if (!compose) r.name += fmt::format("_s{}", seed);
    r.config = o_.configs / ("wico_" + backend + "_mattnet.yaml");
    r.compose = compose;
    r.sets = data_keys(d);
    auto branch_config = [](const Run& b) { return (b.pair_config.empty() ? b.config : b.pair_config).string(); };
    r.sets.push_back("wico.branches=[" + branch_config(alpha) + ", " + branch_config(beta) + "]");
    r.sets.push_back("wico.integration=" + integration);
    r.sets.push_back(std::string("wico.cfi=") + (cfi ? "true" : "false"));
    r.sets.push_back("train.init=[alpha=" + best(alpha).string() + ", beta=" + best(beta).string() + "]");
    r.sets.push_back(fmt::format("run.seed={}", seed));
    // Frozen branches keep their batch norms' statistics too (train.batch_norm: frozen), so their
    // results stay those of their own runs.
    if (frozen) {
      r.sets.push_back("train.freeze=[^alpha\\., ^beta\\.]");
      r.sets.push_back("train.batch_norm=frozen");
      r.sets.push_back("wico.branch_weight=0");  // nothing of theirs trains
    }
    return r;
  }

  int shell(const std::string& command) const {
    std::cout << "$ " << command << std::endl;
    if (o_.dry_run) return 0;
    const int status = std::system(command.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  std::string sets_of(const Run& r) const {
    std::string s;
    for (const auto& x : r.sets) s += " --set " + quote(x);
    for (const auto& x : o_.overrides) s += " --set " + quote(x);
    return s;
  }

  // A run is finished when its best checkpoint exists (runs validate at least at their end:
  // train.val_every >= 0).
  void train(const Run& r) {
    if (r.compose || fs::exists(best(r))) return;
    for (const Run& first : r.before) train(first);
    const fs::path dir = folder(r);
    std::string command;
    bool partial = false;
    if (fs::exists(dir / "checkpoints")) {
      for (const auto& e : fs::directory_iterator(dir / "checkpoints")) partial |= e.path().extension() == ".pt";
    }
    if (partial) {
      command = quote(o_.wico) + " train --resume " + quote(dir.string());
    } else {
      if (fs::exists(dir)) {
        throw Error("run " + dir.string() + " exists without checkpoints; move or delete it");
      }
      command = quote(o_.wico) + " train --config " + quote(r.config.string()) + " --set run.root=" +
                quote(dir.parent_path().string()) + " --set run.name=" + r.name + sets_of(r);
    }
    if (const int code = shell(command); code != 0) {
      throw Error(fmt::format("training {} failed (exit {}); see {}", r.name, code, (dir / "log.txt").string()));
    }
  }

  // metrics.json of the run on each split (evaluated now where missing); nothing in a dry run.
  // `tag` and `extra` name a second evaluation with other settings (Table 3's batch-1 timing).
  std::map<std::string, nlohmann::json> evaluate(const Run& r, const std::vector<std::string>& splits,
                                                 const std::string& tag = "",
                                                 const std::vector<std::string>& extra = {}) {
    train(r);
    const fs::path eval = eval_folder(r, tag);
    std::vector<std::string> missing;
    for (const auto& s : splits) {
      if (!fs::exists(eval / s / "metrics.json")) missing.push_back(s);
    }
    if (!missing.empty()) {
      std::string list;
      for (const auto& s : missing) list += (list.empty() ? "" : ",") + s;
      std::string eval_sets;
      if (!o_.eval_root.empty()) eval_sets += " --set " + quote("data.root=" + o_.eval_root.string());
      for (const auto& x : o_.eval_overrides) eval_sets += " --set " + quote(x);
      for (const auto& x : extra) eval_sets += " --set " + quote(x);
      const std::string command =
          r.compose ? quote(o_.wico) + " eval --compose --config " + quote(r.config.string()) +
                          sets_of(r) + eval_sets + " --out " + quote(eval.string()) + " --splits " + list
                    : quote(o_.wico) + " eval --checkpoint " + quote(best(r).string()) + eval_sets +
                          " --out " + quote(eval.string()) + " --splits " + list;
      if (const int code = shell(command); code != 0) {
        throw Error(fmt::format("evaluating {} failed (exit {})", r.name, code));
      }
    }
    std::map<std::string, nlohmann::json> out;
    for (const auto& s : splits) {
      const fs::path file = eval / s / "metrics.json";
      if (!fs::exists(file)) continue;  // dry run
      std::ifstream in(file);
      out[s] = nlohmann::json::parse(in);
    }
    return out;
  }

  static double oiou(const std::map<std::string, nlohmann::json>& m, const std::string& split,
                     const std::string& branch) {
    auto it = m.find(split);
    if (it == m.end() || !it->second["branches"].contains(branch)) return NAN;
    return 100.0 * it->second["branches"][branch]["oiou"].get<double>();
  }
  // Pearson r of a branch's confidence with its IoU (metrics.json "confidence"), NaN if none.
  static double tracking(const std::map<std::string, nlohmann::json>& m, const std::string& split,
                         const std::string& branch) {
    auto it = m.find(split);
    if (it == m.end() || !it->second.contains("confidence") || !it->second["confidence"].contains(branch)) return NAN;
    const auto& r = it->second["confidence"][branch]["pearson"];
    return r.is_number() ? r.get<double>() : NAN;
  }

  std::string paper_value(const YAML::Node& n) const {
    return n && !n.IsNull() ? fmt::format("{:.2f}", n.as<double>()) : "-";
  }

  std::string finish(const std::string& title, const std::string& body) {
    std::string text = "## " + title + "\n\n" + body;
    if (!notes_.empty()) {
      text += "\n";
      for (const auto& n : notes_) text += "- " + n + "\n";
    }
    text += fmt::format("\nData: {} (trained){}; runs: {}; branch runs: {}; configs: {}; seeds:",
                        o_.data_root.string(),
                        o_.eval_root.empty() ? "" : ", evaluated on " + o_.eval_root.string(),
                        o_.runs.string(), o_.branch_runs.string(), o_.configs.string());
    for (auto s : o_.seeds) text += fmt::format(" {}", s);
    text += ". IoU = overall IoU x 100 (the paper's metric).\n";
    if (!o_.dry_run) {
      fs::create_directories(o_.runs);
      std::ofstream(o_.runs / fmt::format("table{}.md", o_.table)) << text;
    }
    return text;
  }

  // Table 2's bottom-up branch and the partner of a top-down pair of one kind: the paper's VLT,
  // else LAVT (whose Table 2 docs/results.md measured), else CRIS; --backends' order when given.
  std::string first_backend() {
    const std::vector<std::string> order =
        o_.backends.empty() ? std::vector<std::string>{"vlt", "lavt", "cris"} : o_.backends;
    for (const auto& b : order) {
      if (backend_used(b)) return b;
    }
    throw ConfigError("no bottom-up backend with a config in " + o_.configs.string() +
                      (o_.backends.empty() ? "" : " among --backends"));
  }

  std::string table1() {
    const YAML::Node p = paper_["table1"];
    std::vector<std::string> columns;
    for (const auto& c : p["columns"]) columns.push_back(c.as<std::string>());
    std::string header = "| Method | Type |", rule = "|---|---|";
    for (const auto& c : columns) {
      header += " " + c + " |";
      rule += "---|";
    }
    std::string body = header + "\n" + rule + "\n";
    // Our measurements: row -> column -> value.
    std::map<std::string, std::map<std::string, double>> ours;
    std::map<std::string, std::string> row_note;
    const std::int64_t seed = o_.seeds.front();
    for (const auto& d : data_sets()) {
      if (!data_present(d)) {
        notes_.push_back(d.name + ": no data under " + o_.data_root.string() + " (column left empty)");
        continue;
      }
      const Run td = branch_run("td", d, seed);
      const auto td_metrics = evaluate(td, d.splits);
      for (const auto& s : d.splits) ours["MAttNet"][d.name + "/" + s] = oiou(td_metrics, s, "top_down");
      for (const auto& b : kBottomUpBackends) {
        if (!backend_used(b)) continue;
        const Run bu = branch_run(b, d, seed);
        const auto bu_metrics = evaluate(bu, d.splits);
        const auto pair = evaluate(pair_run(td, bu, b, d, "gsi", true, false, seed, false), d.splits);
        for (const auto& s : d.splits) {
          ours[upper(b)][d.name + "/" + s] = oiou(bu_metrics, s, "bottom_up");
          ours["WiCo " + upper(b) + " + MAttNet"][d.name + "/" + s] = oiou(pair, s, "fused");
        }
      }
    }
    for (const auto& b : kBottomUpBackends) {
      if (!backend_used(b)) notes_.push_back(upper(b) + ": " + absence(b) + " (rows left empty)");
    }
    for (const auto& row : p["rows"]) {
      const std::string name = row.first.as<std::string>();
      const YAML::Node r = row.second;
      std::string line = "| " + name + " | " + r["type"].as<std::string>() + " |";
      const std::string base = r["base"] ? r["base"].as<std::string>() : "";
      for (std::size_t i = 0; i < columns.size(); ++i) {
        const double v = ours.count(name) && ours[name].count(columns[i]) ? ours[name][columns[i]] : NAN;
        std::string cell = std::isnan(v) ? "-" : fmt::format("{:.2f}", v);
        if (!base.empty() && !std::isnan(v)) cell += delta(v, ours[base][columns[i]]);
        std::string paper = paper_value(r["values"][i]);
        if (!base.empty() && r["values"][i] && !r["values"][i].IsNull()) {
          const YAML::Node& pb = p["rows"][base]["values"][i];
          if (pb && !pb.IsNull()) paper += delta(r["values"][i].as<double>(), pb.as<double>());
        }
        line += " " + cell + " [" + paper + "] |";
      }
      body += line + "\n";
    }
    body += "\nCells: ours [paper]; WiCo rows show the change from their bottom-up model.\n";
    return finish("Table 1: main results (IoU)", body);
  }

  std::string table2() {
    const DataSet& d = data_sets().front();
    if (!data_present(d)) throw ConfigError("Table 2 needs refcoco under " + o_.data_root.string());
    const std::string backend = first_backend();
    const YAML::Node p = paper_["table2"];
    notes_.push_back(fmt::format("ours: {} (alpha, bottom-up) + MAttNet (beta, top-down); the "
                                 "paper's: {}", upper(backend), p["pair"].as<std::string>()));
    const Run td = branch_run("td", d, 0), bu = branch_run(backend, d, 0);
    train(td);
    train(bu);
    struct Row {
      std::string key, integration;
      bool cfi;
    };
    const std::vector<Row> rows = {{"intersection", "intersection", false}, {"union", "union", false},
                                   {"average", "average", false},           {"si", "si", false},
                                   {"gsi", "gsi", false},                   {"si+cfi", "si", true},
                                   {"gsi+cfi", "gsi", true}};
    // Per row: alpha, beta, fused on val; fused on testA and testB; Pearson r of each confidence (val).
    enum { kAlpha, kBeta, kFused, kTestA, kTestB, kTrackAlpha, kTrackBeta, kCells };
    std::map<std::string, std::array<Cell, kCells>> cells;
    for (const auto& row : rows) {
      const bool fixed = row.integration == "intersection" || row.integration == "union" ||
                         row.integration == "average";
      const std::vector<std::int64_t> seeds = fixed ? std::vector<std::int64_t>{0} : o_.seeds;
      for (const auto seed : seeds) {
        const Run r = pair_run(td, bu, backend, d, row.integration, row.cfi, !row.cfi, seed, fixed);
        const auto m = evaluate(r, o_.splits);
        if (m.empty()) continue;
        auto& c = cells[row.key];
        auto add = [](Cell& cell, double v) {
          if (!std::isnan(v)) cell.values.push_back(v);
        };
        add(c[kAlpha], oiou(m, "val", "bottom_up"));
        add(c[kBeta], oiou(m, "val", "top_down"));
        add(c[kFused], oiou(m, "val", "fused"));
        add(c[kTestA], oiou(m, "testA", "fused"));
        add(c[kTestB], oiou(m, "testB", "fused"));
        if (!fixed) {
          add(c[kTrackAlpha], tracking(m, "val", "bottom_up"));
          add(c[kTrackBeta], tracking(m, "val", "top_down"));
        }
      }
    }
    std::string body =
        "| Integration | Interaction | IoU_alpha | IoU_beta | IoU_+ (vs Average) | IoU_+ testA | "
        "IoU_+ testB | r_alpha | r_beta | paper IoU_alpha | paper IoU_beta | paper IoU_+ (vs Average) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    const double paper_avg = p["rows"]["average"]["fused"].as<double>();
    for (const auto& row : rows) {
      const auto& c = cells[row.key];
      const YAML::Node pr = p["rows"][row.key];
      auto versus = [&](int column) {
        return row.key == "average" ? std::string() : delta(c[column].mean(), cells["average"][column].mean());
      };
      body += fmt::format("| {} | {} | {} | {} | {}{} | {}{} | {}{} | {} | {} | {} | {} | {}{} |\n",
                          upper(row.integration), row.cfi ? "CFI" : "-", c[kAlpha].text(),
                          c[kBeta].text(), c[kFused].text(), versus(kFused), c[kTestA].text(),
                          versus(kTestA), c[kTestB].text(), versus(kTestB), c[kTrackAlpha].text(3),
                          c[kTrackBeta].text(3), paper_value(pr["alpha"]), paper_value(pr["beta"]),
                          paper_value(pr["fused"]),
                          row.key == "average" ? "" : delta(pr["fused"].as<double>(), paper_avg));
    }
    body += "\nRows without CFI keep both branches as trained (SI and GSI learn their score heads "
            "alone); rows with CFI fine-tune the pair. Intersection, union and average have no "
            "parameters: they are evaluated on the composed pair once. IoU_alpha / IoU_beta / IoU_+ "
            "are val unless named; r: Pearson correlation of each branch's confidence (mu) with its "
            "IoU on val. best.pt is chosen on val.\n";
    return finish("Table 2: integration strategies (RefCOCO, IoU)", body);
  }

  std::string table3() {
    const DataSet& d = data_sets().front();
    if (!data_present(d)) throw ConfigError("Table 3 needs refcoco under " + o_.data_root.string());
    const YAML::Node p = paper_["table3"];
    std::string body =
        "| alpha + beta | kind | IoU_alpha + IoU_beta | IoU_+ | MER | seconds / 100 samples "
        "(alpha + beta + WiCo) | paper IoU_+ | paper seconds |\n|---|---|---|---|---|---|---|---|\n";
    const std::vector<std::int64_t> val_seed = {o_.seeds.front()};
    for (const auto& row : p["rows"]) {
      const std::string name = row.first.as<std::string>();
      const YAML::Node pr = row.second;
      const auto plus = name.find(" + ");
      std::string a = name.substr(0, plus), b = name.substr(plus + 3);
      auto key = [](std::string s) {
        for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return s == "mattnet" ? std::string("td") : s;
      };
      std::string ka = key(a), kb = key(b);
      const YAML::Node speed = pr["speed"];
      const std::string paper_speed = fmt::format("{} = {} + {} + {}", speed[0].as<double>(), speed[1].as<double>(),
                                                  speed[2].as<double>(), speed[3].as<double>());
      const std::string paper_plus =
          paper_value(pr["fused"]) +
          delta(pr["fused"].as<double>(), (pr["alpha"].as<double>() + pr["beta"].as<double>()) / 2);
      if (!exists_branch(ka) || !exists_branch(kb)) {
        const std::string& absent = !exists_branch(ka) ? ka : kb;
        body += fmt::format("| {} | {} | missing: {} {} | | | | {} | {} |\n", name,
                            pr["kind"].as<std::string>(), !exists_branch(ka) ? a : b,
                            absence(absent), paper_plus, paper_speed);
        continue;
      }
      body += row3(name, pr["kind"].as<std::string>(), ka, kb, d, paper_plus, paper_speed);
    }
    // Pairs of one kind with what exists: a second run of the same branch (seed 1): the same model
    // twice, unlike the paper's pairs of different models of one kind (VLT + CRIS, CAC + MAttNet).
    for (const std::string& k : std::vector<std::string>{"lavt", "td"}) {
      if (!exists_branch(k)) continue;
      const std::string label = k == "td" ? "MAttNet" : upper(k);
      body += row3(label + " + " + label + " (seeds 0, 1)", k == "td" ? "TD+TD" : "BU+BU", k, k, d, "-", "-");
    }
    body += "\nGSI alone (no CFI, branches frozen), as the paper's Table 3. IoU_+ shows the change "
            "from the mean of IoU_alpha and IoU_beta; MER: share of samples where exactly one "
            "branch has IoU > 0.5. Rows '(seeds 0, 1)' pair the same model trained twice, not two "
            "different models as the paper's homogeneous rows. Speed: seconds per 100 samples at "
            "batch 1 (the device synchronised before each clock read) on this machine, not the "
            "paper's V100.\n";
    return finish("Table 3: model combinations (RefCOCO val, IoU)", body);
  }

  bool exists_branch(const std::string& k) const { return k == "td" || backend_used(k); }

  std::string row3(const std::string& name, const std::string& kind, const std::string& ka,
                   const std::string& kb, const DataSet& d, const std::string& paper_plus,
                   const std::string& paper_speed) {
    const std::int64_t seed = o_.seeds.front();
    const Run ra = branch_run(ka, d, 0), rb = branch_run(kb, d, ka == kb ? 1 : 0);
    train(ra);
    train(rb);
    const std::string backend = ka != "td" ? ka : (kb != "td" ? kb : first_backend());
    Run pair = pair_run(ra, rb, backend, d, "gsi", false, true, seed, false);
    // Evaluated at batch 1 (its own folder), so that the seconds per 100 samples are the paper's.
    const auto m = evaluate(pair, {"val"}, "_batch1", {"eval.batch_size=1"});
    if (m.empty()) return fmt::format("| {} | {} | (dry run) | | | | {} | {} |\n", name, kind, paper_plus, paper_speed);
    const auto& j = m.at("val");
    const std::vector<std::string> names = pair_branches(j);
    const double ia = oiou(m, "val", names.at(0)), ib = oiou(m, "val", names.at(1)),
                 plus = oiou(m, "val", "fused");
    const double branches_mer = branch_pair_mer(j);
    const std::string mer = std::isnan(branches_mer) ? "-" : fmt::format("{:.1f}%", 100.0 * branches_mer);
    const auto& sp = j["seconds_per_100_samples"];
    auto sec = [&](const std::string& k) { return sp.contains(k) ? sp[k].get<double>() : NAN; };
    const double total = sec("model");
    return fmt::format("| {} | {} | {:.2f} + {:.2f} | {:.2f}{} | {} | {:.2f} = {:.2f} + {:.2f} + {:.2f} | {} | {} |\n",
                       name, kind, ia, ib, plus, delta(plus, (ia + ib) / 2), mer, total,
                       sec(names.at(0)), sec(names.at(1)), sec("wico"), paper_plus, paper_speed);
  }
};

}  // namespace

std::string make_table(const TablesOptions& options) {
  TablesOptions o = options;
  if (o.branch_runs.empty()) o.branch_runs = o.runs;
  return TableMaker(o).make();
}

double branch_pair_mer(const nlohmann::json& metrics) {
  const std::vector<std::string> names = pair_branches(metrics);
  if (names.size() != 2) return NAN;
  const std::string key = names[0] + "|" + names[1];
  if (!metrics.contains("mer") || !metrics["mer"].contains(key) || !metrics["mer"][key].is_number()) return NAN;
  return metrics["mer"][key].get<double>();
}

}  // namespace wico::model
