#include "wico/core/schema.h"

#include <algorithm>
#include <charconv>
#include <iomanip>
#include <map>
#include <ostream>
#include <sstream>

#include "wico/core/error.h"

namespace wico {

const char* type_name(ValueType type) {
  switch (type) {
    case ValueType::kBool: return "bool";
    case ValueType::kInt: return "integer";
    case ValueType::kFloat: return "float";
    case ValueType::kString: return "string";
    case ValueType::kIntList: return "list of integers";
    case ValueType::kFloatList: return "list of floats";
    case ValueType::kStringList: return "list of strings";
  }
  return "?";
}

ValueType type_of(const Value& value) { return static_cast<ValueType>(value.index()); }

namespace {

std::string format_double(double v) {
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), v);
  std::string text(buffer, result.ptr);
  // Keep floats recognisable as floats when read back (1.0, not 1).
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
  return text;
}

template <typename T, typename Format>
std::string format_list(const std::vector<T>& items, Format format) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += format(items[i]);
  }
  return out + "]";
}

std::string range_text(const KeySpec& spec) {
  std::ostringstream out;
  out << "[" << (spec.min ? format_double(*spec.min) : "-inf") << ", "
      << (spec.max ? format_double(*spec.max) : "inf") << "]";
  return out.str();
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

}  // namespace

std::string format_value(const Value& value) {
  struct Visitor {
    std::string operator()(bool v) const { return v ? "true" : "false"; }
    std::string operator()(std::int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const { return format_double(v); }
    std::string operator()(const std::string& v) const { return v.empty() ? "\"\"" : v; }
    std::string operator()(const std::vector<std::int64_t>& v) const {
      return format_list(v, [](std::int64_t x) { return std::to_string(x); });
    }
    std::string operator()(const std::vector<double>& v) const {
      return format_list(v, format_double);
    }
    std::string operator()(const std::vector<std::string>& v) const {
      return format_list(v, [](const std::string& x) { return x; });
    }
  };
  return std::visit(Visitor{}, value);
}

Schema& Schema::add(KeySpec spec) {
  if (index_.count(spec.path)) {
    throw Error("schema: key '" + spec.path + "' is declared twice");
  }
  if (type_of(spec.default_value) != spec.type) {
    throw Error("schema: default of '" + spec.path + "' is not a " + type_name(spec.type));
  }
  const std::string problem = check(spec, spec.default_value);
  if (!problem.empty()) {
    throw Error("schema: default of '" + spec.path + "' is invalid: " + problem);
  }
  index_[spec.path] = keys_.size();
  keys_.push_back(std::move(spec));
  return *this;
}

Schema& Schema::flag(const std::string& path, bool value, const std::string& doc) {
  return add({path, ValueType::kBool, value, doc, {}, {}, {}, {}});
}
Schema& Schema::integer(const std::string& path, std::int64_t value, const std::string& doc,
                        std::optional<double> min, std::optional<double> max) {
  return add({path, ValueType::kInt, value, doc, min, max, {}, {}});
}
Schema& Schema::real(const std::string& path, double value, const std::string& doc,
                     std::optional<double> min, std::optional<double> max) {
  return add({path, ValueType::kFloat, value, doc, min, max, {}, {}});
}
Schema& Schema::text(const std::string& path, const std::string& value, const std::string& doc,
                     std::vector<std::string> choices) {
  return add({path, ValueType::kString, value, doc, {}, {}, std::move(choices), {}});
}
Schema& Schema::integers(const std::string& path, std::vector<std::int64_t> value,
                         const std::string& doc, std::optional<double> min,
                         std::optional<double> max) {
  return add({path, ValueType::kIntList, std::move(value), doc, min, max, {}, {}});
}
Schema& Schema::reals(const std::string& path, std::vector<double> value, const std::string& doc,
                      std::optional<double> min, std::optional<double> max) {
  return add({path, ValueType::kFloatList, std::move(value), doc, min, max, {}, {}});
}
Schema& Schema::texts(const std::string& path, std::vector<std::string> value,
                      const std::string& doc, std::vector<std::string> choices) {
  return add({path, ValueType::kStringList, std::move(value), doc, {}, {}, std::move(choices), {}});
}

const KeySpec* Schema::find(const std::string& path) const {
  auto it = index_.find(path);
  return it == index_.end() ? nullptr : &keys_[it->second];
}

bool Schema::is_section(const std::string& path) const {
  const std::string prefix = path + ".";
  auto it = index_.lower_bound(prefix);
  return it != index_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
}

std::string Schema::check(const KeySpec& spec, const Value& value) {
  auto in_range = [&](double v) {
    return (!spec.min || v >= *spec.min) && (!spec.max || v <= *spec.max);
  };
  auto in_choices = [&](const std::string& v) {
    return spec.choices.empty() ||
           std::find(spec.choices.begin(), spec.choices.end(), v) != spec.choices.end();
  };
  bool ok = true;
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::int64_t> || std::is_same_v<T, double>) {
          ok = in_range(static_cast<double>(v));
        } else if constexpr (std::is_same_v<T, std::string>) {
          ok = in_choices(v);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          ok = std::all_of(v.begin(), v.end(), in_choices);
        } else if constexpr (!std::is_same_v<T, bool>) {
          ok = std::all_of(v.begin(), v.end(),
                           [&](auto x) { return in_range(static_cast<double>(x)); });
        }
      },
      value);
  if (!ok) {
    if (!spec.choices.empty()) return "one of " + join(spec.choices, ", ");
    return "a value in " + range_text(spec);
  }
  if (spec.validate) return spec.validate(value);
  return "";
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::optional<std::string> Schema::closest(const std::string& path) const {
  const auto leaf_of = [](const std::string& p) { return p.substr(p.rfind('.') + 1); };
  const auto section_of = [](const std::string& p) { return p.substr(0, p.find('.')); };
  const auto close_enough = [](double distance, std::size_t length) {
    return distance <= std::max<double>(2.5, 0.4 * static_cast<double>(length));
  };
  const std::string leaf = leaf_of(path);
  const bool has_section = path.find('.') != std::string::npos;
  const std::string section = section_of(path);

  // 1. The exact key in another section ("train.threads" -> "runtime.threads").
  for (const auto& spec : keys_) {
    if (leaf_of(spec.path) == leaf) return spec.path;
  }
  // 2. A known section: its own keys first, by another tool's name for them ("run.dir" ->
  //    "run.root", where "train.lr" is nearer by spelling) or by spelling within the section.
  if (has_section && is_section(section)) {
    const std::string rest = path.substr(section.size() + 1);
    // Other tools' words for the same key, which no spelling distance finds.
    static const std::map<std::string, std::string> kOtherNames = {
        {"dir", "root"},           {"directory", "root"},     {"folder", "root"},
        {"path", "root"},          {"out", "root"},           {"output", "root"},
        {"output_dir", "root"},    {"learning_rate", "lr"},   {"base_lr", "lr"},
        {"bs", "batch_size"},      {"batch", "batch_size"},   {"num_workers", "workers"},
        {"max_iter", "iterations"}, {"iters", "iterations"}, {"steps", "iterations"},
        {"max_epochs", "epochs"}};
    const auto other = kOtherNames.find(rest);
    if (other != kOtherNames.end() && find(section + "." + other->second) != nullptr) {
      return section + "." + other->second;
    }
    std::optional<std::string> best;
    double best_distance = 1e9;
    for (const auto& spec : keys_) {
      if (section_of(spec.path) != section) continue;
      const double d = static_cast<double>(
          edit_distance(rest, spec.path.substr(section.size() + 1)));
      if (d < best_distance) {
        best_distance = d;
        best = spec.path;
      }
    }
    if (best && best_distance <= std::max<double>(3.0, 0.6 * static_cast<double>(rest.size()))) {
      return best;
    }
  }
  // 3. A misspelt section ("trian" -> "train", "trian.lr" -> "train.lr").
  if (!is_section(section)) {
    std::optional<std::string> best_section;
    double best_distance = 1e9;
    for (const auto& spec : keys_) {
      const std::string candidate = section_of(spec.path);
      const double d = static_cast<double>(edit_distance(section, candidate));
      if (d < best_distance) {
        best_distance = d;
        best_section = candidate;
      }
    }
    if (best_section && close_enough(best_distance, section.size())) {
      if (!has_section) return best_section;
      const std::string renamed = *best_section + path.substr(section.size());
      if (find(renamed) != nullptr) return renamed;
      if (auto inside = closest(renamed)) return inside;
      return best_section;
    }
  }
  // 4. Anything near by whole path or by last component.
  std::optional<std::string> best;
  double best_score = 1e9;
  for (const auto& spec : keys_) {
    const double whole = static_cast<double>(edit_distance(path, spec.path));
    const double by_leaf = static_cast<double>(edit_distance(leaf, leaf_of(spec.path))) + 0.5;
    const double score = std::min(whole, by_leaf);
    if (score < best_score) {
      best_score = score;
      best = spec.path;
    }
  }
  if (best && close_enough(best_score, leaf.size())) return best;
  return std::nullopt;
}

void Schema::print(std::ostream& out) const {
  std::size_t width = 0;
  for (const auto& spec : keys_) width = std::max(width, spec.path.size());
  std::string section;
  for (const auto& spec : keys_) {
    const std::string top = spec.path.substr(0, spec.path.find('.'));
    if (top != section) {
      out << (section.empty() ? "" : "\n") << top << ":\n";
      section = top;
    }
    out << "  " << std::left << std::setw(static_cast<int>(width)) << spec.path << "  "
        << type_name(spec.type) << " = " << format_value(spec.default_value);
    if (!spec.choices.empty()) out << "  {" << join(spec.choices, "|") << "}";
    if (spec.min || spec.max) out << "  " << range_text(spec);
    out << "\n      " << spec.doc << "\n";
  }
}

}  // namespace wico
