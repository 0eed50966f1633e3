// Word vocabulary for LSTM text encoders. Follows MAttNet's tools/prepro.py (lichengunc/MAttNet):
// count words over the training sentences, rare words become UNK, PAD is id 0, sentences are
// encoded without BOS/EOS (MAttNet adds <BOS>/<EOS> to its vocabulary only for its speaker
// model, which we do not have) and truncated to the first max_length words. Two deliberate
// differences: the threshold is a minimum count (MAttNet keeps words with count > 5, i.e.
// min_count 6) and <unk> always has id 1, so ids do not depend on whether any word was rare.
#include "wico/data/word_vocab.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <utility>

#include "wico/core/error.h"

namespace wico::data {

WordVocab::WordVocab(std::vector<std::string> words, int max_length)
    : words_(std::move(words)), max_length_(max_length) {
  if (max_length < 1) {
    throw ConfigError("word vocabulary max_length must be positive, got " +
                      std::to_string(max_length));
  }
  for (std::size_t i = 0; i < words_.size(); ++i) {
    ids_.emplace(words_[i], static_cast<std::int64_t>(i));
  }
}

std::vector<std::string> WordVocab::split_words(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80) {
      current.push_back(ch);
    } else if (c >= 'A' && c <= 'Z') {
      current.push_back(static_cast<char>(c + 32));
    } else if (!current.empty()) {
      out.push_back(std::move(current));
      current.clear();
    }
  }
  if (!current.empty()) out.push_back(std::move(current));
  return out;
}

WordVocab WordVocab::build(const std::vector<std::string>& sentences, int min_count,
                           int max_length) {
  if (min_count < 1) {
    throw ConfigError("word vocabulary min_count must be at least 1, got " +
                      std::to_string(min_count));
  }
  std::map<std::string, std::int64_t> counts;
  for (const auto& s : sentences) {
    for (auto& w : split_words(s)) ++counts[w];
  }
  std::vector<std::pair<std::string, std::int64_t>> kept;
  for (const auto& [w, n] : counts) {
    if (n >= min_count && w != kPad && w != kUnk) kept.emplace_back(w, n);
  }
  // Stable on the map's byte order, so ties keep that order: ids are reproducible.
  std::stable_sort(kept.begin(), kept.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::vector<std::string> words{kPad, kUnk};
  for (auto& [w, n] : kept) words.push_back(std::move(w));
  return WordVocab(std::move(words), max_length);
}

WordVocab WordVocab::load(const std::string& path, int max_length) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read word vocabulary '" + path + "'");
  std::vector<std::string> words;
  std::unordered_map<std::string, int> seen;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto where = path + ":" + std::to_string(line_no) + ": ";
    if (line.empty()) throw Error(where + "empty vocabulary entry");
    if (line.find_first_of(" \t") != std::string::npos) {
      throw Error(where + "entry '" + line + "' contains white space");
    }
    if (!seen.emplace(line, line_no).second) {
      throw Error(where + "duplicate entry '" + line + "' (first on line " +
                  std::to_string(seen[line]) + ")");
    }
    if (line_no == 1 && line != kPad) throw Error(where + "expected " + kPad + ", got " + line);
    if (line_no == 2 && line != kUnk) throw Error(where + "expected " + kUnk + ", got " + line);
    words.push_back(line);
  }
  if (in.bad()) throw Error("error while reading word vocabulary '" + path + "'");
  if (words.size() < 2) throw Error("word vocabulary '" + path + "' lacks <pad> and <unk>");
  return WordVocab(std::move(words), max_length);
}

void WordVocab::save(const std::string& path) const {
  std::string content;
  for (const auto& w : words_) content += w + "\n";
  // Write a temporary and rename it, so a failed save never damages an existing vocabulary.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("cannot write word vocabulary '" + path + "'");
    out << content;
    out.flush();
    if (!out) throw Error("cannot write word vocabulary '" + path + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error("cannot write word vocabulary '" + path + "'");
  }
}

std::int64_t WordVocab::id(const std::string& word) const {
  auto it = ids_.find(word);
  return it == ids_.end() ? 1 : it->second;
}

Encoding WordVocab::encode(const std::string& text) const {
  std::vector<std::string> tokens = split_words(text);
  if (tokens.size() > static_cast<std::size_t>(max_length_)) {
    tokens.resize(static_cast<std::size_t>(max_length_));
  }
  std::vector<std::int64_t> ids;
  for (auto& t : tokens) {
    ids.push_back(id(t));
    if (ids.back() == 1) t = kUnk;  // tokens show what the model sees
  }
  return pad_encoding(std::move(ids), std::move(tokens), max_length_, pad_id());
}

}  // namespace wico::data
