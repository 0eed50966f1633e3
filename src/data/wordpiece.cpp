// BERT-uncased WordPiece. Semantics follow HuggingFace transformers' BasicTokenizer and
// WordpieceTokenizer (tokenization_bert.py) with do_lower_case=True, tokenize_chinese_chars=True
// and strip_accents unset (so accents are stripped because of lower-casing); LAVT's
// data/dataset_refer_bert.py fixes the encode/truncate/pad steps. Verified against the 46 cases
// of llama.cpp's ggml-vocab-bert-bge test (tests/data/vocab/wordpiece-cases.*).
#include "wico/data/wordpiece.h"

#include <fstream>

#include "wico/core/error.h"

namespace wico::data {

namespace {

// BERT's _is_whitespace: the four ASCII ones and category Zs.
bool is_bert_whitespace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x202F || c == 0x205F || c == 0x3000;
}

// BERT's _is_control: categories C* except \t \n \r. Cc, Cf, Co and Cs are covered; Cn
// (unassigned) is not, as it would need the whole Unicode table.
bool is_bert_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  if (c < 0x20 || (c >= 0x7F && c <= 0x9F)) return true;
  if ((c >= 0xE000 && c <= 0xF8FF) || c >= 0xF0000) return true;  // private use
  return text::is_format(c);
}

// BERT's _is_punctuation: all non-alphanumeric ASCII symbols count (e.g. '$', '^', '`'), plus
// Unicode category P*.
bool is_bert_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
      (c >= 123 && c <= 126)) {
    return true;
  }
  return c >= 0x80 && text::is_punctuation(c);
}

// BERT's _is_chinese_char: the CJK Unified Ideographs blocks (not Japanese kana or Hangul).
bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

}  // namespace

WordPiece::WordPiece(const std::string& vocab_path, int max_length) : max_length_(max_length) {
  if (max_length < 2) {
    throw ConfigError("wordpiece max_length must be at least 2 ([CLS] and [SEP]), got " +
                      std::to_string(max_length));
  }
  std::ifstream in(vocab_path, std::ios::binary);
  if (!in) throw Error("cannot read WordPiece vocabulary '" + vocab_path + "'");
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      throw Error(vocab_path + ":" + std::to_string(line_no) + ": empty vocabulary entry");
    }
    if (!ids_.emplace(line, static_cast<std::int64_t>(vocab_.size())).second) {
      throw Error(vocab_path + ":" + std::to_string(line_no) + ": duplicate entry '" + line +
                  "'");
    }
    vocab_.push_back(line);
  }
  if (in.bad()) throw Error("error while reading WordPiece vocabulary '" + vocab_path + "'");
  for (const auto& [token, slot] :
       {std::pair<const char*, std::int64_t*>{"[PAD]", &pad_id_}, {"[UNK]", &unk_id_},
        {"[CLS]", &cls_id_}, {"[SEP]", &sep_id_}}) {
    auto it = ids_.find(token);
    if (it == ids_.end()) {
      throw Error("WordPiece vocabulary '" + vocab_path + "' has no " + token + " token");
    }
    *slot = it->second;
  }
}

std::vector<std::string> WordPiece::basic_tokenize(const std::string& input) {
  // Clean (drop NUL, U+FFFD and controls; white space -> ' ') and put spaces around CJK
  // ideographs in one pass.
  std::u32string cleaned;
  for (char32_t c : text::decode_utf8(input)) {
    if (c == 0 || c == 0xFFFD || is_bert_control(c)) continue;
    if (is_bert_whitespace(c)) {
      cleaned.push_back(' ');
    } else if (is_cjk(c)) {
      cleaned.push_back(' ');
      cleaned.push_back(c);
      cleaned.push_back(' ');
    } else {
      cleaned.push_back(c);
    }
  }
  // Split on white space (Python's str.split()); lower-case and strip accents each word, then
  // split it on punctuation, each punctuation character becoming a token of its own.
  std::vector<std::string> out;
  std::string current;
  auto flush = [&] {
    if (!current.empty()) out.push_back(std::move(current));
    current.clear();
  };
  for (char32_t c : cleaned) {
    if (text::is_space(c)) {
      flush();
      continue;
    }
    c = text::to_lower(c);
    if (text::is_nonspacing_mark(c)) continue;
    c = text::strip_accent(c);
    if (is_bert_punctuation(c)) {
      flush();
      text::append_utf8(current, c);
      flush();
    } else {
      text::append_utf8(current, c);
    }
  }
  flush();
  return out;
}

void WordPiece::split_word(const std::string& word, std::vector<std::string>& out) const {
  const std::u32string chars = text::decode_utf8(word);
  if (chars.size() > static_cast<std::size_t>(kMaxCharsPerWord)) {
    out.push_back(vocab_[static_cast<std::size_t>(unk_id_)]);
    return;
  }
  // Greedy longest match first; if any position has no match the whole word is [UNK].
  std::vector<std::string> pieces;
  std::size_t start = 0;
  while (start < chars.size()) {
    std::size_t end = chars.size();
    std::string found;
    while (end > start) {
      std::string candidate = start > 0 ? "##" : "";
      candidate += text::encode_utf8(chars.substr(start, end - start));
      if (ids_.count(candidate)) {
        found = std::move(candidate);
        break;
      }
      --end;
    }
    if (found.empty()) {
      out.push_back(vocab_[static_cast<std::size_t>(unk_id_)]);
      return;
    }
    pieces.push_back(std::move(found));
    start = end;
  }
  for (auto& p : pieces) out.push_back(std::move(p));
}

std::vector<std::string> WordPiece::tokenize(const std::string& text) const {
  std::vector<std::string> out;
  for (const std::string& word : basic_tokenize(text)) split_word(word, out);
  return out;
}

std::vector<std::int64_t> WordPiece::tokenize_ids(const std::string& text) const {
  std::vector<std::int64_t> ids;
  for (const std::string& token : tokenize(text)) ids.push_back(id(token));
  return ids;
}

std::int64_t WordPiece::id(const std::string& token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? unk_id_ : it->second;
}

Encoding WordPiece::encode(const std::string& text) const {
  std::vector<std::string> tokens;
  tokens.push_back(vocab_[static_cast<std::size_t>(cls_id_)]);
  for (auto& t : tokenize(text)) tokens.push_back(std::move(t));
  tokens.push_back(vocab_[static_cast<std::size_t>(sep_id_)]);
  // LAVT: input_ids = tokenizer.encode(sentence, add_special_tokens=True)[:max_tokens].
  if (tokens.size() > static_cast<std::size_t>(max_length_)) {
    tokens.resize(static_cast<std::size_t>(max_length_));
  }
  std::vector<std::int64_t> ids;
  for (const auto& t : tokens) ids.push_back(id(t));
  return pad_encoding(std::move(ids), std::move(tokens), max_length_, pad_id_);
}

}  // namespace wico::data
