// Private to src/io/: how the readers fill a WeightFile.
#pragma once

#include <string>
#include <string_view>

#include "wico/io/weights.h"

namespace wico::io {

struct WeightFileBuilder {
  static WeightFile start(const std::filesystem::path& path, WeightFormat format,
                          std::shared_ptr<const MappedFile> file) {
    WeightFile out;
    out.path = path;
    out.format = format;
    out.file = std::move(file);
    return out;
  }
  // False (and nothing added) when the name is already there.
  static bool add_tensor(WeightFile& file, const std::string& name, const at::Tensor& tensor) {
    if (!file.index_.emplace(name, file.tensors.size()).second) return false;
    file.tensors.emplace_back(name, tensor);
    return true;
  }
};

// The tensors of one pickle record of a zip archive (`data.pkl` of torch.save; `data.pkl` or
// `constants.pkl` of torch.jit.save), its storages in `<root>/<storage_folder>/<key>`.
WeightFile read_zip_pickle(const std::filesystem::path& path, WeightFormat format,
                           const std::string& record, const std::string& storage_folder);

// True when `bytes` start with the magic number of a legacy torch.save stream.
bool is_legacy_torch_stream(std::string_view bytes);

}  // namespace wico::io
