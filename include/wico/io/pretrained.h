// Published weights a component starts from (lavt.swin_pretrained, mask2former.pretrained, ...).
// A component that has such keys implements PretrainedWeights; the trainer calls
// load_pretrained_weights(model) once at the start of a fresh run (not on resume, not in
// evaluation, where the checkpoint holds every weight), before train.init.
#pragma once

#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "wico/io/import.h"

namespace wico::io {

class PretrainedWeights {
 public:
  virtual ~PretrainedWeights() = default;
  // Imports the files the component's configuration names (none: nothing to do).
  virtual std::vector<ImportReport> load_pretrained() = 0;
};

// Every module of `model` that implements PretrainedWeights loads its files; each report is
// logged.
std::vector<ImportReport> load_pretrained_weights(torch::nn::Module& model);

// One component's file: `key` is the config key that named it and `download` says where the
// original publishes it (both quoted when the file is missing). The map "auto:A|B" picks A for
// pickles (detectron2 .pkl) and B otherwise.
ImportReport import_component(torch::nn::Module& target, const std::string& key,
                              const std::string& path, const std::string& map_name,
                              const std::string& download);

// A published file named as "NAME:path" (train.init's map=NAME:path, after "map="): imported
// into `target` through the map NAME; `context` (the entry) leads every message.
ImportReport import_published(torch::nn::Module& target, const std::string& spec,
                              const std::string& context, ImportMode mode);

}  // namespace wico::io
