// BERT-uncased WordPiece, as HuggingFace's BertTokenizer(do_lower_case=True) and LAVT use it:
// BasicTokenizer (clean, split CJK, lower-case, strip accents, split on white space and
// punctuation) then greedy longest-match-first WordPiece with "##" continuations.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "wico/data/tokenizer.h"

namespace wico::data {

class WordPiece : public Tokenizer {
 public:
  static constexpr int kDefaultMaxLength = 20;   // LAVT's max_tokens
  static constexpr int kMaxCharsPerWord = 100;   // longer words become [UNK], as in BERT

  // Reads a standard vocab.txt (one token per line, id = line index). Throws wico::Error naming
  // the file when it cannot be read, and file:line for an empty or duplicate entry.
  explicit WordPiece(const std::string& vocab_path, int max_length = kDefaultMaxLength);

  // [CLS] tokens [SEP], then truncated as LAVT does (keep the first max_length ids, so a long
  // sentence loses its [SEP]) and padded with [PAD].
  Encoding encode(const std::string& text) const override;
  std::int64_t vocab_size() const override { return static_cast<std::int64_t>(vocab_.size()); }
  std::int64_t pad_id() const override { return pad_id_; }
  int max_length() const override { return max_length_; }
  std::string name() const override { return "wordpiece"; }

  // The word pieces of `text`, without [CLS]/[SEP] and without truncation.
  std::vector<std::string> tokenize(const std::string& text) const;
  std::vector<std::int64_t> tokenize_ids(const std::string& text) const;

  // BasicTokenizer alone: the words WordPiece then splits.
  static std::vector<std::string> basic_tokenize(const std::string& text);

  std::int64_t id(const std::string& token) const;  // [UNK]'s id for an unknown token
  std::int64_t unk_id() const { return unk_id_; }
  std::int64_t cls_id() const { return cls_id_; }
  std::int64_t sep_id() const { return sep_id_; }

 private:
  void split_word(const std::string& word, std::vector<std::string>& out) const;

  std::vector<std::string> vocab_;
  std::unordered_map<std::string, std::int64_t> ids_;
  int max_length_;
  std::int64_t pad_id_ = 0, unk_id_ = 0, cls_id_ = 0, sep_id_ = 0;
};

}  // namespace wico::data
