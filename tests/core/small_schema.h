// A small schema with a key of every value type, for the config tests and the config fuzzer, so
// that neither depends on what the components declare (nor links them).
#pragma once

#include "wico/core/schema.h"

namespace wico::test {

inline Schema small_schema() {
  Schema s;
  s.text("run.name", "", "name")
      .text("run.root", "runs", "root")
      .integer("runtime.threads", 0, "threads", 0, 64)
      .real("train.lr", 1e-4, "learning rate", 0.0, 1.0)
      .flag("train.amp", false, "mixed precision")
      .integers("model.depths", {2, 2, 6, 2}, "depths", 1, 48)
      .reals("loss.weights", {0.9, 1.1}, "class weights")
      .texts("data.splits", {"val"}, "splits", {"val", "testA", "testB"})
      .text("data.dataset", "refcoco", "dataset", {"refcoco", "refcoco+", "refcocog"});
  return s;
}

}  // namespace wico::test
