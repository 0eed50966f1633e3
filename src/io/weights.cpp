// Format detection and dispatch (see wico/io/weights.h).
#include "wico/io/weights.h"

#include <ATen/ATen.h>

#include <cctype>
#include <fstream>

#include "weight_file_builder.h"
#include "wico/core/error.h"
#include "wico/io/zip_archive.h"

namespace wico::io {

const char* format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::kTorchZip: return "torch zip";
    case WeightFormat::kTorchLegacy: return "torch legacy";
    case WeightFormat::kSafetensors: return "safetensors";
    case WeightFormat::kTorchScript: return "TorchScript";
    case WeightFormat::kPickle: return "pickle";
    case WeightFormat::kKerasH5: return "Keras HDF5";
    case WeightFormat::kDarknet: return "Darknet weights";
  }
  return "?";
}

const at::Tensor* WeightFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors[it->second].second;
}

const data::PyValue* WeightFile::find_value(const std::string& name) const {
  for (const auto& [key, value] : values) {
    if (key == name) return &value;
  }
  return nullptr;
}

std::int64_t WeightFile::element_count() const {
  std::int64_t n = 0;
  for (const auto& [name, t] : tensors) n += t.numel();
  return n;
}

namespace {

std::string hex_prefix(std::string_view bytes) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes.size() && i < 16; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (i > 0) out += ' ';
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out.empty() ? "(empty file)" : out;
}

bool zip_has_constants(const std::filesystem::path& path) {
  ZipArchive zip(MappedFile::open(path));
  for (const ZipEntry& e : zip.entries()) {
    const auto slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/constants.pkl") == 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

WeightFormat detect_weight_format(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(detail::concat("cannot open weight file ", path.string()));
  std::string head(512, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<std::size_t>(in.gcount()));
  if (ZipArchive::looks_like_zip(head)) {
    return zip_has_constants(path) ? WeightFormat::kTorchScript : WeightFormat::kTorchZip;
  }
  if (is_legacy_torch_stream(head)) return WeightFormat::kTorchLegacy;
  if (head.compare(0, 8, "\x89HDF\r\n\x1a\n") == 0) return WeightFormat::kKerasH5;
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(head[i]); };
  // safetensors: a u64 header length (under 2^40: bytes 5-7 zero), then JSON. Its first byte can
  // be 0x80 and the second 2..5, like a pickle's PROTO; a pickle's third byte is never 0.
  const bool length_like = head.size() >= 8 && byte(5) == 0 && byte(6) == 0 && byte(7) == 0;
  if (length_like) {
    std::size_t i = 8;
    while (i < head.size() && std::isspace(byte(i))) ++i;
    if (i < head.size() && head[i] == '{') return WeightFormat::kSafetensors;
  }
  if (head.size() >= 3 && byte(0) == 0x80 && byte(1) >= 2 && byte(1) <= 5 && byte(2) != 0) {
    return WeightFormat::kPickle;
  }
  if (head.size() >= 262 && head.compare(257, 5, "ustar") == 0) {
    throw Error(detail::concat(path.string(), ": a tar archive (PyTorch 0.1-era torch.save) is not read"));
  }
  if (length_like) return WeightFormat::kSafetensors;  // malformed: its reader says how
  if (path.extension() == ".weights") {
    throw Error(detail::concat(path.string(), ": looks like Darknet's .weights, which holds no "
                               "names or shapes and is read against a network's layout: name it "
                               "in vlt.darknet_pretrained (docs/weights.md)"));
  }
  throw Error(detail::concat(path.string(), ": unknown weight file format at byte offset 0 (first "
                             "bytes ", hex_prefix(head), "); expected a torch.save zip or legacy "
                             "file, safetensors, a TorchScript archive, a pickle or a Keras HDF5 file"));
}

WeightFile read_weights(const std::filesystem::path& path) {
  switch (detect_weight_format(path)) {
    case WeightFormat::kTorchZip: return read_torch_zip(path);
    case WeightFormat::kTorchLegacy: return read_torch_legacy(path);
    case WeightFormat::kSafetensors: return read_safetensors(path);
    case WeightFormat::kTorchScript: return read_torchscript(path);
    case WeightFormat::kPickle: return read_weight_pickle(path);
    case WeightFormat::kKerasH5: return read_keras_h5(path);
    case WeightFormat::kDarknet: break;
  }
  throw Error("unreachable");
}

}  // namespace wico::io
