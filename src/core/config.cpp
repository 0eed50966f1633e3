#include "wico/core/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "wico/core/error.h"

namespace fs = std::filesystem;

namespace wico {

std::string Origin::describe() const {
  if (file.empty()) return "default";
  if (line <= 0) return file;
  return file + ":" + std::to_string(line);
}

namespace {

// A value as written in a file, before it is typed by the schema.
struct RawEntry {
  YAML::Node node;
  Origin origin;
};
using RawEntries = std::map<std::string, RawEntry>;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string unknown_key_message(const Schema& schema, const std::string& path) {
  std::string message = "unknown key '" + path + "'";
  if (auto suggestion = schema.closest(path)) message += " (did you mean '" + *suggestion + "'?)";
  return message;
}

// "an integer", "a float", "a list of strings".
std::string a_type_name(ValueType type) {
  return std::string(type == ValueType::kInt ? "an " : "a ") + type_name(type);
}

std::optional<bool> parse_bool(const std::string& text) {
  const std::string t = lower(text);
  if (t == "true" || t == "yes" || t == "on") return true;
  if (t == "false" || t == "no" || t == "off") return false;
  return std::nullopt;
}

std::optional<std::int64_t> parse_int(const std::string& text) {
  std::int64_t v = 0;
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (begin != end && *begin == '+') ++begin;
  auto [ptr, ec] = std::from_chars(begin, end, v);
  if (ec != std::errc() || ptr != end || begin == end) return std::nullopt;
  return v;
}

std::optional<double> parse_float(const std::string& text) {
  if (text.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (errno == ERANGE || end != text.c_str() + text.size()) return std::nullopt;
  const std::string t = lower(text);
  if (t.find("nan") != std::string::npos || t.find("inf") != std::string::npos) {
    return std::nullopt;  // no key has a use for non-finite values
  }
  return v;
}

// Types one YAML node by the schema; on failure returns what was expected.
std::optional<Value> to_value(const KeySpec& spec, const YAML::Node& node, std::string& error) {
  auto scalar_of = [&](ValueType element, const YAML::Node& n) -> std::optional<Value> {
    if (!n.IsScalar()) return std::nullopt;
    const std::string& text = n.Scalar();
    switch (element) {
      case ValueType::kBool:
        if (auto v = parse_bool(text)) return Value(*v);
        return std::nullopt;
      case ValueType::kInt:
        if (auto v = parse_int(text)) return Value(*v);
        return std::nullopt;
      case ValueType::kFloat:
        if (auto v = parse_float(text)) return Value(*v);
        return std::nullopt;
      default:
        return Value(text);
    }
  };
  auto describe = [](const YAML::Node& n) -> std::string {
    if (n.IsNull()) return "no value";
    if (n.IsMap()) return "a mapping";
    if (n.IsSequence()) return "a list";
    return "'" + n.Scalar() + "'";
  };
  const std::string expected = a_type_name(spec.type);
  switch (spec.type) {
    case ValueType::kBool:
    case ValueType::kInt:
    case ValueType::kFloat:
    case ValueType::kString: {
      if (auto v = scalar_of(spec.type, node)) return v;
      error = "expects " + expected + (spec.type == ValueType::kBool ? " (true/false)" : "") +
              ", got " + describe(node);
      return std::nullopt;
    }
    case ValueType::kIntList:
    case ValueType::kFloatList:
    case ValueType::kStringList: {
      const ValueType element = spec.type == ValueType::kIntList   ? ValueType::kInt
                                : spec.type == ValueType::kFloatList ? ValueType::kFloat
                                                                     : ValueType::kString;
      if (!node.IsSequence()) {
        error = "expects " + expected + " like [a, b], got " + describe(node);
        return std::nullopt;
      }
      std::vector<std::int64_t> ints;
      std::vector<double> floats;
      std::vector<std::string> strings;
      for (std::size_t i = 0; i < node.size(); ++i) {
        auto v = scalar_of(element, node[i]);
        if (!v) {
          error = "expects " + expected + ", but item " + std::to_string(i) + " is " +
                  describe(node[i]);
          return std::nullopt;
        }
        if (element == ValueType::kInt) ints.push_back(std::get<std::int64_t>(*v));
        if (element == ValueType::kFloat) floats.push_back(std::get<double>(*v));
        if (element == ValueType::kString) strings.push_back(std::get<std::string>(*v));
      }
      if (element == ValueType::kInt) return Value(ints);
      if (element == ValueType::kFloat) return Value(floats);
      return Value(strings);
    }
  }
  return std::nullopt;
}

class Loader {
 public:
  explicit Loader(const Schema& schema) : schema_(schema) {}

  void load(const fs::path& file, const Origin& referenced_from) {
    fs::path path;
    try {
      path = fs::weakly_canonical(fs::absolute(file));
      (void)fs::is_regular_file(path);
    } catch (const fs::filesystem_error& e) {  // a name too long, a loop of links
      throw ConfigError((referenced_from.file.empty() ? "config file '" + file.string() + "'"
                                                      : referenced_from.describe() +
                                                            ": _base_ file '" + file.string() +
                                                            "'") +
                        ": " + e.code().message());
    }
    for (std::size_t i = 0; i < stack_.size(); ++i) {
      if (stack_[i] == path) {
        std::string chain;
        for (std::size_t j = i; j < stack_.size(); ++j) chain += stack_[j].string() + " -> ";
        throw ConfigError(referenced_from.describe() + ": _base_ inheritance cycle: " + chain +
                          path.string());
      }
    }
    if (!fs::is_regular_file(path)) {
      if (referenced_from.file.empty()) {
        throw ConfigError("config file '" + file.string() + "' not found");
      }
      throw ConfigError(referenced_from.describe() + ": _base_ file '" + file.string() +
                        "' not found (looked for " + path.string() + ")");
    }
    YAML::Node root;
    const std::string name = display_name(file);
    try {
      root = YAML::LoadFile(path.string());
    } catch (const YAML::ParserException& e) {
      throw ConfigError(name + ":" + std::to_string(e.mark.line + 1) + ":" +
                        std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
    }
    if (root.IsNull()) return;  // an empty file sets nothing
    if (!root.IsMap()) {
      throw ConfigError(name + ": the top level must be a mapping of keys, got " +
                        (root.IsSequence() ? "a list" : "a single value"));
    }
    stack_.push_back(path);
    // Bases first, so that this file's own keys override them.
    for (const auto& entry : root) {
      if (entry.first.Scalar() != "_base_") continue;
      const Origin origin{name, entry.first.Mark().line + 1};
      std::vector<std::string> bases;
      if (entry.second.IsScalar()) {
        bases.push_back(entry.second.Scalar());
      } else if (entry.second.IsSequence()) {
        for (const auto& b : entry.second) {
          if (!b.IsScalar()) throw ConfigError(origin.describe() + ": _base_ items must be paths");
          bases.push_back(b.Scalar());
        }
      } else {
        throw ConfigError(origin.describe() + ": _base_ must be a path or a list of paths");
      }
      for (const auto& base : bases) {
        const fs::path base_path = fs::path(base).is_absolute() ? fs::path(base)
                                                                : file.parent_path() / base;
        load(base_path, origin);
      }
    }
    flatten(root, "", name);
    stack_.pop_back();
  }

  void add_override(const std::string& assignment) {
    const auto eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw ConfigError("--set '" + assignment + "': expected KEY=VALUE, e.g. train.lr=1e-5");
    }
    std::string path = assignment.substr(0, eq);
    path.erase(path.find_last_not_of(" \t") + 1);
    path.erase(0, path.find_first_not_of(" \t"));
    std::string text = assignment.substr(eq + 1);
    const KeySpec* spec = schema_.find(path);
    if (!spec) throw ConfigError("--set " + assignment + ": " + unknown_key_message(schema_, path));
    YAML::Node node;
    const bool is_list = spec->type == ValueType::kIntList ||
                         spec->type == ValueType::kFloatList ||
                         spec->type == ValueType::kStringList;
    if (is_list) {
      try {
        node = YAML::Load(text);
      } catch (const YAML::Exception& e) {
        throw ConfigError("--set " + assignment + ": cannot read '" + text + "' as a list: " +
                          e.msg);
      }
    } else {
      // Scalars are taken verbatim (a path with ':' stays a string), quotes stripped.
      if (text.size() >= 2 && (text.front() == '"' || text.front() == '\'') &&
          text.back() == text.front()) {
        text = text.substr(1, text.size() - 2);
      }
      node = YAML::Node(text);
    }
    entries_[path] = {node, Origin{"--set", 0}};
  }

  const RawEntries& entries() const { return entries_; }
  void throw_if_errors() const {
    if (errors_.empty()) return;
    std::string message;
    for (std::size_t i = 0; i < errors_.size(); ++i) message += (i ? "\n" : "") + errors_[i];
    throw ConfigError(message);
  }
  void add_error(std::string e) { errors_.push_back(std::move(e)); }

 private:
  static std::string display_name(const fs::path& file) {
    return file.lexically_normal().string();
  }

  void flatten(const YAML::Node& map, const std::string& prefix, const std::string& file) {
    for (const auto& entry : map) {
      const std::string key = entry.first.Scalar();
      if (prefix.empty() && key == "_base_") continue;
      const std::string path = prefix.empty() ? key : prefix + "." + key;
      const Origin origin{file, entry.first.Mark().line + 1};
      const YAML::Node& value = entry.second;
      if (schema_.find(path)) {
        entries_[path] = {value, origin};
      } else if (schema_.is_section(path)) {
        if (value.IsMap()) {
          flatten(value, path, file);
        } else if (!value.IsNull()) {
          errors_.push_back(origin.describe() + ": '" + path +
                            "' is a section; write its keys beneath it (e.g. " +
                            first_key_of(path) + ")");
        }
      } else {
        errors_.push_back(origin.describe() + ": " + unknown_key_message(schema_, path));
      }
    }
  }

  std::string first_key_of(const std::string& section) const {
    for (const auto& spec : schema_.keys()) {
      if (spec.path.rfind(section + ".", 0) == 0) return spec.path;
    }
    return section;
  }

  const Schema& schema_;
  std::vector<fs::path> stack_;
  RawEntries entries_;
  std::vector<std::string> errors_;
};

}  // namespace

Config::Config(const Schema& schema) : schema_(&schema) {
  for (const auto& spec : schema.keys()) {
    values_[spec.path] = spec.default_value;
    origins_[spec.path] = Origin{};
  }
}

Config Config::load(const fs::path& file, const std::vector<std::string>& overrides,
                    const Schema& schema) {
  Loader loader(schema);
  loader.load(file, Origin{});
  loader.throw_if_errors();
  for (const auto& o : overrides) loader.add_override(o);
  Config config(schema);
  config.source_ = file;
  for (const auto& [path, raw] : loader.entries()) {
    const KeySpec& spec = *schema.find(path);
    std::string error;
    auto v = to_value(spec, raw.node, error);
    if (!v) {
      loader.add_error(raw.origin.describe() + ": key '" + path + "' " + error);
      continue;
    }
    const std::string problem = Schema::check(spec, *v);
    if (!problem.empty()) {
      loader.add_error(raw.origin.describe() + ": key '" + path + "' = " + format_value(*v) +
                       " is not accepted; expected " + problem);
      continue;
    }
    config.values_[path] = *v;
    config.origins_[path] = raw.origin;
  }
  loader.throw_if_errors();
  return config;
}

Config Config::defaults(const std::vector<std::string>& overrides, const Schema& schema) {
  Config config(schema);
  for (const auto& o : overrides) config.apply_override(o);
  return config;
}

void Config::apply_override(const std::string& assignment) {
  Loader loader(*schema_);
  loader.add_override(assignment);
  for (const auto& [path, raw] : loader.entries()) {
    std::string error;
    auto v = to_value(*schema_->find(path), raw.node, error);
    if (!v) throw ConfigError("--set " + assignment + ": key '" + path + "' " + error);
    set(path, *v, raw.origin);
  }
}

const Value& Config::value(const std::string& path) const {
  auto it = values_.find(path);
  if (it == values_.end()) throw Error("config: " + unknown_key_message(*schema_, path));
  return it->second;
}

const Origin& Config::origin(const std::string& path) const {
  auto it = origins_.find(path);
  if (it == origins_.end()) throw Error("config: " + unknown_key_message(*schema_, path));
  return it->second;
}

void Config::set(const std::string& path, const Value& value, Origin origin) {
  const KeySpec* spec = schema_->find(path);
  const std::string where = origin.describe();
  if (!spec) throw ConfigError(where + ": " + unknown_key_message(*schema_, path));
  if (type_of(value) != spec->type) {
    throw ConfigError(where + ": key '" + path + "' expects " + a_type_name(spec->type) +
                      ", got " + a_type_name(type_of(value)));
  }
  const std::string problem = Schema::check(*spec, value);
  if (!problem.empty()) {
    throw ConfigError(where + ": key '" + path + "' = " + format_value(value) +
                      " is not accepted; expected " + problem);
  }
  values_[path] = value;
  origins_[path] = std::move(origin);
}

namespace {

// Keys grouped into nested sections, in order of first declaration.
struct Section {
  std::vector<std::pair<std::string, Section>> children;
  const KeySpec* spec = nullptr;
  Section& child(const std::string& name) {
    for (auto& [n, s] : children) {
      if (n == name) return s;
    }
    children.emplace_back(name, Section{});
    return children.back().second;
  }
};

void emit_value(YAML::Emitter& out, const Value& value) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          out << YAML::DoubleQuoted << v;
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          out << YAML::Flow << YAML::BeginSeq;
          for (const auto& s : v) out << YAML::DoubleQuoted << s;
          out << YAML::EndSeq;
        } else if constexpr (std::is_same_v<T, std::vector<std::int64_t>> ||
                             std::is_same_v<T, std::vector<double>>) {
          out << YAML::Flow << YAML::BeginSeq;
          for (const auto& x : v) out << format_value(Value(x));
          out << YAML::EndSeq;
        } else {
          out << format_value(Value(v));
        }
      },
      value);
}

void emit_section(YAML::Emitter& out, const Section& section,
                  const std::map<std::string, Value>& values, bool with_docs) {
  out << YAML::BeginMap;
  for (const auto& [name, child] : section.children) {
    if (child.spec && with_docs) out << YAML::Comment(child.spec->doc);
    out << YAML::Key << name << YAML::Value;
    if (child.spec) {
      emit_value(out, values.at(child.spec->path));
    } else {
      emit_section(out, child, values, with_docs);
    }
  }
  out << YAML::EndMap;
}

}  // namespace

std::string Config::to_yaml(bool with_docs) const {
  Section root;
  for (const auto& spec : schema_->keys()) {
    Section* node = &root;
    std::stringstream parts(spec.path);
    std::string part;
    while (std::getline(parts, part, '.')) node = &node->child(part);
    node->spec = &spec;
  }
  YAML::Emitter out;
  emit_section(out, root, values_, with_docs);
  return std::string(out.c_str()) + "\n";
}

std::string Config::hash() const {
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a, 64 bits
  for (unsigned char c : to_yaml(false)) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  std::ostringstream out;
  out << std::hex << h;
  return out.str();
}

std::vector<std::string> Config::differences(const Config& other) const {
  std::vector<std::string> diffs;
  for (const auto& spec : schema_->keys()) {
    auto theirs = other.values_.find(spec.path);
    if (theirs == other.values_.end()) {
      diffs.push_back(spec.path + ": " + format_value(values_.at(spec.path)) + " -> (absent)");
    } else if (theirs->second != values_.at(spec.path)) {
      diffs.push_back(spec.path + ": " + format_value(values_.at(spec.path)) + " -> " +
                      format_value(theirs->second));
    }
  }
  return diffs;
}

}  // namespace wico
