// The configuration schema: every key any component reads is declared here once, with its type,
// default, allowed values and a one-line doc. Components add their keys in an explicit
// `add_*_keys(Schema&)` function called by Schema::builtin() (no static self-registration: the
// linker drops it from static libraries).
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace wico {

enum class ValueType { kBool, kInt, kFloat, kString, kIntList, kFloatList, kStringList };

using Value = std::variant<bool, std::int64_t, double, std::string, std::vector<std::int64_t>,
                           std::vector<double>, std::vector<std::string>>;

const char* type_name(ValueType type);     // "integer", "list of floats", ...
ValueType type_of(const Value& value);
std::string format_value(const Value& value);  // YAML flow text: 1e-05, [2, 2, 6], "a b"

// Extra check on a typed value; returns an empty string when the value is acceptable, otherwise
// what was expected ("cpu, cuda or cuda:N").
using Validator = std::function<std::string(const Value&)>;

struct KeySpec {
  std::string path;  // dotted: "train.lr"
  ValueType type = ValueType::kString;
  Value default_value;
  std::string doc;
  std::optional<double> min;               // numbers and every element of numeric lists
  std::optional<double> max;
  std::vector<std::string> choices;        // strings and every element of string lists
  Validator validate;
};

class Schema {
 public:
  // The schema of every key the built library knows, filled once.
  static const Schema& builtin();

  Schema& add(KeySpec spec);
  // Shorthands for the common kinds of keys.
  Schema& flag(const std::string& path, bool value, const std::string& doc);
  Schema& integer(const std::string& path, std::int64_t value, const std::string& doc,
                  std::optional<double> min = std::nullopt,
                  std::optional<double> max = std::nullopt);
  Schema& real(const std::string& path, double value, const std::string& doc,
               std::optional<double> min = std::nullopt, std::optional<double> max = std::nullopt);
  Schema& text(const std::string& path, const std::string& value, const std::string& doc,
               std::vector<std::string> choices = {});
  Schema& integers(const std::string& path, std::vector<std::int64_t> value,
                   const std::string& doc, std::optional<double> min = std::nullopt,
                   std::optional<double> max = std::nullopt);
  Schema& reals(const std::string& path, std::vector<double> value, const std::string& doc,
                std::optional<double> min = std::nullopt, std::optional<double> max = std::nullopt);
  Schema& texts(const std::string& path, std::vector<std::string> value, const std::string& doc,
                std::vector<std::string> choices = {});

  const KeySpec* find(const std::string& path) const;
  // True when `path` is a prefix of declared keys ("train" for "train.lr").
  bool is_section(const std::string& path) const;
  const std::vector<KeySpec>& keys() const { return keys_; }

  // Describes why `value` is not acceptable for `spec` (range, choices, validator), or "".
  static std::string check(const KeySpec& spec, const Value& value);

  // The declared key nearest to `path` by edit distance, if any is reasonably close.
  std::optional<std::string> closest(const std::string& path) const;

  // One line per key: path, type, default, allowed values, doc.
  void print(std::ostream& out) const;

 private:
  std::vector<KeySpec> keys_;
  std::map<std::string, std::size_t> index_;
};

// Levenshtein distance, used for "did you mean" suggestions.
std::size_t edit_distance(const std::string& a, const std::string& b);

// Key declarations of each component, called by Schema::builtin().
void add_core_keys(Schema& schema);  // run, runtime, log
void add_data_keys(Schema& schema);  // data, text
void add_eval_keys(Schema& schema);  // eval
void add_train_keys(Schema& schema);  // model.kind, train
void add_bottom_up_keys(Schema& schema);  // bottom_up and each built-in backend's keys
void add_top_down_keys(Schema& schema);
void add_wico_keys(Schema& schema);  // wico: the pair, CFI, integration   // top_down and each built-in extractor's and matcher's keys

}  // namespace wico
