// How a published checkpoint's names become ours: one NameMap per original, declared once in
// src/io/name_maps.cpp and documented with a worked example in docs/weights.md. A map picks the
// part of the file that holds the weights (timm's order: state_dict_ema, model_ema, state_dict,
// model; LAVT's bert_model), renames by regular expressions applied in order, drops what the
// target never has (classification heads, masks sized by the training resolution), names what
// may stay missing, and adapts tensors whose shape legitimately differs (Swin's relative position
// bias tables when the window differs).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace wico::io {

struct NameRule {
  std::string pattern;      // ECMAScript regex on the whole name
  std::string replacement;  // $1... as std::regex_replace; unused by drops
  std::regex regex;
  NameRule(std::string pattern, std::string replacement = {});
};

struct NameMap {
  std::string name;
  std::string description;
  // The file's sections tried in order: the first prefix that some tensor has is used (and
  // stripped); "" (usually last) stands for the whole file. Empty list: the whole file.
  std::vector<std::string> sections;
  // Prefixes stripped when every tensor of the section has them (DataParallel's 'module.').
  std::vector<std::string> strip_common;
  std::vector<NameRule> renames;     // applied in order, each to the result of the previous
  std::vector<NameRule> drops;       // names (after renames) never imported, with the reason
  std::vector<std::string> drop_reasons;  // one per drop rule
  std::vector<NameRule> expected_missing;  // target names a strict import may leave unloaded
  std::vector<NameRule> ignored_unexpected;  // file names without a target that are no error
  // (target name, tensor from the file, the target's tensor) -> the tensor to copy, or nullopt
  // to report a shape mismatch. Unset: shapes must match.
  std::function<std::optional<at::Tensor>(const std::string&, const at::Tensor&, const at::Tensor&)>
      adapt;
  std::string adapt_description;
  // (the file's name, its tensor) -> the tensor in our layout, applied to every tensor before
  // shapes are compared: a layout the original always uses (Keras's HWIO kernels), which a shape
  // check alone could not tell apart where both layouts share a shape. Unset: as read.
  std::function<at::Tensor(const std::string&, const at::Tensor&)> convert;
  std::string convert_description;
};

// By name; an unknown one is a ConfigError listing the maps.
const NameMap& name_map(const std::string& name);
std::vector<std::string> name_map_names();

// Swin's rule when the window differs: the [(2w-1)^2, heads] table resized bicubically as a
// [heads, 2w-1, 2w-1] image (align_corners false), as Swin's and LAVT's loaders do.
at::Tensor resize_relative_position_table(const at::Tensor& table, std::int64_t target_rows);

}  // namespace wico::io
