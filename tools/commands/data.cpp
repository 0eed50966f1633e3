// `wico data stats`: counts per split, sentence lengths, vocabulary, and a PNG contact sheet.
// `wico data glove-cache`: GloVe's text vectors -> the binary cache the glove tokenizer and VLT
// read in well under a second.
#include <spdlog/spdlog.h>

#include <iostream>

#include "../commands.h"
#include "wico/core/runtime.h"
#include "wico/data/glove.h"
#include "wico/data/refer.h"
#include "wico/data/stats.h"
#include "wico/data/tokenizer.h"
#include "wico/data/tokenizer_config.h"

namespace wico::tool {

Action add_data_command(CLI::App& app) {
  auto* data = app.add_subcommand("data", "inspect a data set");
  data->require_subcommand(1);
  auto* cache = data->add_subcommand(
      "glove-cache", "convert GloVe's text vectors (glove.840B.300d.txt) to the binary cache "
                     "text.vocab can name instead");
  auto paths = std::make_shared<std::pair<std::string, std::string>>();
  cache->add_option("input", paths->first, "vectors in GloVe's text format")->required();
  cache->add_option("output", paths->second, "the cache to write")->required();
  auto* stats = data->add_subcommand(
      "stats", "counts per split, sentence lengths, vocabulary size and a contact sheet (PNG)");
  struct Options {
    ConfigOptions config;
    std::string sheet = "contact_sheet.png";
    std::string sheet_split = "train";
    int samples = 12;
  };
  auto o = std::make_shared<Options>();
  o->config.add_to(*stats, false);
  stats->add_option("--sheet", o->sheet, "contact sheet PNG to write ('' for none)")
      ->capture_default_str();
  stats->add_option("--sheet-split", o->sheet_split, "split drawn on the sheet")
      ->capture_default_str();
  stats->add_option("--samples", o->samples, "samples on the sheet")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  return [o, cache, paths]() {
    if (cache->parsed()) {
      const auto vectors = data::GloveVectors::read_text(paths->first);
      vectors.write_cache(paths->second);
      spdlog::info("glove-cache: {} words of {} dimensions from {} -> {}", vectors.size(),
                   vectors.dim(), paths->first, paths->second);
      return 0;
    }
    const Config config = o->config.load();
    apply_runtime(config);
    const auto dataset = data::ReferDataset::load(
        config.text("data.root"), config.text("data.dataset"), config.text("data.split_by"));
    std::vector<std::string> splits = {config.text("data.train_split")};
    for (const auto& s : config.texts("data.eval_splits")) splits.push_back(s);
    const auto tokenizer = data::make_tokenizer_from_config(config, dataset);
    const auto st = data::compute_stats(dataset, splits, tokenizer.get());
    data::print_stats(st, std::cout);
    std::cout << "tokenizer: " << tokenizer->name() << ", vocabulary " << tokenizer->vocab_size()
              << ", max length " << tokenizer->max_length() << "\n";
    if (!o->sheet.empty()) {
      data::write_contact_sheet(dataset, o->sheet_split, o->samples, 0, o->sheet);
      spdlog::info("contact sheet of {} {} samples: {}", o->samples, o->sheet_split, o->sheet);
    }
    return 0;
  };
}

}  // namespace wico::tool
