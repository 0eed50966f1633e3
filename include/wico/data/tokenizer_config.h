// Builds the configured tokenizer (text.tokenizer, text.vocab, text.max_length,
// text.min_word_count). An empty text.vocab means the vocabulary shipped in assets/vocab/ for
// wordpiece and clip, and a vocabulary counted from the training split for word.
#pragma once

#include <memory>
#include <string>

namespace wico {
class Config;
}

namespace wico::data {

class ReferDataset;
class Tokenizer;

// The bundled vocabulary file of a tokenizer kind ("" for word).
std::string bundled_vocab(const std::string& kind);

// The vocabulary file `config` names for its tokenizer: text.vocab, or when it is empty the
// bundled one (wordpiece, clip), the word vectors `wico synth` writes beside the data set
// (glove: <data.root>/word_vectors.txt), or "" (word: counted on the training split).
std::string vocab_path(const Config& config);

std::unique_ptr<Tokenizer> make_tokenizer_from_config(const Config& config,
                                                      const ReferDataset& dataset);
// For sub-word tokenizers and word tokenizers with a vocabulary file (no data set needed).
std::unique_ptr<Tokenizer> make_tokenizer_from_config(const Config& config);

}  // namespace wico::data
