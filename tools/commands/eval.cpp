// `wico eval`: evaluates a checkpoint (--checkpoint K: runs the model over val/testA/testB) or
// scores a predictions folder (--from-predictions DIR holding <split>/predictions.jsonl), and
// writes eval/<split>/{metrics.json, report.md, predictions.jsonl, iou_distribution.png,
// panels_{pn,ip,normal}.png}. --compare draws Figure 7 (MER bars) from several evaluations.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <optional>
#include <iostream>
#include <sstream>

#include "../commands.h"
#include "wico/core/error.h"
#include "wico/core/runtime.h"
#include "wico/data/refer.h"
#include "wico/data/tokenizer.h"
#include "wico/data/tokenizer_config.h"
#include "wico/eval/evaluator.h"
#include "wico/eval/model_eval.h"
#include "wico/nn/ris_model.h"
#include "wico/train/checkpoint.h"
#include "wico/eval/panels.h"
#include "wico/eval/plots.h"

namespace wico::tool {

namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string s; std::getline(in, s, ',');) {
    if (!s.empty()) out.push_back(s);
  }
  return out;
}

// "LABEL=DIR" or "DIR"; a bare DIR is labelled with its run's name (runs/<name>/eval -> name).
std::pair<std::string, std::filesystem::path> labelled_folder(const std::string& arg) {
  const auto eq = arg.find('=');
  if (eq != std::string::npos && eq > 0) return {arg.substr(0, eq), arg.substr(eq + 1)};
  const auto path = std::filesystem::weakly_canonical(arg);
  const bool eval_folder = path.filename() == "eval" && path.has_parent_path();
  return {(eval_folder ? path.parent_path().filename() : path.filename()).string(), arg};
}

// --compare: Figure 7 per split from the evaluations' metrics.json files.
int compare(const std::vector<std::string>& folders, const std::vector<std::string>& requested,
            const std::vector<std::string>& eval_splits, const std::string& pair,
            const std::string& out) {
  if (out.empty()) throw ConfigError("--compare needs --out FOLDER for the MER plots");
  std::vector<std::pair<std::string, std::filesystem::path>> evaluations;
  for (const auto& f : folders) evaluations.push_back(labelled_folder(f));
  std::vector<std::string> splits = requested;
  if (splits.empty()) {  // data.eval_splits, those every evaluation has
    for (const auto& s : eval_splits) {
      bool everywhere = true;
      for (const auto& [label, folder] : evaluations) {
        everywhere = everywhere && std::filesystem::exists(folder / s / "metrics.json");
      }
      if (everywhere) splits.push_back(s);
    }
    if (splits.empty()) {
      throw Error(
          "no split of data.eval_splits has a metrics.json in every compared folder; "
          "name them with --splits");
    }
  }
  for (const auto& split : splits) {
    const auto bars = eval::read_mer_bars(evaluations, split, pair);
    std::cout << "## MER, " << split << (pair.empty() ? "" : " (" + pair + ")")
              << "\n\n| evaluation | MER |\n|---|---:|\n";
    for (const auto& [label, mer] : bars) {
      char line[256];
      std::snprintf(line, sizeof(line), "| %s | %.2f |\n", label.c_str(), 100 * mer);
      std::cout << line;
    }
    std::cout << "\n";
    const auto png = std::filesystem::path(out) / ("mer_" + split + ".png");
    eval::plot_mer_bars(bars, png);
    spdlog::info("wrote {}", png.string());
  }
  return 0;
}

// --checkpoint: the model over each split, then the same outputs as --from-predictions plus the
// predictions themselves and the speed of each branch.
// --compose: the model of --config with train.init's weights (a pair put together from its
// branches' runs, not fine-tuned).
template <typename Options>
int evaluate_checkpoint(const Options& o) {
  std::optional<train::Checkpoint> checkpoint;
  if (!o.compose) checkpoint = train::Checkpoint::read(o.checkpoint);
  const Config config = o.config.file.empty() ? checkpoint->config(o.config.overrides)
                                              : o.config.load();
  if (o.compose && config.texts("train.init").empty()) {
    throw ConfigError("--compose loads the weights train.init names, and it names none");
  }
  const RuntimeInfo runtime = apply_runtime(config);
  const auto data = data::ReferDataset::load(
      config.text("data.root"), config.text("data.dataset"), config.text("data.split_by"));
  const auto tokenizer = data::make_tokenizer_from_config(config, data);
  auto model = nn::build_model(config);
  if (checkpoint) {
    checkpoint->load_model(*model);
  } else {
    train::load_initial_weights(*model, config);
  }
  model->to(runtime.device);
  auto settings = eval::EvalSettings::from_config(config);
  if (o.panels >= 0) settings.panels = o.panels;
  data::LoaderOptions loader = data::LoaderOptions::from_config(config);
  loader.device = runtime.device;
  if (config.integer("eval.batch_size") > 0) loader.batch_size = static_cast<int>(config.integer("eval.batch_size"));
  // runs/<name>/checkpoints/x.pt -> runs/<name>/eval
  const std::filesystem::path out =
      o.out.empty() ? std::filesystem::path(o.checkpoint).parent_path().parent_path() / "eval"
                    : std::filesystem::path(o.out);
  const std::vector<std::string> splits =
      o.splits.empty() ? config.texts("data.eval_splits") : split_list(o.splits);
  for (const auto& split : splits) {
    const auto result = eval::evaluate_model(*model, data, split, *tokenizer, loader, settings);
    eval::write_model_eval(data, result, settings, out / split);
    std::cout << eval::report_markdown(result.result);
    std::cout << "seconds per 100 samples:";
    for (const auto& [part, seconds] : result.seconds_per_100) {
      char text[64];
      std::snprintf(text, sizeof(text), " %s %.2f", part.c_str(), seconds);
      std::cout << text;
    }
    std::cout << "\n\n";
    spdlog::info("wrote {}", (out / split).string());
  }
  return 0;
}

}  // namespace

Action add_eval_command(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "eval",
      "score predictions per split: mIoU, oIoU, prec@0.5-0.9, PN/IP rates, MER, plots, "
      "qualitative panels; or compare evaluations (MER bars)");
  struct Options {
    ConfigOptions config;
    std::string predictions;
    std::string checkpoint;
    bool compose = false;
    std::vector<std::string> compare;
    std::string pair;
    std::string splits;
    std::string out;
    int panels = -1;
  };
  auto o = std::make_shared<Options>();
  o->config.add_to(*sub, false);
  auto* from =
      sub->add_option("--from-predictions", o->predictions,
                      "folder with <split>/predictions.jsonl (written by an earlier evaluation)");
  auto* checkpoint = sub->add_option(
      "--checkpoint", o->checkpoint,
      "evaluate this checkpoint (its own config, plus --config/--set); writes to the run's "
      "eval/ folder unless --out")->excludes(from);
  sub->add_flag("--compose", o->compose,
                "evaluate the model of --config with the weights its train.init names (a WiCo "
                "pair from its branches' runs, not fine-tuned); needs --config and --out")
      ->excludes(from)
      ->excludes(checkpoint);
  sub->add_option("--compare", o->compare,
                  "draw the MER bars (Figure 7) of several evaluations: folders holding "
                  "<split>/metrics.json, each DIR or LABEL=DIR; writes <out>/mer_<split>.png")
      ->excludes(from)
      ->excludes(checkpoint)
      ->expected(1, -1);
  sub->add_option("--pair", o->pair,
                  "with --compare: the branch pair, e.g. bottom_up,top_down (the default where "
                  "present; 'a|b' as in metrics.json works too)");
  sub->add_option("--splits", o->splits, "comma-separated splits (default: data.eval_splits)");
  sub->add_option("--out", o->out, "output folder (default: the predictions folder)");
  sub->add_option("--panels", o->panels,
                  "qualitative panels: rows per kind (PN, IP, normal); 0: none (default: "
                  "eval.panels)")
      ->check(CLI::Range(0, 100));
  return [o]() {
    if (o->compose && (o->config.file.empty() || o->out.empty())) {
      throw ConfigError("--compose needs --config FILE and --out FOLDER");
    }
    if (!o->checkpoint.empty() || o->compose) return evaluate_checkpoint(*o);
    const Config config = o->config.load();
    apply_runtime(config);
    if (!o->compare.empty()) {
      return compare(o->compare, split_list(o->splits), config.texts("data.eval_splits"), o->pair,
                     o->out);
    }
    if (o->predictions.empty()) {
      throw ConfigError(
          "wico eval needs --checkpoint K (evaluate a model), --from-predictions DIR (score a "
          "predictions folder) or --compare DIR... (MER bars of several evaluations)");
    }
    std::vector<std::string> splits =
        o->splits.empty() ? config.texts("data.eval_splits") : split_list(o->splits);
    const auto data = data::ReferDataset::load(
        config.text("data.root"), config.text("data.dataset"), config.text("data.split_by"));
    auto settings = eval::EvalSettings::from_config(config);
    if (o->panels >= 0) settings.panels = o->panels;
    const std::filesystem::path out = o->out.empty() ? o->predictions : o->out;
    for (const auto& split : splits) {
      const auto file = std::filesystem::path(o->predictions) / split / "predictions.jsonl";
      const auto predictions = eval::read_predictions(file);
      const auto result = eval::score_predictions(data, split, predictions, settings);
      eval::write_split_outputs(result, settings, out / split);
      eval::write_panels(data, result, predictions, settings.thresholds, settings.panels,
                         out / split);
      std::cout << eval::report_markdown(result) << "\n";
      spdlog::info("wrote {}", (out / split).string());
    }
    return 0;
  };
}

}  // namespace wico::tool
