// CLIP byte-level BPE. Semantics follow OpenAI CLIP's clip/simple_tokenizer.py (the copy CRIS
// ships in utils/simple_tokenizer.py) and CRIS's tokenize(..., truncate=True) in utils/dataset.py.
// Differences, by necessity: ftfy.fix_text is not available (its mojibake repair is skipped);
// html.unescape knows the common named entities and numeric references only.
#include "wico/data/clip_bpe.h"

#include <zlib.h>

#include <algorithm>

#include <climits>
#include <cstdlib>
#include <utility>

#include "wico/core/error.h"

namespace wico::data {

namespace {

// The merges CLIP keeps: lines 1 .. 49152-256-2 of the file (line 0 is a version header).
constexpr int kMergeCount = 49152 - 256 - 2;

// Reads the lines the tokenizer uses (the version header and kMergeCount merges) and no more:
// CLIP's file decompresses to 1.4 MB, and a crafted one of a few KB could decompress to
// gigabytes. More than 16 MB before those lines is an error.
std::string read_gzip(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw Error("cannot open CLIP BPE merges file '" + path + "'");
  constexpr std::size_t kMaxBytes = std::size_t{16} << 20;
  std::string content;
  std::size_t lines = 0;
  char buffer[1 << 16];
  while (lines <= static_cast<std::size_t>(kMergeCount)) {
    if (content.size() > kMaxBytes) {
      gzclose(file);
      throw Error("CLIP BPE merges file '" + path + "' decompresses to more than 16 MB before its " +
                  std::to_string(kMergeCount + 1) + "th line (CLIP's whole file is 1.4 MB)");
    }
    const int n = gzread(file, buffer, sizeof(buffer));
    if (n < 0) {
      int code = 0;
      const std::string why = gzerror(file, &code);
      gzclose(file);
      throw Error("cannot read CLIP BPE merges file '" + path + "': " + why);
    }
    if (n == 0) break;
    content.append(buffer, static_cast<std::size_t>(n));
    lines += static_cast<std::size_t>(std::count(buffer, buffer + n, '\n'));
  }
  gzclose(file);
  return content;
}

// CLIP's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68 bytes
// map to U+0100 onwards in byte order. Returned in CLIP's order (printable ones first), which is
// also the order of the first 256 vocabulary entries.
std::vector<std::pair<int, char32_t>> bytes_to_unicode() {
  std::vector<std::pair<int, char32_t>> table;
  auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  for (int b = 0; b < 256; ++b) {
    if (printable(b)) table.emplace_back(b, static_cast<char32_t>(b));
  }
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    if (!printable(b)) table.emplace_back(b, next++);
  }
  return table;
}

// Python's str.strip(): white space at both ends.
std::u32string strip(const std::u32string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && text::is_space(s[b])) ++b;
  while (e > b && text::is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// One pass of html.unescape for the entities referring expressions plausibly contain:
// &amp; &lt; &gt; &quot; &apos; &nbsp; and &#N; / &#xH;. Anything else is left as is.
std::u32string html_unescape(const std::u32string& s) {
  static const std::pair<const char*, char32_t> kNamed[] = {
      {"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''},
      {"nbsp;", 0xA0}, {"#39;", '\''}};
  std::u32string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out.push_back(s[i]);
      continue;
    }
    bool replaced = false;
    for (const auto& [name, value] : kNamed) {
      const std::string n = name;
      if (s.compare(i + 1, n.size(), std::u32string(n.begin(), n.end())) == 0) {
        out.push_back(value);
        i += n.size();
        replaced = true;
        break;
      }
    }
    if (!replaced && i + 2 < s.size() && s[i + 1] == '#') {
      const bool hex = s[i + 2] == 'x' || s[i + 2] == 'X';
      std::size_t j = i + (hex ? 3 : 2);
      std::string digits;
      while (j < s.size() && digits.size() < 8 &&
             ((s[j] >= '0' && s[j] <= '9') ||
              (hex && ((s[j] >= 'a' && s[j] <= 'f') || (s[j] >= 'A' && s[j] <= 'F'))))) {
        digits.push_back(static_cast<char>(s[j++]));
      }
      if (!digits.empty() && j < s.size() && s[j] == ';') {
        const unsigned long v = std::strtoul(digits.c_str(), nullptr, hex ? 16 : 10);
        if (v > 0 && v <= 0x10FFFF && !(v >= 0xD800 && v <= 0xDFFF)) {
          out.push_back(static_cast<char32_t>(v));
          i = j;
          replaced = true;
        }
      }
    }
    if (!replaced) out.push_back('&');
  }
  return out;
}

bool starts_with(const std::u32string& s, std::size_t at, const char* ascii) {
  for (std::size_t k = 0; ascii[k] != '\0'; ++k) {
    if (at + k >= s.size() || s[at + k] != static_cast<char32_t>(ascii[k])) return false;
  }
  return true;
}

}  // namespace

ClipBpe::ClipBpe(const std::string& merges_path, int max_length) : max_length_(max_length) {
  if (max_length < 2) {
    throw ConfigError("clip max_length must be at least 2 (start and end tokens), got " +
                      std::to_string(max_length));
  }
  const std::string content = read_gzip(merges_path);

  const auto table = bytes_to_unicode();
  for (const auto& [byte, c] : table) {
    std::string utf8;
    text::append_utf8(utf8, c);
    byte_to_unicode_[byte] = utf8;
    vocab_.push_back(utf8);
  }
  for (int i = 0; i < 256; ++i) vocab_.push_back(vocab_[static_cast<std::size_t>(i)] + "</w>");

  // Merge i (0-based) is on line i+1 (0-based), i.e. file line i+2 when counting from 1.
  std::size_t pos = content.find('\n');
  for (int i = 0; i < kMergeCount; ++i) {
    const int line_no = i + 2;
    if (pos == std::string::npos) {
      throw Error("CLIP BPE merges file '" + merges_path + "' ends at line " +
                  std::to_string(line_no - 1) + "; expected " + std::to_string(kMergeCount) +
                  " merges");
    }
    const std::size_t begin = pos + 1;
    const std::size_t end = content.find('\n', begin);
    pos = end;
    std::string line =
        content.substr(begin, (end == std::string::npos ? content.size() : end) - begin);
    const std::size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 >= line.size() ||
        line.find(' ', space + 1) != std::string::npos) {
      throw Error(merges_path + ":" + std::to_string(line_no) +
                  ": expected two symbols separated by one space, got '" + line + "'");
    }
    vocab_.push_back(line.substr(0, space) + line.substr(space + 1));
    ranks_.emplace(std::move(line), i);
  }
  vocab_.push_back("<|startoftext|>");
  vocab_.push_back("<|endoftext|>");
  for (std::size_t i = 0; i < vocab_.size(); ++i) {
    // Later duplicates win, as in CLIP's dict(zip(vocab, range(len(vocab)))).
    ids_[vocab_[i]] = static_cast<std::int64_t>(i);
  }
  WICO_CHECK(ids_.at("<|endoftext|>") == kEndOfText, "unexpected CLIP vocabulary size ",
             vocab_.size(), " from '", merges_path, "'");
}

std::string ClipBpe::clean(const std::string& input) {
  // basic_clean: (ftfy.fix_text skipped) html.unescape twice, strip.
  std::u32string s = strip(html_unescape(html_unescape(text::decode_utf8(input))));
  // whitespace_clean: runs of white space -> one space, strip; then lower().
  std::u32string out;
  bool in_space = false;
  for (char32_t c : s) {
    if (text::is_space(c)) {
      in_space = true;
      continue;
    }
    if (in_space && !out.empty()) out.push_back(' ');
    in_space = false;
    out.push_back(text::to_lower(c));
  }
  return text::encode_utf8(out);
}

std::vector<std::string> ClipBpe::pre_tokenize(const std::string& cleaned) {
  // CLIP's pattern, tried in this order at each position:
  //   <|startoftext|> | <|endoftext|> | 's|'t|'re|'ve|'m|'ll|'d | \p{L}+ | \p{N} | [^\s\p{L}\p{N}]+
  // White space between matches is skipped. The last alternative is greedy, so it runs over an
  // apostrophe that a contraction would have matched later ("''s" -> "''", "s").
  const std::u32string s = text::decode_utf8(cleaned);
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    const char32_t c = s[i];
    std::size_t end = i;
    if (starts_with(s, i, "<|startoftext|>")) {
      end = i + 15;
    } else if (starts_with(s, i, "<|endoftext|>")) {
      end = i + 13;
    } else if (c == '\'' && (starts_with(s, i, "'re") || starts_with(s, i, "'ve") ||
                             starts_with(s, i, "'ll"))) {
      end = i + 3;
    } else if (c == '\'' && (starts_with(s, i, "'s") || starts_with(s, i, "'t") ||
                             starts_with(s, i, "'m") || starts_with(s, i, "'d"))) {
      end = i + 2;
    } else if (text::is_letter(c)) {
      while (end < s.size() && text::is_letter(s[end])) ++end;
    } else if (text::is_number(c)) {
      end = i + 1;
    } else if (text::is_space(c)) {
      ++i;
      continue;
    } else {
      while (end < s.size() && !text::is_space(s[end]) && !text::is_letter(s[end]) &&
             !text::is_number(s[end])) {
        ++end;
      }
    }
    out.push_back(text::encode_utf8(s.substr(i, end - i)));
    i = end;
  }
  return out;
}

const std::vector<std::string>& ClipBpe::bpe(const std::string& token) const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(token);
    if (it != cache_.end()) return it->second;
  }
  std::vector<std::string> word;
  if (token == "<|startoftext|>" || token == "<|endoftext|>") {
    word.push_back(token);
  } else {
    // One symbol per character of the byte alphabet; the last one carries "</w>".
    const std::u32string chars = text::decode_utf8(token);
    for (char32_t c : chars) {
      std::string sym;
      text::append_utf8(sym, c);
      word.push_back(std::move(sym));
    }
    if (!word.empty()) word.back() += "</w>";
    // Repeatedly merge the adjacent pair of lowest rank, all its occurrences left to right.
    while (word.size() > 1) {
      int best_rank = INT_MAX;
      std::string best;
      for (std::size_t k = 0; k + 1 < word.size(); ++k) {
        auto it = ranks_.find(word[k] + " " + word[k + 1]);
        if (it != ranks_.end() && it->second < best_rank) {
          best_rank = it->second;
          best = it->first;
        }
      }
      if (best_rank == INT_MAX) break;
      const std::size_t space = best.find(' ');
      const std::string first = best.substr(0, space), second = best.substr(space + 1);
      std::vector<std::string> merged;
      for (std::size_t k = 0; k < word.size(); ++k) {
        if (k + 1 < word.size() && word[k] == first && word[k + 1] == second) {
          merged.push_back(first + second);
          ++k;
        } else {
          merged.push_back(std::move(word[k]));
        }
      }
      word = std::move(merged);
    }
  }
  std::lock_guard<std::mutex> lock(cache_mutex_);
  return cache_.emplace(token, std::move(word)).first->second;
}

std::vector<std::string> ClipBpe::tokenize(const std::string& input) const {
  std::vector<std::string> out;
  for (const std::string& piece : pre_tokenize(clean(input))) {
    std::string mapped;
    if (piece == "<|startoftext|>" || piece == "<|endoftext|>") {
      mapped = piece;
    } else {
      for (unsigned char b : piece) mapped += byte_to_unicode_[b];
    }
    for (const std::string& t : bpe(mapped)) out.push_back(t);
  }
  return out;
}

std::vector<std::int64_t> ClipBpe::tokenize_ids(const std::string& input) const {
  std::vector<std::int64_t> ids;
  for (const std::string& t : tokenize(input)) {
    // Every BPE symbol is in the vocabulary: single bytes are, and merges add their results.
    ids.push_back(ids_.at(t));
  }
  return ids;
}

Encoding ClipBpe::encode(const std::string& input) const {
  std::vector<std::string> tokens{"<|startoftext|>"};
  for (auto& t : tokenize(input)) tokens.push_back(std::move(t));
  tokens.push_back("<|endoftext|>");
  if (tokens.size() > static_cast<std::size_t>(max_length_)) {
    tokens.resize(static_cast<std::size_t>(max_length_));
    tokens.back() = "<|endoftext|>";
  }
  std::vector<std::int64_t> ids;
  for (const auto& t : tokens) ids.push_back(ids_.at(t));
  return pad_encoding(std::move(ids), std::move(tokens), max_length_, pad_id());
}

}  // namespace wico::data
