// Reading the weight files the originals publish, natively: torch.save zip (PyTorch >= 1.6) and
// legacy streams, safetensors, TorchScript archives, plain pickles of numpy arrays or torch
// tensors (detectron2 / Mask2Former model zoo) and Keras HDF5 files (MCN, VLT). The format is found from the file's first bytes.
//
// A file reads as a flat list of named tensors plus the non-tensor values it holds. Names join
// the keys of nested dicts with '.', list and tuple elements by index, an argparse.Namespace or
// another object with a dict state by its attributes, a whole pickled nn.Module by its
// state_dict names: LAVT's {'model': ..., 'bert_model': ..., 'args': Namespace} gives
// `model.backbone.patch_embed.proj.weight`, `bert_model.encoder.layer.0...`, `args.lr`.
//
// Tensors of torch.save files are views of the memory-mapped file (no copy until they are copied
// into a model); views and tied weights of one storage stay views of one tensor. Nothing in a
// file is executed: classes the reader does not know are kept as inert values. A corrupt,
// truncated or hostile file is a wico::Error naming the file, the byte offset and what was
// expected.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "wico/data/pickle.h"
#include "wico/io/mapped_file.h"

namespace wico::io {

// kDarknet is never detected (Darknet's .weights have no magic bytes and no shapes): its reader
// (io/darknet_weights.h) takes the network's layout.
enum class WeightFormat {
  kTorchZip, kTorchLegacy, kSafetensors, kTorchScript, kPickle, kKerasH5, kDarknet
};
const char* format_name(WeightFormat format);  // "torch zip", "torch legacy", ...

struct WeightFile {
  std::filesystem::path path;
  WeightFormat format = WeightFormat::kTorchZip;
  std::vector<std::pair<std::string, at::Tensor>> tensors;  // in the file's order
  std::vector<std::pair<std::string, data::PyValue>> values;  // non-tensor leaves
  std::vector<std::string> notes;  // what was kept inert or skipped, and why
  std::map<std::string, std::string> metadata;  // safetensors __metadata__
  std::string root;  // the archive's root folder (zip formats)
  std::shared_ptr<const MappedFile> file;  // the mapping the tensors view

  const at::Tensor* find(const std::string& name) const;
  const data::PyValue* find_value(const std::string& name) const;
  std::int64_t element_count() const;  // of every tensor (shared storages counted per name)

 private:
  friend struct WeightFileBuilder;
  std::unordered_map<std::string, std::size_t> index_;
};

// Detects the format from the first bytes; an unknown file is an Error that names the file and
// shows its first bytes.
WeightFormat detect_weight_format(const std::filesystem::path& path);

WeightFile read_weights(const std::filesystem::path& path);
// One reader each (read_weights dispatches to them).
WeightFile read_torch_zip(const std::filesystem::path& path);
WeightFile read_torch_legacy(const std::filesystem::path& path);
WeightFile read_safetensors(const std::filesystem::path& path);
WeightFile read_torchscript(const std::filesystem::path& path);
WeightFile read_weight_pickle(const std::filesystem::path& path);
// Keras 2.x HDF5 (model.save or model.save_weights; src/io/keras_h5.cpp): tensors named by their
// path below the weights group ("conv2d_1/conv2d_1/kernel:0"), kernels in Keras's layouts (HWIO
// convolutions, [in, out] dense and recurrent kernels), float32 (float64 kept, integers int64);
// keras_version and backend in `metadata`. A build without libhdf5-dev says so.
WeightFile read_keras_h5(const std::filesystem::path& path);

// Writes tensors (contiguous copies, little-endian, ordered by alignment then name as the
// reference writer does) and string metadata. Written to path + ".tmp", then renamed.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace wico::io
