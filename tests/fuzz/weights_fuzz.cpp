// libFuzzer target for the weight-file readers (torch.save zip and legacy, safetensors, plain
// pickles of numpy arrays): any input must read or throw wico::Error, never crash, hang or
// allocate by an unchecked size. The input goes through a file because the readers map files.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "wico/core/error.h"
#include "wico/io/weights.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/wico_weights_fuzz_" + std::to_string(::getpid());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    // TorchScript archives end in LibTorch's own loader, which compiles the archive's code/ and
    // can abort on a corrupted one (after our checks of its pickles and storages): not ours to
    // fuzz.
    if (wico::io::detect_weight_format(path) == wico::io::WeightFormat::kTorchScript) return 0;
    const wico::io::WeightFile file = wico::io::read_weights(path);
    for (const auto& [name, tensor] : file.tensors) {
      (void)tensor.sum();  // every tensor's extent must lie inside the bytes it views
    }
  } catch (const wico::Error&) {
  }
  return 0;
}
