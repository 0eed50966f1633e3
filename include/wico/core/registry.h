// A name -> builder registry, one per kind of component (backends, benchmarks, ...). Filled by an
// explicit registration function of each kind; an unknown name is a ConfigError listing the
// valid ones.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "wico/core/error.h"

namespace wico {

template <typename Builder>
class Registry {
 public:
  // `kind` names what is registered ("bottom-up backend"), `key` the config key that picks one.
  Registry(std::string kind, std::string key) : kind_(std::move(kind)), key_(std::move(key)) {}

  void add(const std::string& name, Builder builder, std::string doc = "") {
    if (entries_.count(name)) throw Error(kind_ + " '" + name + "' is registered twice");
    entries_.emplace(name, Entry{std::move(builder), std::move(doc)});
  }

  bool contains(const std::string& name) const { return entries_.count(name) > 0; }

  const Builder& get(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      std::string valid;
      for (const auto& [n, e] : entries_) valid += (valid.empty() ? "" : ", ") + n;
      throw ConfigError("unknown " + kind_ + " '" + name + "'" +
                        (key_.empty() ? "" : " (" + key_ + ")") + "; valid: " +
                        (valid.empty() ? "none registered" : valid));
    }
    return it->second.builder;
  }

  const std::string& doc(const std::string& name) const { return entries_.at(name).doc; }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [n, e] : entries_) out.push_back(n);
    return out;
  }

 private:
  struct Entry {
    Builder builder;
    std::string doc;
  };
  std::string kind_;
  std::string key_;
  std::map<std::string, Entry> entries_;
};

}  // namespace wico
