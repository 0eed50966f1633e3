// Fixed word vectors for VLT's text branch (../shared/specs/vlt.md section 2): the original looks
// each whitespace-separated word of refer's `sent` up in spaCy's en_vectors_web_lg (GloVe Common
// Crawl, 300-d) and gives an unknown word a zero vector; the sentence is cut to `length` words
// and padded with zero rows.
//
// Read from the standard GloVe text format (`glove.840B.300d.txt`: one word and its numbers per
// line, separated by single spaces; a handful of its "words" contain spaces themselves, so the
// last `dim` fields are the numbers and everything before them the word) or from the compact
// binary cache `write_cache` makes of it (a 5.6 GB text file parses in minutes, its cache maps in
// well under a second). The first occurrence of a word wins, as in a dict built line by line.
//
// Cache layout (little-endian): "WICOGLV1", u32 dim, u64 count, then count x (u32 byte length,
// the word's bytes), then count x dim float32. Written to path + ".tmp" and renamed.
//
// *Deviation*: spaCy re-tokenises a word (e.g. "man's" -> "man", "'s") and averages the
// sub-tokens' vectors; we look the word up whole (refer's `sent` is already tokenised, so the two
// differ only on such clitics).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "wico/data/tokenizer.h"

namespace wico::data {

class GloveVectors {
 public:
  // The text format; dim 0 takes it from the first line. A malformed line is a wico::Error
  // naming the file, the line number and what was expected.
  static GloveVectors read_text(const std::filesystem::path& path, std::int64_t dim = 0);
  // The binary cache; a corrupt or truncated one is an Error naming the byte offset.
  static GloveVectors read_cache(const std::filesystem::path& path);
  // The cache if `path` is one (by its magic bytes), else the text format.
  static GloveVectors read(const std::filesystem::path& path);
  // read(path), once per process while any holder keeps it: the glove tokenizer and VLT's
  // backend name the same file (text.vocab) and share one copy of its ~1 GB table.
  static std::shared_ptr<const GloveVectors> shared(const std::filesystem::path& path);
  void write_cache(const std::filesystem::path& path) const;

  std::int64_t dim() const { return dim_; }
  std::int64_t size() const { return static_cast<std::int64_t>(words_.size()); }
  bool contains(const std::string& word) const { return index_.count(word) > 0; }
  // The word's vector, zeros for an unknown word (the original's OOV).
  at::Tensor vector(const std::string& word) const;
  // A sentence's words (split on whitespace) -> [length, dim]: the first `length` words' vectors,
  // zero rows after the last word.
  at::Tensor sentence(const std::string& text, std::int64_t length) const;
  const std::vector<std::string>& words() const { return words_; }
  // The word's row, -1 for an unknown word.
  std::int64_t index(const std::string& word) const;
  // Every vector, [size(), dim] float32, viewing this object's memory (no copy): keep the
  // object alive while the tensor is used.
  at::Tensor table() const;

 private:
  void add(std::string word, const float* values);

  std::int64_t dim_ = 0;
  std::vector<std::string> words_;
  std::vector<float> values_;  // size() x dim_
  std::unordered_map<std::string, std::int64_t> index_;
};

// VLT's word input as a tokenizer (text.tokenizer: glove, text.vocab: the vectors file): the
// sentence split on whitespace as Python's str.split() (ASCII whitespace), the first max_length
// words (15 for RefCOCO/RefCOCO+, 20 for RefCOCOg), each id 1 + its row in the vectors file and
// 0 for an unknown word or a pad (both zero vectors in the original); the attention mask marks
// the words, unknown ones included.
class GloveTokenizer : public Tokenizer {
 public:
  static constexpr int kDefaultMaxLength = 15;
  GloveTokenizer(std::shared_ptr<const GloveVectors> vectors, int max_length = kDefaultMaxLength);
  Encoding encode(const std::string& text) const override;
  std::int64_t vocab_size() const override { return vectors_->size() + 1; }
  std::int64_t pad_id() const override { return 0; }
  int max_length() const override { return max_length_; }
  std::string name() const override { return "glove"; }
  const GloveVectors& vectors() const { return *vectors_; }

 private:
  std::shared_ptr<const GloveVectors> vectors_;
  int max_length_;
};

}  // namespace wico::data
