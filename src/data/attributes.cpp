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

namespace wico::data {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A sentence's words: its tokens when the refs file has them, else the lower-cased raw text cut
// at everything but letters.
std::vector<std::string> words_of(const RefSentence& sentence) {
  if (!sentence.tokens.empty()) {
    std::vector<std::string> out;
    for (const auto& t : sentence.tokens) out.push_back(lower(t));
    return out;
  }
  std::vector<std::string> out;
  std::string word;
  for (char c : sentence.raw + " ") {
    if (std::isalpha(static_cast<unsigned char>(c))) {
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!word.empty()) {
      out.push_back(word);
      word.clear();
    }
  }
  return out;
}

// The attribute words of a ref: lexicon words of any of its sentences.
std::set<std::string> ref_attribute_words(const Ref& ref, const std::set<std::string>& lexicon) {
  std::set<std::string> found;
  for (const auto& sentence : ref.sentences) {
    for (const auto& w : words_of(sentence)) {
      if (lexicon.count(w) != 0) found.insert(w);
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
  for (const Ref* ref : refs) {
    for (const auto& w : ref_attribute_words(*ref, words)) ++mentions[w];
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
  if (words_.empty()) return out;
  const std::set<std::string> vocabulary(words_.begin(), words_.end());
  for (const auto& w : ref_attribute_words(ref, vocabulary)) out.push_back(index_.at(w));
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
