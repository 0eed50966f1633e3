// Importing a weight file into a module through a name map (see wico/io/import.h).
#include "wico/io/import.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <map>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "wico/core/error.h"

namespace wico::io {

namespace {

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? "," : "") + std::to_string(shape[i]);
  return out + "]";
}

// fvcore's grouping: names sharing everything before the last '.' print as `parent.{a, b}`.
std::vector<std::string> grouped(const std::vector<std::string>& names) {
  std::vector<std::string> parents;
  std::unordered_map<std::string, std::vector<std::string>> leaves;
  for (const std::string& name : names) {
    const auto dot = name.rfind('.');
    const std::string parent = dot == std::string::npos ? "" : name.substr(0, dot);
    const std::string leaf = dot == std::string::npos ? name : name.substr(dot + 1);
    if (!leaves.count(parent)) parents.push_back(parent);
    leaves[parent].push_back(leaf);
  }
  std::vector<std::string> out;
  for (const std::string& parent : parents) {
    const auto& l = leaves[parent];
    std::string line = parent.empty() ? "" : parent + ".";
    if (l.size() == 1) {
      line += l[0];
    } else {
      line += "{";
      for (std::size_t i = 0; i < l.size(); ++i) line += (i ? ", " : "") + l[i];
      line += "}";
    }
    out.push_back(line);
  }
  return out;
}

bool matches(const std::vector<NameRule>& rules, const std::string& name) {
  for (const NameRule& r : rules) {
    if (std::regex_search(name, r.regex)) return true;
  }
  return false;
}

struct Mapped {
  std::string source, target;
  at::Tensor tensor;
};

// Sections, common prefixes, renames and drops: the file's tensors under their target names.
std::vector<Mapped> map_names(const WeightFile& file, const NameMap& map, ImportReport& report) {
  std::string section;
  bool found = map.sections.empty();
  for (const std::string& s : map.sections) {
    if (s.empty()) {
      found = true;
      section.clear();
      break;
    }
    for (const auto& [name, t] : file.tensors) {
      if (name.rfind(s, 0) == 0) {
        found = true;
        break;
      }
    }
    if (found) {
      section = s;
      break;
    }
  }
  if (!found) {
    std::string tried;
    for (const auto& s : map.sections) tried += (tried.empty() ? "'" : ", '") + s + "'";
    throw Error(detail::concat(file.path.string(), ": map '", map.name,
                               "' finds none of the sections ", tried, " in the file (",
                               file.tensors.size(), " tensors; see `wico weights inspect`)"));
  }
  report.section = section;
  std::vector<Mapped> out;
  std::size_t outside = 0;
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind(section, 0) != 0) {
      ++outside;
      continue;
    }
    out.push_back({name, name.substr(section.size()), t});
  }
  if (outside > 0) {
    report.rules.push_back(detail::concat("section '", section, "': ", outside,
                                          " tensors outside it not imported"));
  }
  for (const std::string& prefix : map.strip_common) {
    bool all = !out.empty();
    for (const auto& m : out) all = all && m.target.rfind(prefix, 0) == 0;
    if (!all) continue;
    for (auto& m : out) m.target = m.target.substr(prefix.size());
    report.rules.push_back(detail::concat("prefix '", prefix, "' stripped from every name"));
  }
  for (const NameRule& rule : map.renames) {
    std::size_t count = 0;
    for (auto& m : out) {
      std::string renamed = std::regex_replace(m.target, rule.regex, rule.replacement,
                                               std::regex_constants::format_first_only);
      if (renamed != m.target) {
        m.target = std::move(renamed);
        ++count;
      }
    }
    if (count > 0) {
      report.rules.push_back(detail::concat("renamed /", rule.pattern, "/ -> '", rule.replacement,
                                            "': ", count, " names"));
    }
  }
  std::vector<std::size_t> dropped(map.drops.size(), 0);
  std::vector<Mapped> kept;
  for (auto& m : out) {
    bool drop = false;
    for (std::size_t i = 0; i < map.drops.size() && !drop; ++i) {
      if (std::regex_search(m.target, map.drops[i].regex)) {
        ++dropped[i];
        drop = true;
        report.ignored.push_back(m.source);
      }
    }
    if (!drop) kept.push_back(std::move(m));
  }
  for (std::size_t i = 0; i < map.drops.size(); ++i) {
    if (dropped[i] == 0) continue;
    const std::string reason = i < map.drop_reasons.size() ? map.drop_reasons[i] : "";
    report.rules.push_back(detail::concat("dropped /", map.drops[i].pattern, "/: ", dropped[i],
                                          " names", reason.empty() ? "" : " (" + reason + ")"));
  }
  return kept;
}

}  // namespace

std::string ImportReport::table() const {
  std::ostringstream out;
  out << "Loaded " << file << " (" << format << ") through map '" << map << "'";
  if (!section.empty()) out << ", section '" << section << "'";
  out << "\n";
  for (const std::string& r : rules) out << "  rule: " << r << "\n";
  out << "  matched: " << matched.size() << " tensors, " << loaded_values << " of the model's "
      << model_values << " values";
  if (model_values > 0) {
    out << " (" << std::fixed;
    out.precision(1);
    out << 100.0 * static_cast<double>(loaded_values) / static_cast<double>(model_values) << "%)";
  }
  out << "\n";
  auto list = [&](const char* title, const std::vector<std::string>& names) {
    if (names.empty()) return;
    out << "  " << title << " (" << names.size() << "):\n";
    for (const std::string& line : grouped(names)) out << "    " << line << "\n";
  };
  list("missing, left at their initial values", missing);
  list("expected missing (the original has no such weights)", expected_missing);
  list("unexpected, not loaded", unexpected);
  if (!mismatched.empty()) {
    out << "  shape mismatch, skipped (" << mismatched.size() << "):\n";
    for (const auto& m : mismatched) {
      out << "    " << m.name << ": file " << shape_text(m.file_shape) << ", model "
          << shape_text(m.model_shape) << "\n";
    }
  }
  for (const std::string& c : conversions) out << "  dtype: " << c << "\n";
  return out.str();
}

std::vector<std::pair<std::string, std::string>> mapped_names(const WeightFile& file,
                                                              const NameMap& map) {
  ImportReport ignored;
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& m : map_names(file, map, ignored)) out.emplace_back(m.source, m.target);
  return out;
}

ImportReport import_weights(torch::nn::Module& module, const WeightFile& file, const NameMap& map,
                            ImportMode mode) {
  ImportReport report;
  report.file = file.path.string();
  report.format = format_name(file.format);
  report.map = map.name;
  const std::vector<Mapped> mapped = map_names(file, map, report);

  std::vector<std::pair<std::string, at::Tensor>> targets;
  std::unordered_map<std::string, at::Tensor> by_name;
  for (const auto& p : module.named_parameters(true)) targets.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) targets.emplace_back(b.key(), b.value());
  for (const auto& [name, t] : targets) {
    by_name.emplace(name, t);
    report.model_values += t.numel();
  }

  std::unordered_map<std::string, std::string> fed;  // target -> source
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (target, source)
  std::size_t adapted = 0, converted = 0;
  for (const Mapped& m : mapped) {
    const auto it = by_name.find(m.target);
    if (it == by_name.end()) {
      if (matches(map.ignored_unexpected, m.target)) {
        report.ignored.push_back(m.source);
      } else {
        report.unexpected.push_back(m.source);  // the file's name, as inspect lists it
      }
      continue;
    }
    if (const auto [at, inserted] = fed.emplace(m.target, m.source); !inserted) {
      throw Error(detail::concat(file.path.string(), ": map '", map.name, "' feeds '", m.target,
                                 "' from both '", at->second, "' and '", m.source, "'"));
    }
    at::Tensor source = map.convert ? map.convert(m.source, m.tensor) : m.tensor;
    if (map.convert && !source.is_same(m.tensor)) ++converted;
    if (source.sizes() != it->second.sizes()) {
      std::optional<at::Tensor> fitted;
      if (map.adapt) fitted = map.adapt(m.target, source, it->second);
      if (!fitted || fitted->sizes() != it->second.sizes()) {
        report.mismatched.push_back({m.target, source.sizes().vec(), it->second.sizes().vec()});
        fed.erase(m.target);
        continue;
      }
      source = *fitted;
      ++adapted;
    }
    report.matched.push_back(m.target);
    copies.emplace_back(it->second, source);
  }
  if (converted > 0) {
    report.rules.push_back(detail::concat(map.convert_description, ": ", converted, " tensors"));
  }
  if (adapted > 0) {
    report.rules.push_back(detail::concat(map.adapt_description, ": ", adapted, " tensors"));
  }
  for (const auto& [name, t] : targets) {
    if (fed.count(name)) continue;
    (matches(map.expected_missing, name) ? report.expected_missing : report.missing).push_back(name);
  }
  if (mode == ImportMode::kStrict && !report.clean()) {
    throw Error(detail::concat("strict import of ", file.path.string(), " failed: the names do not "
                               "match the model\n", report.table()));
  }

  std::map<std::pair<std::string, std::string>, std::size_t> conversions;
  {
    const at::NoGradGuard no_grad;
    for (auto& [target, source] : copies) {
      if (source.scalar_type() != target.scalar_type()) {
        ++conversions[{c10::toString(source.scalar_type()), c10::toString(target.scalar_type())}];
      }
      target.copy_(source);
      report.loaded_values += target.numel();
      // The copy is done: let the kernel drop the mapped pages it read.
      if (file.file && source.has_storage()) {
        const char* begin = static_cast<const char*>(source.storage().data());
        const char* base = file.file->data();
        if (begin >= base && begin < base + file.file->size()) {
          file.file->release(static_cast<std::size_t>(begin - base), source.storage().nbytes());
        }
      }
    }
  }
  for (const auto& [types, count] : conversions) {
    report.conversions.push_back(detail::concat(count, " tensors ", types.first, " -> ", types.second));
  }
  return report;
}

}  // namespace wico::io
