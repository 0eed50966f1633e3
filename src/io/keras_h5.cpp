// Keras HDF5 weight files (Keras 2.x `model.save` / `model.save_weights`, as MCN's
// yolov3_480000.h5 and VLT's released best_map.h5 are) through the HDF5 C library.
//
// The layout (keras/engine/saving.py of Keras 2.3.1, save_weights_to_hdf5_group): a group (the
// root for save_weights, /model_weights for model.save) whose attribute `layer_names` lists the
// layers in the model's order (split into layer_names0, layer_names1, ... past 64,512 bytes); a
// subgroup per layer whose attribute `weight_names` lists its weights in the layer's order (an
// empty float array for a layer without weights); each weight a dataset at that name below the
// layer's group ("conv2d_1/kernel:0" -> /conv2d_1/conv2d_1/kernel:0). Tensors are named by that
// path from the weights group, in the file's layer and weight order.
//
// The only translation unit that includes HDF5's headers (CMakeLists.txt gives it
// WICO_HAVE_HDF5 and the include path when libhdf5-dev is found).
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "weight_file_builder.h"
#include "wico/core/error.h"
#include "wico/io/weights.h"

#ifdef WICO_HAVE_HDF5
#include <hdf5.h>
#endif

namespace wico::io {

#ifdef WICO_HAVE_HDF5
namespace {

// Closes an HDF5 identifier when it goes out of scope.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// HDF5 prints its own error stack to stderr by default; the reader turns failures into
// wico::Error messages instead, so the printing is off while it runs.
class QuietErrors {
 public:
  QuietErrors() {
    H5Eget_auto2(H5E_DEFAULT, &function_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietErrors() { H5Eset_auto2(H5E_DEFAULT, function_, data_); }
  QuietErrors(const QuietErrors&) = delete;
  QuietErrors& operator=(const QuietErrors&) = delete;

 private:
  H5E_auto2_t function_ = nullptr;
  void* data_ = nullptr;
};

class KerasReader {
 public:
  KerasReader(const std::filesystem::path& path, hid_t file, std::uintmax_t file_size)
      : path_(path), file_(file), file_size_(file_size) {}

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw Error(detail::concat(path_.string(), ": ", where, ": ", what));
  }

  bool has_attribute(hid_t object, const std::string& name) const {
    return H5Aexists(object, name.c_str()) > 0;
  }

  // A string-array attribute (fixed- or variable-length strings); an empty array of any type
  // is an empty list, as Keras writes np.asarray([]) for a layer without weights.
  std::vector<std::string> strings(hid_t object, const std::string& where,
                                   const std::string& name) const {
    const Handle attr(H5Aopen(object, name.c_str(), H5P_DEFAULT), H5Aclose);
    if (!attr.valid()) fail(where, detail::concat("cannot open attribute '", name, "'"));
    const Handle space(H5Aget_space(attr.get()), H5Sclose);
    const hssize_t count = H5Sget_simple_extent_npoints(space.get());
    if (count < 0) fail(where, detail::concat("attribute '", name, "' has no readable extent"));
    if (count == 0) return {};
    const Handle type(H5Aget_type(attr.get()), H5Tclose);
    if (H5Tget_class(type.get()) != H5T_STRING) {
      fail(where, detail::concat("attribute '", name, "' holds ", count,
                                 " non-string values; expected an array of names"));
    }
    std::vector<std::string> out;
    if (H5Tis_variable_str(type.get()) > 0) {
      const Handle memory(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(memory.get(), H5T_VARIABLE);
      std::vector<char*> raw(static_cast<std::size_t>(count), nullptr);
      if (H5Aread(attr.get(), memory.get(), raw.data()) < 0) {
        fail(where, detail::concat("cannot read attribute '", name, "'"));
      }
      for (char* s : raw) out.emplace_back(s ? s : "");
      H5Dvlen_reclaim(memory.get(), space.get(), H5P_DEFAULT, raw.data());
      return out;
    }
    const std::size_t width = H5Tget_size(type.get());
    if (width == 0 || width > (std::size_t{1} << 20)) {
      fail(where, detail::concat("attribute '", name, "' has strings of ", width, " bytes"));
    }
    std::vector<char> raw(width * static_cast<std::size_t>(count));
    if (H5Aread(attr.get(), type.get(), raw.data()) < 0) {
      fail(where, detail::concat("cannot read attribute '", name, "'"));
    }
    for (hssize_t i = 0; i < count; ++i) {
      const char* s = raw.data() + static_cast<std::size_t>(i) * width;
      std::size_t n = 0;
      while (n < width && s[n] != '\0') ++n;  // fixed-length strings are NUL-padded
      out.emplace_back(s, n);
    }
    return out;
  }

  // Keras's save_attributes_to_hdf5_group: `name`, or `name0`, `name1`, ... when it was split.
  std::vector<std::string> names(hid_t object, const std::string& where,
                                 const std::string& name) const {
    if (has_attribute(object, name)) return strings(object, where, name);
    std::vector<std::string> out;
    for (int chunk = 0; has_attribute(object, name + std::to_string(chunk)); ++chunk) {
      for (auto& s : strings(object, where, name + std::to_string(chunk))) out.push_back(std::move(s));
    }
    return out;
  }

  bool has_names(hid_t object, const std::string& name) const {
    return has_attribute(object, name) || has_attribute(object, name + "0");
  }

  // One weight: its dataset read into a tensor (floating types as float32, float64 kept;
  // integers as int64).
  at::Tensor dataset(hid_t layer, const std::string& weight, const std::string& where) const {
    const Handle set(H5Dopen2(layer, weight.c_str(), H5P_DEFAULT), H5Dclose);
    if (!set.valid()) fail(where, "listed in weight_names but no such dataset");
    const Handle space(H5Dget_space(set.get()), H5Sclose);
    const int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0 || rank > 16) fail(where, detail::concat("unreadable rank ", rank));
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
    H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    std::vector<std::int64_t> sizes;
    std::uint64_t numel = 1;
    for (const hsize_t d : dims) {
      if (d > 0 && numel > std::numeric_limits<std::uint64_t>::max() / d) {
        fail(where, "the element count overflows");
      }
      numel *= d;
      sizes.push_back(static_cast<std::int64_t>(d));
    }
    const Handle type(H5Dget_type(set.get()), H5Tclose);
    const H5T_class_t kind = H5Tget_class(type.get());
    at::ScalarType scalar = at::kFloat;
    hid_t memory = H5T_NATIVE_FLOAT;
    if (kind == H5T_FLOAT) {
      const bool wide = H5Tget_size(type.get()) > 4;
      scalar = wide ? at::kDouble : at::kFloat;
      memory = wide ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT;
    } else if (kind == H5T_INTEGER) {
      scalar = at::kLong;
      memory = H5T_NATIVE_INT64;
    } else {
      fail(where, detail::concat("HDF5 type class ", static_cast<int>(kind),
                                 " is not a number (expected float or integer weights)"));
    }
    // Sizes read from the file drive the allocation: a dataset stored whole must fit in the
    // file; a chunked (possibly compressed) one may not claim more than 1,024 times it.
    const std::uint64_t bytes = numel * c10::elementSize(scalar);
    const bool contiguous = [&] {
      const Handle plist(H5Dget_create_plist(set.get()), H5Pclose);
      return H5Pget_layout(plist.get()) != H5D_CHUNKED;
    }();
    const std::uint64_t stored = numel * H5Tget_size(type.get());
    if ((contiguous && stored > file_size_) || bytes / 1024 > file_size_) {
      fail(where, detail::concat("claims ", numel, " elements (", stored,
                                 " bytes) in a file of ", file_size_, " bytes"));
    }
    at::Tensor out = at::empty(sizes, at::TensorOptions().dtype(scalar));
    if (numel > 0 &&
        H5Dread(set.get(), memory, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data_ptr()) < 0) {
      fail(where, "the data cannot be read (truncated or corrupt file?)");
    }
    return out;
  }

  WeightFile read() const {
    hid_t group = file_;
    std::string prefix;
    std::unique_ptr<Handle> model_weights;
    if (!has_names(file_, "layer_names")) {
      if (H5Lexists(file_, "model_weights", H5P_DEFAULT) <= 0) {
        fail("/", "an HDF5 file but not a Keras weight file: no 'layer_names' attribute at the "
                  "root (model.save_weights) and no /model_weights group (model.save)");
      }
      model_weights = std::make_unique<Handle>(H5Gopen2(file_, "model_weights", H5P_DEFAULT),
                                               H5Gclose);
      group = model_weights->get();
      prefix = "model_weights/";
      if (!has_names(group, "layer_names")) {
        fail("/model_weights", "no 'layer_names' attribute");
      }
    }
    WeightFile out = WeightFileBuilder::start(path_, WeightFormat::kKerasH5, nullptr);
    for (const char* key : {"keras_version", "backend"}) {
      if (has_attribute(group, key)) {
        const auto value = strings(group, "/" + prefix, key);
        if (!value.empty()) out.metadata[key] = value.front();
      }
    }
    for (const std::string& layer : names(group, "/" + prefix, "layer_names")) {
      const std::string where = "/" + prefix + layer;
      if (H5Lexists(group, layer.c_str(), H5P_DEFAULT) <= 0) {
        fail(where, "listed in layer_names but the group is missing");
      }
      const Handle g(H5Gopen2(group, layer.c_str(), H5P_DEFAULT), H5Gclose);
      if (!g.valid()) fail(where, "not a group");
      if (!has_names(g.get(), "weight_names")) fail(where, "no 'weight_names' attribute");
      for (const std::string& weight : names(g.get(), where, "weight_names")) {
        const std::string name = layer + "/" + weight;
        if (H5Lexists(g.get(), weight.substr(0, weight.find('/')).c_str(), H5P_DEFAULT) <= 0) {
          fail(where + "/" + weight, "listed in weight_names but no such dataset");
        }
        if (!WeightFileBuilder::add_tensor(out, name, dataset(g.get(), weight, where + "/" + weight))) {
          fail(where, detail::concat("weight '", weight, "' listed twice"));
        }
      }
    }
    return out;
  }

 private:
  const std::filesystem::path& path_;
  hid_t file_;
  std::uintmax_t file_size_;
};

}  // namespace
#endif

WeightFile read_keras_h5(const std::filesystem::path& path) {
#ifdef WICO_HAVE_HDF5
  const QuietErrors quiet;
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(detail::concat("cannot open weight file ", path.string(), ": ", ec.message()));
  const Handle file(H5Fopen(path.string().c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.valid()) {
    throw Error(detail::concat(path.string(), ": not a readable HDF5 file (truncated or corrupt; "
                               "the HDF5 signature is there but its superblock or root group is not)"));
  }
  return KerasReader(path, file.get(), size).read();
#else
  throw Error(detail::concat(path.string(), ": a Keras HDF5 weight file, but this build has no "
                             "HDF5 library: install libhdf5-dev (scripts/setup.sh) and rebuild"));
#endif
}

}  // namespace wico::io
