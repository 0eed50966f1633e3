#include "wico/data/glove.h"

#include <ATen/ATen.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <utility>

#include "wico/core/error.h"

namespace wico::data {

namespace {

constexpr char kMagic[8] = {'W', 'I', 'C', 'O', 'G', 'L', 'V', '1'};

// Fields separated by single spaces, as GloVe writes them (a trailing space or \r is dropped).
std::vector<std::string> split_spaces(const std::string& line) {
  std::vector<std::string> fields;
  std::size_t start = 0;
  std::size_t end = line.size();
  while (end > 0 && (line[end - 1] == ' ' || line[end - 1] == '\r')) --end;
  while (start <= end) {
    const std::size_t space = line.find(' ', start);
    if (space == std::string::npos || space >= end) {
      fields.push_back(line.substr(start, end - start));
      break;
    }
    fields.push_back(line.substr(start, space - start));
    start = space + 1;
  }
  return fields;
}

}  // namespace

void GloveVectors::add(std::string word, const float* values) {
  if (index_.count(word)) return;  // the first occurrence wins
  index_.emplace(word, static_cast<std::int64_t>(words_.size()));
  words_.push_back(std::move(word));
  values_.insert(values_.end(), values, values + dim_);
}

GloveVectors GloveVectors::read_text(const std::filesystem::path& path, std::int64_t dim) {
  std::ifstream in(path);
  if (!in) throw Error(detail::concat("cannot open word vectors ", path.string()));
  GloveVectors out;
  out.dim_ = dim;
  std::string line;
  std::vector<float> row;
  std::int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line == "\r") continue;
    const std::vector<std::string> fields = split_spaces(line);
    auto fail = [&](const std::string& what) {
      throw Error(detail::concat(path.string(), ":", number, ": ", what));
    };
    if (out.dim_ == 0) {
      if (fields.size() < 2) fail("expected a word and its numbers, found one field");
      out.dim_ = static_cast<std::int64_t>(fields.size()) - 1;
    }
    const auto numbers = static_cast<std::size_t>(out.dim_);
    if (fields.size() < numbers + 1) {
      fail(detail::concat("expected a word and ", numbers, " numbers, found ", fields.size(),
                          " fields"));
    }
    // The word is everything before the last dim fields (glove.840B has words with spaces).
    std::string word = fields[0];
    for (std::size_t i = 1; i + numbers < fields.size(); ++i) word += " " + fields[i];
    row.resize(numbers);
    for (std::size_t i = 0; i < numbers; ++i) {
      const std::string& field = fields[fields.size() - numbers + i];
      char* end = nullptr;
      errno = 0;
      row[i] = std::strtof(field.c_str(), &end);
      if (field.empty() || end != field.c_str() + field.size() || errno == ERANGE) {
        fail(detail::concat("number ", i + 1, " of '", word, "' is '", field, "', not a float"));
      }
    }
    out.add(std::move(word), row.data());
  }
  if (out.words_.empty()) throw Error(detail::concat(path.string(), ": no word vectors"));
  return out;
}

GloveVectors GloveVectors::read_cache(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(detail::concat("cannot open word vectors ", path.string()));
  std::error_code ec;
  const std::uint64_t file_size = std::filesystem::file_size(path, ec);
  std::uint64_t offset = 0;
  auto fits = [&](std::uint64_t bytes, const std::string& what) {
    if (bytes > file_size - std::min(offset, file_size)) {
      throw Error(detail::concat("malformed word-vector cache ", path.string(), " at byte offset ",
                                 offset, ": ", what, " (", bytes, " bytes) runs past the end of "
                                 "the file (", file_size, " bytes)"));
    }
  };
  // Every size read from the file is checked against what is left of it before it is used.
  auto read = [&](void* into, std::uint64_t bytes, const std::string& what) {
    fits(bytes, what);
    in.read(static_cast<char*>(into), static_cast<std::streamsize>(bytes));
    offset += bytes;
  };
  char magic[8];
  read(magic, 8, "the magic bytes");
  if (std::memcmp(magic, kMagic, 8) != 0) {
    throw Error(detail::concat("malformed word-vector cache ", path.string(),
                               " at byte offset 0: expected the magic bytes WICOGLV1"));
  }
  std::uint32_t dim = 0;
  std::uint64_t count = 0;
  read(&dim, 4, "the dimension");
  read(&count, 8, "the word count");
  if (dim == 0 || count == 0 || count > file_size / 4) {
    throw Error(detail::concat("malformed word-vector cache ", path.string(), " at byte offset 8: ",
                               count, " words of dimension ", dim, " in a file of ", file_size,
                               " bytes"));
  }
  GloveVectors out;
  out.dim_ = dim;
  std::vector<std::string> words(count);
  for (auto& word : words) {
    std::uint32_t length = 0;
    read(&length, 4, "a word's length");
    fits(length, "a word");
    word.resize(length);
    read(word.data(), length, "a word");
  }
  if (dim > (file_size - offset) / 4 / count) {
    throw Error(detail::concat("malformed word-vector cache ", path.string(), " at byte offset ",
                               offset, ": ", count, " vectors of dimension ", dim,
                               " run past the end of the file (", file_size, " bytes)"));
  }
  const std::uint64_t values = count * dim;
  out.values_.resize(values);
  read(out.values_.data(), values * 4, "the vectors");
  out.words_.reserve(count);
  for (auto& word : words) {
    if (!out.index_.emplace(word, static_cast<std::int64_t>(out.words_.size())).second) {
      throw Error(detail::concat("malformed word-vector cache ", path.string(), ": the word '",
                                 word, "' appears twice"));
    }
    out.words_.push_back(std::move(word));
  }
  return out;
}

GloveVectors GloveVectors::read(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  if (in.gcount() == 8 && std::memcmp(magic, kMagic, 8) == 0) return read_cache(path);
  return read_text(path);
}

void GloveVectors::write_cache(const std::filesystem::path& path) const {
  const std::filesystem::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(detail::concat("cannot write ", temporary.string()));
    const auto dim = static_cast<std::uint32_t>(dim_);
    const auto count = static_cast<std::uint64_t>(words_.size());
    out.write(kMagic, 8);
    out.write(reinterpret_cast<const char*>(&dim), 4);
    out.write(reinterpret_cast<const char*>(&count), 8);
    for (const auto& word : words_) {
      const auto length = static_cast<std::uint32_t>(word.size());
      out.write(reinterpret_cast<const char*>(&length), 4);
      out.write(word.data(), static_cast<std::streamsize>(word.size()));
    }
    out.write(reinterpret_cast<const char*>(values_.data()),
              static_cast<std::streamsize>(values_.size() * sizeof(float)));
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(temporary, ignored);
      throw Error(detail::concat("cannot write ", temporary.string(), " (disk full?)"));
    }
  }
  std::filesystem::rename(temporary, path);
}

at::Tensor GloveVectors::vector(const std::string& word) const {
  const auto it = index_.find(word);
  if (it == index_.end()) return at::zeros({dim_});
  return at::from_blob(const_cast<float*>(values_.data() + it->second * dim_), {dim_},
                       at::kFloat)
      .clone();
}

at::Tensor GloveVectors::sentence(const std::string& text, std::int64_t length) const {
  WICO_CHECK(length > 0, "a sentence needs a positive length, got ", length);
  at::Tensor out = at::zeros({length, dim_});
  std::istringstream words(text);
  std::string word;
  for (std::int64_t i = 0; i < length && words >> word; ++i) {
    const auto it = index_.find(word);
    if (it == index_.end()) continue;  // unknown: a zero row, as the original's OOV
    out[i].copy_(at::from_blob(const_cast<float*>(values_.data() + it->second * dim_), {dim_},
                               at::kFloat));
  }
  return out;
}

std::int64_t GloveVectors::index(const std::string& word) const {
  const auto it = index_.find(word);
  return it == index_.end() ? -1 : it->second;
}

at::Tensor GloveVectors::table() const {
  return at::from_blob(const_cast<float*>(values_.data()), {size(), dim_}, at::kFloat);
}

std::shared_ptr<const GloveVectors> GloveVectors::shared(const std::filesystem::path& path) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<const GloveVectors>> cache;
  std::error_code error;
  std::filesystem::path key = std::filesystem::canonical(path, error);
  if (error) key = path;  // read() names the missing file
  const std::lock_guard<std::mutex> lock(mutex);
  if (auto held = cache[key.string()].lock()) return held;
  auto vectors = std::make_shared<const GloveVectors>(read(path));
  cache[key.string()] = vectors;
  return vectors;
}

GloveTokenizer::GloveTokenizer(std::shared_ptr<const GloveVectors> vectors, int max_length)
    : vectors_(std::move(vectors)), max_length_(max_length) {
  WICO_CHECK(vectors_ != nullptr && max_length_ > 0,
             "the glove tokenizer needs vectors and a positive max_length");
}

Encoding GloveTokenizer::encode(const std::string& text) const {
  std::vector<std::int64_t> ids;
  std::vector<std::string> tokens;
  std::istringstream words(text);
  std::string word;
  while (static_cast<int>(ids.size()) < max_length_ && words >> word) {
    ids.push_back(vectors_->index(word) + 1);
    tokens.push_back(word);
  }
  return pad_encoding(std::move(ids), std::move(tokens), max_length_, pad_id());
}

}  // namespace wico::data
