// Private to src/io/: the little-endian integers of zip, torch.save and safetensors headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace wico::io {

// `width` bytes (at most 8) at `offset`; the caller has checked that they lie inside `bytes`.
inline std::uint64_t read_le(std::string_view bytes, std::size_t offset, std::size_t width) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < width; ++i) {
    v |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[offset + i])) << (8 * i);
  }
  return v;
}

}  // namespace wico::io
