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
#include <string>
#include <unordered_map>
#include <vector>

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

 private:
  void add(std::string word, const float* values);

  std::int64_t dim_ = 0;
  std::vector<std::string> words_;
  std::vector<float> values_;  // size() x dim_
  std::unordered_map<std::string, std::int64_t> index_;
};

}  // namespace wico::data
