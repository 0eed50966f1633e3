// Schema::builtin(): every component's keys. In its own file so that the generic schema and
// config code (schema.cpp, config.cpp) builds without the components, as the config fuzzer does.
#include <mutex>

#include "wico/core/schema.h"

namespace wico {

const Schema& Schema::builtin() {
  static Schema schema;
  static std::once_flag once;
  std::call_once(once, [] {
    add_core_keys(schema);
    add_data_keys(schema);
    add_eval_keys(schema);
    add_train_keys(schema);
    add_bottom_up_keys(schema);
    add_top_down_keys(schema);
    add_wico_keys(schema);
  });
  return schema;
}

}  // namespace wico
