// Copying a published checkpoint into one of our modules through a NameMap, with the report
// detectron2 prints: matched, missing, unexpected and shape-mismatched keys (a mismatch is
// skipped and reported, never forced), what the rules dropped or adapted, dtype conversions and
// the number of values loaded.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <string>
#include <vector>

#include "wico/io/name_map.h"
#include "wico/io/weights.h"

namespace wico::io {

enum class ImportMode {
  kStrict,  // a whole model: any missing (not expected), unexpected or mismatched key is an Error
  kPartial  // a component: load the matches, report what stays random
};

struct ImportReport {
  struct Mismatch {
    std::string name;
    std::vector<std::int64_t> file_shape, model_shape;
  };
  std::string file, format, map, section;
  std::vector<std::string> rules;  // what each rule did, with counts
  std::vector<std::string> matched, missing, expected_missing, unexpected, ignored;
  std::vector<Mismatch> mismatched;
  std::vector<std::string> conversions;  // "12 tensors float16 -> float32"
  std::int64_t loaded_values = 0;
  std::int64_t model_values = 0;

  bool clean() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  // The report as text: a summary, then one line per group of names (fvcore's `a.{b, c}`).
  std::string table() const;
};

// Renames `file`'s tensors through `map` against `module`'s parameters and buffers and copies the
// matches (dtype converted). kStrict throws an Error holding the table when the import is not
// clean, before anything is copied.
ImportReport import_weights(torch::nn::Module& module, const WeightFile& file, const NameMap& map,
                            ImportMode mode);

// The names `map` gives `file`'s tensors (after sections, renames and drops), for inspection.
std::vector<std::pair<std::string, std::string>> mapped_names(const WeightFile& file,
                                                              const NameMap& map);

}  // namespace wico::io
