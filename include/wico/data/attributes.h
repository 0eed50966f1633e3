// MAttNet's attribute vocabulary (tools/prepro.py build_att_vocab, GtMRCNLoader's attribute
// labels and weights). The original takes a ref's attribute words from refer-parser2's parse of
// its sentences (the r1 head noun, r2 colour and r7 generic-attribute fields), drops a fixed list
// of forbidden words, and keeps the top 50 by the number of refs that mention them. We ship no
// parser: a ref's attribute words are the words of its sentences found in a lexicon of attribute
// words (colours, patterns, materials, sizes, ages; `default_attribute_lexicon()` or a file given
// as data.attribute_lexicon, one word per line). The synthetic set's colour words are in it.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

namespace wico::data {

struct Ref;

class AttributeVocabulary {
 public:
  AttributeVocabulary() = default;
  // The `top_k` lexicon words mentioned by the most of `refs` (ties: alphabetical), and each
  // ref's labels among them (the union over its sentences, as the original's ref_to_att_wds).
  static AttributeVocabulary build(const std::vector<const Ref*>& refs, std::size_t top_k,
                                   const std::vector<std::string>& lexicon);

  std::size_t size() const { return words_.size(); }
  bool empty() const { return words_.empty(); }
  const std::vector<std::string>& words() const { return words_; }
  // Refs of the building set that mention each word.
  const std::vector<std::int64_t>& counts() const { return counts_; }
  // Indices of a ref's attribute words (sorted; empty for a ref without any, or not seen when
  // building: evaluation refs are labelled too, by the same lexicon).
  std::vector<std::int64_t> labels(const Ref& ref) const;
  // GtMRCNLoader.get_attribute_weights: w = 1 / sqrt(count), rescaled to [1, scale] (rare words
  // weigh more); all 1 when every count is equal. [size()] float.
  at::Tensor loss_weights(double scale = 10.0) const;

 private:
  std::vector<std::string> words_;
  std::vector<std::int64_t> counts_;
  std::unordered_map<std::string, std::int64_t> index_;
};

// GtMRCNLoader.get_attribute_weights of per-word counts [A] (int64): 1 / sqrt(count) rescaled to
// [1, scale]; all 1 when every count is equal (the original divides by zero there). [A] float.
at::Tensor attribute_loss_weights(const at::Tensor& counts, double scale = 10.0);

// The attribute words a sentence's lower-cased tokens are matched against.
const std::vector<std::string>& default_attribute_lexicon();
// One word per line ('#' starts a comment); throws Error naming the file and line of a line
// that is not a single word.
std::vector<std::string> read_attribute_lexicon(const std::filesystem::path& file);

}  // namespace wico::data
