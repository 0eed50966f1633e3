#include "wico/data/tokenizer_config.h"

#include <filesystem>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/data/refer.h"
#include "wico/data/synthetic.h"
#include "wico/data/tokenizer.h"

namespace wico::data {

std::string bundled_vocab(const std::string& kind) {
  const std::filesystem::path assets = WICO_ASSETS_DIR;
  if (kind == "wordpiece") return (assets / "vocab/bert-base-uncased/vocab.txt").string();
  if (kind == "clip") return (assets / "vocab/clip/bpe_simple_vocab_16e6.txt.gz").string();
  return "";
}

std::string vocab_path(const Config& config) {
  const std::string& kind = config.text("text.tokenizer");
  const std::string& named = config.text("text.vocab");
  if (!named.empty()) return named;
  if (kind == "glove") {
    return (std::filesystem::path(config.text("data.root")) / kSyntheticVectorsFile).string();
  }
  return bundled_vocab(kind);
}

namespace {

std::unique_ptr<Tokenizer> make_from_config(const Config& config, const ReferDataset* dataset) {
  const std::string& kind = config.text("text.tokenizer");
  TokenizerOptions options;
  options.vocab_path = vocab_path(config);
  options.max_length = static_cast<int>(config.integer("text.max_length"));
  options.min_count = static_cast<int>(config.integer("text.min_word_count"));
  if (kind == "word" && options.vocab_path.empty()) {
    if (!dataset) {
      throw ConfigError("text.tokenizer word without text.vocab counts its vocabulary on the "
                        "training split; no data set was given");
    }
    // MAttNet and VLT count their vocabulary on the training split only.
    for (const Ref* ref : dataset->refs(config.text("data.train_split"))) {
      for (const auto& s : ref->sentences) options.training_sentences.push_back(s.sent);
    }
  }
  return make_tokenizer(kind, options);
}

}  // namespace

std::unique_ptr<Tokenizer> make_tokenizer_from_config(const Config& config,
                                                      const ReferDataset& dataset) {
  return make_from_config(config, &dataset);
}

std::unique_ptr<Tokenizer> make_tokenizer_from_config(const Config& config) {
  return make_from_config(config, nullptr);
}

}  // namespace wico::data
