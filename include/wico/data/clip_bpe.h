// CLIP's byte-level BPE tokenizer (OpenAI CLIP simple_tokenizer.py), as CRIS uses it: ids are
// <|startoftext|> tokens <|endoftext|>, zero-padded to the context length.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "wico/data/tokenizer.h"

namespace wico::data {

class ClipBpe : public Tokenizer {
 public:
  static constexpr int kDefaultMaxLength = 17;  // CRIS: 17 for RefCOCO/+, 22 for RefCOCOg
  static constexpr std::int64_t kStartOfText = 49406;
  static constexpr std::int64_t kEndOfText = 49407;

  // Reads the gzip-compressed merges file (bpe_simple_vocab_16e6.txt.gz). Throws wico::Error
  // naming the file when it cannot be read or is too short, and file:line for a malformed merge.
  explicit ClipBpe(const std::string& merges_path, int max_length = kDefaultMaxLength);

  // As CRIS's tokenize(text, context_length, truncate=True): [sot] bpe [eot]; when longer than
  // max_length, keep the first max_length ids and overwrite the last with eot. Padded with 0.
  Encoding encode(const std::string& text) const override;
  std::int64_t vocab_size() const override { return static_cast<std::int64_t>(vocab_.size()); }
  std::int64_t pad_id() const override { return 0; }
  int max_length() const override { return max_length_; }
  std::string name() const override { return "clip"; }

  // SimpleTokenizer.encode: the BPE ids of `text`, without start/end tokens or truncation.
  std::vector<std::int64_t> tokenize_ids(const std::string& text) const;
  // The BPE tokens (in CLIP's byte-to-unicode alphabet, "</w>" ending a word) behind the ids.
  std::vector<std::string> tokenize(const std::string& text) const;

  // The cleaning and pre-tokenisation steps, exposed for tests: basic_clean + whitespace_clean +
  // lower(), then the words CLIP's regex finds.
  static std::string clean(const std::string& text);
  static std::vector<std::string> pre_tokenize(const std::string& cleaned);

 private:
  // The space-separated BPE of one pre-token already mapped to the byte alphabet.
  const std::vector<std::string>& bpe(const std::string& token) const;

  std::vector<std::string> vocab_;
  std::unordered_map<std::string, std::int64_t> ids_;
  std::unordered_map<std::string, int> ranks_;  // "first second" -> merge rank
  std::string byte_to_unicode_[256];            // UTF-8 of CLIP's printable stand-in per byte
  int max_length_;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<std::string>> cache_;
};

}  // namespace wico::data
