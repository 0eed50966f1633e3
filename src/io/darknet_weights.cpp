#include "wico/io/darknet_weights.h"

#include <ATen/ATen.h>

#include <cstring>
#include <fstream>
#include <string>

#include "weight_file_builder.h"
#include "wico/core/error.h"

namespace wico::io {

bool is_darknet_weights_path(const std::filesystem::path& path) {
  return path.extension() == ".weights";
}

WeightFile read_darknet_weights(const std::filesystem::path& path,
                                const std::vector<DarknetConvSection>& sections) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error("cannot open Darknet weights '" + path.string() + "'");
  const auto size = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  std::uint64_t offset = 0;
  auto read = [&](void* out, std::uint64_t bytes, const std::string& what) {
    if (offset + bytes > size) {
      throw Error(path.string() + ": file ends at byte " + std::to_string(size) +
                  ", reading " + what + " needs bytes " + std::to_string(offset) + " to " +
                  std::to_string(offset + bytes) + " (is the network's layout the file's?)");
    }
    in.read(static_cast<char*>(out), static_cast<std::streamsize>(bytes));
    offset += bytes;
  };
  std::int32_t version[3];
  read(version, sizeof(version), "the header (major, minor, revision)");
  const std::int32_t major = version[0], minor = version[1];
  std::uint64_t seen = 0;
  if (major * 10 + minor >= 2 && major < 1000 && minor < 1000) {
    read(&seen, 8, "the header's images seen (8 bytes)");
  } else {
    std::uint32_t seen32 = 0;
    read(&seen32, 4, "the header's images seen (4 bytes)");
    seen = seen32;
  }
  WeightFile out = WeightFileBuilder::start(path, WeightFormat::kDarknet, nullptr);
  out.metadata["version"] = std::to_string(major) + "." + std::to_string(minor) + "." +
                            std::to_string(version[2]);
  out.metadata["seen"] = std::to_string(seen);
  for (std::size_t i = 0; i < sections.size(); ++i) {
    const DarknetConvSection& s = sections[i];
    WICO_CHECK(s.out > 0 && s.in > 0 && s.kernel > 0, "Darknet section ", i, " has no shape");
    const std::string prefix = "conv_" + std::to_string(i) + ".";
    auto take = [&](const std::string& name, std::vector<std::int64_t> shape) {
      at::Tensor t = at::empty(shape, at::kFloat);
      read(t.data_ptr(), static_cast<std::uint64_t>(t.numel()) * 4,
           "section " + std::to_string(i) + "'s " + name + " " + c10::str(t.sizes()));
      WeightFileBuilder::add_tensor(out, prefix + name, t);
    };
    take("biases", {s.out});
    if (s.batch_norm) {
      take("scales", {s.out});
      take("rolling_mean", {s.out});
      take("rolling_variance", {s.out});
    }
    take("weights", {s.out, s.in, s.kernel, s.kernel});
  }
  if (offset < size) {
    out.notes.push_back(std::to_string((size - offset) / 4) + " floats after the " +
                        std::to_string(sections.size()) +
                        " sections read (later layers of the file's network) were not read");
  }
  return out;
}

}  // namespace wico::io
