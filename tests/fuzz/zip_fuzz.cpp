// libFuzzer target for the zip reader under torch.save files: any input must parse or throw
// wico::Error, and every entry it reports must lie inside the input.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "wico/core/error.h"
#include "wico/io/zip_archive.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/wico_zip_fuzz_" + std::to_string(::getpid());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const wico::io::ZipArchive zip(wico::io::MappedFile::open(path));
    for (const auto& entry : zip.entries()) {
      if (entry.data_offset > size || entry.size > size - entry.data_offset) std::abort();
      const auto bytes = zip.data(entry);
      volatile char sink = bytes.empty() ? 0 : bytes.back();
      (void)sink;
    }
    zip.verify_checksums();
  } catch (const wico::Error&) {
  }
  return 0;
}
