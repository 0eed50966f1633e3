#include "wico/data/attributes.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include "wico/core/error.h"
#include "wico/data/refer.h"
#include "wico/data/word_vocab.h"

namespace wico::data {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A sentence's words: its tokens when the refs file has them, else the raw text split as the
// MAttNet word vocabulary splits it.
std::vector<std::string> words_of(const RefSentence& sentence) {
  if (sentence.tokens.empty()) return WordVocab::split_words(sentence.raw);
  std::vector<std::string> out;
  for (const auto& t : sentence.tokens) out.push_back(lower(t));
  return out;
}

// The attribute words of a ref: the words of any of its sentences that `is_attribute` admits.
template <typename IsAttribute>
std::set<std::string> ref_attribute_words(const Ref& ref, IsAttribute is_attribute) {
  std::set<std::string> found;
  for (const auto& sentence : ref.sentences) {
    for (const auto& w : words_of(sentence)) {
      if (is_attribute(w)) found.insert(w);
    }
  }
  return found;
}

}  // namespace

AttributeVocabulary AttributeVocabulary::build(const std::vector<const Ref*>& refs,
                                               std::size_t top_k,
                                               const std::vector<std::string>& lexicon) {
  const std::set<std::string> words(lexicon.begin(), lexicon.end());
  std::map<std::string, std::int64_t> mentions;
  const auto in_lexicon = [&](const std::string& w) { return words.count(w) != 0; };
  for (const Ref* ref : refs) {
    for (const auto& w : ref_attribute_words(*ref, in_lexicon)) ++mentions[w];
  }
  std::vector<std::pair<std::string, std::int64_t>> ranked(mentions.begin(), mentions.end());
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  if (ranked.size() > top_k) ranked.resize(top_k);
  AttributeVocabulary v;
  for (const auto& [word, count] : ranked) {
    v.index_.emplace(word, static_cast<std::int64_t>(v.words_.size()));
    v.words_.push_back(word);
    v.counts_.push_back(count);
  }
  return v;
}

std::vector<std::int64_t> AttributeVocabulary::labels(const Ref& ref) const {
  std::vector<std::int64_t> out;
  const auto in_vocabulary = [&](const std::string& w) { return index_.count(w) != 0; };
  for (const auto& w : ref_attribute_words(ref, in_vocabulary)) out.push_back(index_.at(w));
  std::sort(out.begin(), out.end());
  return out;
}

at::Tensor AttributeVocabulary::loss_weights(double scale) const {
  return attribute_loss_weights(at::tensor(counts_, at::TensorOptions().dtype(at::kLong)), scale);
}

at::Tensor attribute_loss_weights(const at::Tensor& counts, double scale) {
  WICO_CHECK(counts.dim() == 1, "attribute counts must be [A], got ", counts.sizes());
  const std::int64_t n = counts.size(0);
  if (n == 0) return at::empty({0}, at::kFloat);
  WICO_CHECK(counts.min().item<std::int64_t>() > 0, "attribute counts must be positive");
  const at::Tensor w = counts.to(at::kDouble).rsqrt();
  const double lo = w.min().item<double>(), hi = w.max().item<double>();
  if (hi - lo <= 0.0) return at::ones({n}, at::kFloat);
  return ((w - lo) / (hi - lo) * (scale - 1.0) + 1.0).to(at::kFloat);
}

const std::vector<std::string>& default_attribute_lexicon() {
  // Colour, pattern, material, size and age words: the closed classes of refer-parser2's r2
  // (colour) and the visual part of r7 (generic attributes). The original's forbidden words
  // ("light", "bottom", "middle", ...) are not in it.
  static const std::vector<std::string> words = {
      // colours
      "white", "black", "blue", "red", "green", "yellow", "brown", "gray", "grey", "orange",
      "pink", "purple", "tan", "beige", "silver", "gold", "golden", "dark", "navy", "maroon",
      "blond", "blonde", "cream", "teal", "violet",
      // patterns
      "striped", "stripes", "plaid", "checkered", "spotted", "dotted", "floral", "patterned",
      // materials
      "wooden", "wood", "metal", "glass", "plastic", "leather", "denim",
      // size and shape
      "big", "large", "small", "little", "tall", "short", "long", "huge", "tiny", "bigger",
      "smaller", "larger", "biggest", "smallest", "largest", "tallest", "shortest", "round",
      // age and state
      "young", "old", "baby", "adult", "empty", "full", "open", "closed", "wet", "bald"};
  return words;
}

std::vector<std::string> read_attribute_lexicon(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw Error("cannot read the attribute lexicon '" + file.string() + "'");
  std::vector<std::string> words;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos) continue;
    const auto last = line.find_last_not_of(" \t\r");
    const std::string word = lower(line.substr(first, last - first + 1));
    if (word.find_first_of(" \t") != std::string::npos) {
      throw Error(file.string() + ":" + std::to_string(number) +
                  ": expected one attribute word per line, got '" + word + "'");
    }
    words.push_back(word);
  }
  if (words.empty()) throw Error("the attribute lexicon '" + file.string() + "' has no words");
  return words;
}

}  // namespace wico::data
