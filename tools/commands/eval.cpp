// `wico eval`: scores predictions of val/testA/testB and writes eval/<split>/{metrics.json,
// report.md, iou_distribution.png}. This build scores a predictions folder
// (--from-predictions DIR holding <split>/predictions.jsonl); evaluating a checkpoint joins when
// the models land.
#include <spdlog/spdlog.h>

#include <iostream>
#include <sstream>

#include "../commands.h"
#include "wico/core/error.h"
#include "wico/core/runtime.h"
#include "wico/data/refer.h"
#include "wico/eval/evaluator.h"

namespace wico::tool {

Action add_eval_command(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "eval", "score predictions per split: mIoU, oIoU, prec@0.5-0.9, PN/IP rates, MER, plots");
  struct Options {
    ConfigOptions config;
    std::string predictions;
    std::string splits;
    std::string out;
  };
  auto o = std::make_shared<Options>();
  o->config.add_to(*sub, false);
  sub->add_option("--from-predictions", o->predictions,
                  "folder with <split>/predictions.jsonl (written by an earlier evaluation)")
      ->required();
  sub->add_option("--splits", o->splits, "comma-separated splits (default: data.eval_splits)");
  sub->add_option("--out", o->out, "output folder (default: the predictions folder)");
  return [o]() {
    const Config config = o->config.load();
    apply_runtime(config);
    std::vector<std::string> splits;
    if (o->splits.empty()) {
      splits = config.texts("data.eval_splits");
    } else {
      std::stringstream in(o->splits);
      for (std::string s; std::getline(in, s, ',');) {
        if (!s.empty()) splits.push_back(s);
      }
    }
    const auto data = data::ReferDataset::load(
        config.text("data.root"), config.text("data.dataset"), config.text("data.split_by"));
    const auto settings = eval::EvalSettings::from_config(config);
    const std::filesystem::path out = o->out.empty() ? o->predictions : o->out;
    for (const auto& split : splits) {
      const auto file = std::filesystem::path(o->predictions) / split / "predictions.jsonl";
      const auto result =
          eval::score_predictions(data, split, eval::read_predictions(file), settings);
      eval::write_split_outputs(result, settings, out / split);
      std::cout << eval::report_markdown(result) << "\n";
      spdlog::info("wrote {}", (out / split).string());
    }
    return 0;
  };
}

}  // namespace wico::tool
