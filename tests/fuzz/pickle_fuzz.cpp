// libFuzzer target for the pickle reader: any input must parse or throw wico::Error, never crash,
// hang or leak. What parses must also survive a write/read round trip with stable bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "wico/core/error.h"
#include "wico/data/pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using wico::data::PyValue;
  // The weight readers' mode: globals, calls and persistent ids as inert objects.
  try {
    wico::data::PickleOptions options;
    options.objects = true;
    const PyValue objects = wico::data::parse_pickle(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz-input", options);
    (void)objects.repr();
  } catch (const wico::Error&) {
  }
  PyValue value;
  try {
    value = wico::data::parse_pickle(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz-input");
  } catch (const wico::Error&) {
    return 0;
  }
  (void)value.repr();
  std::string written;
  try {
    written = wico::data::write_pickle(value, 4);
  } catch (const wico::Error&) {
    return 0;  // e.g. a Python 2 str that is not UTF-8 cannot be written as unicode
  }
  // Our own output must read back and write identically.
  const PyValue again = wico::data::parse_pickle(written, "fuzz-roundtrip");
  if (wico::data::write_pickle(again, 4) != written) std::abort();
  return 0;
}
