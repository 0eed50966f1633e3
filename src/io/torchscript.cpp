// TorchScript archives (OpenAI CLIP's RN50.pt and friends): after our reader has checked the
// archive, LibTorch's own loader reads the module; its parameters and buffers, by dotted name,
// are the state_dict Python would give.
// Half tensors stay half until a name map casts them to the model's dtype.
#include <torch/script.h>

#include "weight_file_builder.h"
#include "wico/core/error.h"
#include "wico/io/weights.h"
#include "wico/io/zip_archive.h"

namespace wico::io {

WeightFile read_torchscript(const std::filesystem::path& path) {
  // LibTorch's own loader trusts the archive (a corrupted data.pkl can crash it): our reader
  // checks both pickles, every storage record and every tensor's extent first.
  read_zip_pickle(path, WeightFormat::kTorchScript, "data.pkl", "data");
  read_zip_pickle(path, WeightFormat::kTorchScript, "constants.pkl", "constants");
  torch::jit::Module module;
  try {
    module = torch::jit::load(path.string(), torch::kCPU);
  } catch (const c10::Error& e) {
    throw Error(detail::concat("cannot read the TorchScript archive ", path.string(), ": ",
                               e.what_without_backtrace()));
  }
  WeightFile out = WeightFileBuilder::start(path, WeightFormat::kTorchScript, nullptr);
  const ZipArchive zip(MappedFile::open(path));
  if (!zip.entries().empty()) out.root = zip.entries().front().name.substr(0, zip.entries().front().name.find('/'));
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    WeightFileBuilder::add_tensor(out, p.name, p.value.detach());
  }
  for (const auto& b : module.named_buffers(/*recurse=*/true)) {
    WeightFileBuilder::add_tensor(out, b.name, b.value.detach());
  }
  return out;
}

}  // namespace wico::io
