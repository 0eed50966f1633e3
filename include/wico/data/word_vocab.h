// A word-level vocabulary counted from training sentences, for LSTM text encoders (MAttNet and
// VLT style): <pad>=0, <unk>=1, then the kept words by decreasing count. Saved with the model so
// that a trained checkpoint keeps its ids.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "wico/data/tokenizer.h"

namespace wico::data {

class WordVocab : public Tokenizer {
 public:
  static constexpr int kDefaultMaxLength = 20;  // MAttNet: 10 for RefCOCO/+, 20 for RefCOCOg
  static constexpr const char* kPad = "<pad>";
  static constexpr const char* kUnk = "<unk>";

  // Counts the words of `sentences` (split_words); a word seen fewer than `min_count` times maps
  // to <unk>. Ids: <pad>=0, <unk>=1, then by decreasing count, ties in byte order.
  static WordVocab build(const std::vector<std::string>& sentences, int min_count,
                         int max_length = kDefaultMaxLength);
  // Reads a file written by save(): one token per line, id = line index, <pad> and <unk> first.
  // Throws wico::Error naming the file (unreadable) or file:line (malformed entry).
  static WordVocab load(const std::string& path, int max_length = kDefaultMaxLength);
  void save(const std::string& path) const;

  // Lower-cases ASCII letters and splits on every byte that is not an ASCII letter or digit;
  // bytes >= 0x80 (UTF-8 sequences) belong to words, so "purée" stays one word. Apostrophes
  // split ("man's" -> "man", "s"), as in the REFER tokens MAttNet counts.
  static std::vector<std::string> split_words(const std::string& text);

  // The word ids, no start/end tokens (MAttNet's encode_captions); truncated to the first
  // max_length words and padded with <pad>.
  Encoding encode(const std::string& text) const override;
  std::int64_t vocab_size() const override { return static_cast<std::int64_t>(words_.size()); }
  std::int64_t pad_id() const override { return 0; }
  int max_length() const override { return max_length_; }
  std::string name() const override { return "word"; }

  std::int64_t id(const std::string& word) const;  // 1 (<unk>) for an unknown word
  const std::vector<std::string>& words() const { return words_; }

 private:
  WordVocab(std::vector<std::string> words, int max_length);

  std::vector<std::string> words_;
  std::unordered_map<std::string, std::int64_t> ids_;
  int max_length_;
};

}  // namespace wico::data
