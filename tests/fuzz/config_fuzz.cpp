// libFuzzer target for YAML configs: the input is a config and the base it names, separated by
// "\n--base--\n" (the config's `_base_: base.yaml` resolves to the second part), read against a
// schema of every value type. Anything must load or throw wico::Error (ConfigError).
#include <cstdint>

#include "../core/small_schema.h"
#include "fuzz_util.h"
#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/core/schema.h"

namespace {

const wico::Schema& fuzz_schema() {
  static const wico::Schema schema = wico::test::small_schema();
  return schema;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto [config, base] = wico::fuzz::split_once(wico::fuzz::as_text(data, size), "\n--base--\n");
  const auto file = wico::fuzz::write_file("config.yaml", config);
  wico::fuzz::write_file("base.yaml", base);
  try {
    const wico::Config c = wico::Config::load(file, {}, fuzz_schema());
    // What loads writes back as YAML that loads to the same values.
    const auto again = wico::fuzz::write_file("again.yaml", c.to_yaml());
    (void)wico::Config::load(again, {}, fuzz_schema());
  } catch (const wico::Error&) {
  }
  return 0;
}
