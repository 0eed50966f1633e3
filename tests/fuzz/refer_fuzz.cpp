// libFuzzer target for the refer data set reader through its files: the input is an
// instances.json and a refs pickle separated by "\n--refs--\n", written to a scratch folder and
// loaded as RefCOCO (unc). Anything must load or throw wico::Error.
#include <cstdint>

#include "fuzz_util.h"
#include "wico/core/error.h"
#include "wico/data/refer.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto [instances, refs] =
      wico::fuzz::split_once(wico::fuzz::as_text(data, size), "\n--refs--\n");
  wico::fuzz::write_file("refcoco/instances.json", instances);
  wico::fuzz::write_file("refcoco/refs(unc).p", refs);
  try {
    const auto d = wico::data::ReferDataset::load(wico::fuzz::scratch_dir(), "refcoco", "unc");
    for (const auto& split : {"train", "val", "testA", "testB"}) (void)d.refs(split);
  } catch (const wico::Error&) {
  }
  return 0;
}
