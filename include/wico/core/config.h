// A resolved run configuration: YAML files with `_base_` inheritance plus `--set key=value`
// overrides, checked against the Schema. Every key of the schema has a value (its default unless
// a file or an override set it) and remembers where that value came from.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "wico/core/error.h"
#include "wico/core/schema.h"

namespace wico {

// Where a value came from: a file and line, the command line, or the schema default.
struct Origin {
  std::string file;  // "" for the schema default, "--set" for the command line
  int line = 0;      // 1-based; 0 when unknown
  std::string describe() const;
};

class Config {
 public:
  // Reads `file` (and its `_base_` files, depth-first, later bases overriding earlier ones, the
  // file itself overriding its bases), then applies `overrides` ("a.b=value") in order.
  // Throws ConfigError naming the file, line and key for anything the schema does not accept.
  static Config load(const std::filesystem::path& file,
                     const std::vector<std::string>& overrides = {},
                     const Schema& schema = Schema::builtin());
  // The schema defaults with `overrides` applied.
  static Config defaults(const std::vector<std::string>& overrides = {},
                         const Schema& schema = Schema::builtin());

  bool flag(const std::string& path) const { return get<bool>(path); }
  std::int64_t integer(const std::string& path) const { return get<std::int64_t>(path); }
  double real(const std::string& path) const { return get<double>(path); }
  const std::string& text(const std::string& path) const { return get<std::string>(path); }
  const std::vector<std::int64_t>& integers(const std::string& path) const {
    return get<std::vector<std::int64_t>>(path);
  }
  const std::vector<double>& reals(const std::string& path) const {
    return get<std::vector<double>>(path);
  }
  const std::vector<std::string>& texts(const std::string& path) const {
    return get<std::vector<std::string>>(path);
  }

  const Value& value(const std::string& path) const;
  const Origin& origin(const std::string& path) const;
  // Sets a key from code (e.g. a command-line option that mirrors a key); checked like a file.
  void set(const std::string& path, const Value& value, Origin origin = {"code", 0});
  // Applies one "a.b.c=value" override, typed by the schema (numbers, bools, lists "[1, 2]").
  void apply_override(const std::string& assignment);

  // Nested YAML of every key, in schema order; `Config::load` reads it back to an equal config.
  std::string to_yaml(bool with_docs = false) const;
  // A short stable digest of to_yaml(): two configs with equal hashes set every key alike.
  std::string hash() const;
  // "key: this -> other" for every key whose value differs.
  std::vector<std::string> differences(const Config& other) const;

  const Schema& schema() const { return *schema_; }
  // The file this config was loaded from (empty for defaults()).
  const std::filesystem::path& source() const { return source_; }

  template <typename T>
  const T& get(const std::string& path) const;

 private:
  explicit Config(const Schema& schema);

  const Schema* schema_;
  std::filesystem::path source_;
  std::map<std::string, Value> values_;
  std::map<std::string, Origin> origins_;
};

template <typename T>
const T& Config::get(const std::string& path) const {
  const Value& v = value(path);
  if (const T* typed = std::get_if<T>(&v)) return *typed;
  throw Error("config key '" + path + "' is a " + type_name(type_of(v)) +
              " and was read as another type");
}

}  // namespace wico
