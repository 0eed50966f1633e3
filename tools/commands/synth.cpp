// `wico synth`: writes the bundled synthetic data set in RefCOCO's published layout.
#include <spdlog/spdlog.h>

#include "../commands.h"
#include "wico/core/runtime.h"
#include "wico/data/synthetic.h"

namespace wico::tool {

Action add_synth_command(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "synth", "write the synthetic data set (RefCOCO layout: JPEGs, instances.json, refs(unc).p)");
  struct Options {
    ConfigOptions config;
    std::string out = "data/synthetic";
    int images = 2000;
    std::uint64_t seed = 0;
    bool overwrite = false;
  };
  auto o = std::make_shared<Options>();
  o->config.add_to(*sub, false);
  sub->add_option("--out", o->out, "output root (the data.root of later runs)")
      ->capture_default_str();
  sub->add_option("--images", o->images, "number of images")
      ->check(CLI::Range(1, 10000000))
      ->capture_default_str();
  sub->add_option("--seed", o->seed, "the same seed writes the same files")->capture_default_str();
  sub->add_flag("--overwrite", o->overwrite, "replace a data set already at --out");
  return [o]() {
    const Config config = o->config.load();
    const RuntimeInfo runtime = apply_runtime(config);
    data::SyntheticOptions options{o->out, o->images, o->seed, runtime.threads, o->overwrite};
    const auto summary = data::generate_synthetic(options);
    std::string splits;
    for (const auto& [split, n] : summary.refs_per_split) {
      splits += (splits.empty() ? "" : ", ") + split + " " + std::to_string(n) + " refs / " +
                std::to_string(summary.images_per_split.at(split)) + " images";
    }
    spdlog::info("synth: wrote {} images, {} annotations, {} refs, {} sentences to {} ({})",
                 summary.images, summary.annotations, summary.refs, summary.sentences, o->out,
                 splits);
    return 0;
  };
}

}  // namespace wico::tool
