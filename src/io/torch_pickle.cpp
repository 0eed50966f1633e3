// torch.save files (zip and legacy) and plain pickles of numpy arrays or tensors (detectron2's
// .pkl): the pickle is read with inert objects (data/pickle.h) and interpreted here, against an
// allowlist of the constructors these files use; everything else stays an inert value.
// Formats: shared/specs/weights.md sections 1, 2 and 5.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "wico/core/error.h"
#include "little_endian.h"
#include "weight_file_builder.h"
#include "wico/io/weights.h"
#include "wico/io/zip_archive.h"

namespace wico::io {

using data::PyValue;

namespace {

// ---- element types ----

struct ElementType {
  at::ScalarType dtype;
  std::size_t size;
};

// torch.FloatStorage, torch.cuda.HalfStorage, ... (every location is read to the CPU).
std::optional<ElementType> storage_type(std::string name) {
  for (const char* prefix : {"torch.cuda.", "torch."}) {
    if (name.rfind(prefix, 0) == 0) {
      name = name.substr(std::strlen(prefix));
      break;
    }
  }
  static const std::unordered_map<std::string, ElementType> kTypes = {
      {"DoubleStorage", {at::kDouble, 8}}, {"FloatStorage", {at::kFloat, 4}},
      {"HalfStorage", {at::kHalf, 2}},     {"BFloat16Storage", {at::kBFloat16, 2}},
      {"LongStorage", {at::kLong, 8}},     {"IntStorage", {at::kInt, 4}},
      {"ShortStorage", {at::kShort, 2}},   {"CharStorage", {at::kChar, 1}},
      {"ByteStorage", {at::kByte, 1}},     {"BoolStorage", {at::kBool, 1}},
      {"ComplexFloatStorage", {at::kComplexFloat, 8}},
      {"ComplexDoubleStorage", {at::kComplexDouble, 16}}};
  const auto it = kTypes.find(name);
  if (it == kTypes.end()) return std::nullopt;
  return it->second;
}

// numpy type codes ('f4', '<i8', 'b1', ...).
ElementType numpy_type(const std::string& code) {
  static const std::unordered_map<std::string, ElementType> kTypes = {
      {"f8", {at::kDouble, 8}}, {"f4", {at::kFloat, 4}},   {"f2", {at::kHalf, 2}},
      {"i8", {at::kLong, 8}},   {"i4", {at::kInt, 4}},     {"i2", {at::kShort, 2}},
      {"i1", {at::kChar, 1}},   {"u1", {at::kByte, 1}},    {"b1", {at::kBool, 1}},
      {"c8", {at::kComplexFloat, 8}}, {"c16", {at::kComplexDouble, 16}}};
  const auto it = kTypes.find(code);
  if (it == kTypes.end()) {
    throw Error(detail::concat("numpy dtype '", code,
                               "' has no LibTorch equivalent (supported: f8 f4 f2 i8 i4 i2 i1 u1 "
                               "b1 c8 c16)"));
  }
  return it->second;
}

bool is_numpy(const std::string& class_name, const char* module, const char* name) {
  for (const char* root : {"numpy.core.", "numpy._core."}) {
    if (class_name == detail::concat(root, module, ".", name)) return true;
  }
  return false;
}

// Reverses the bytes of every element (big-endian data).
at::Tensor byte_swapped(const at::Tensor& t, std::size_t element_size) {
  if (element_size == 1) return t;
  const at::Tensor bytes = t.contiguous().view(at::kByte).reshape({-1, static_cast<long>(element_size)});
  return bytes.flip({1}).contiguous().view(t.scalar_type()).reshape(t.sizes());
}

// A 1-D tensor over `count` elements at `data`, kept alive by `keeper`. Legacy files and
// pickled arrays place elements at any byte offset: such views stay unaligned (ATen's CPU
// kernels load with unaligned vector loads), so that the import's copy into the model is the
// only copy.
at::Tensor view_bytes(const char* data, std::int64_t count, ElementType type,
                      std::function<void(void*)> keeper) {
  if (count == 0) return at::empty({0}, at::TensorOptions().dtype(type.dtype));
  return at::from_blob(const_cast<char*>(data), {count}, std::move(keeper),
                       at::TensorOptions().dtype(type.dtype));
}

std::int64_t checked_product(const std::vector<std::int64_t>& sizes, const char* what) {
  std::int64_t n = 1;
  for (const std::int64_t s : sizes) {
    if (s < 0) throw Error(detail::concat(what, ": negative size ", s));
    if (s != 0 && n > std::numeric_limits<std::int64_t>::max() / s) {
      throw Error(detail::concat(what, ": element count overflows"));
    }
    n *= s;
  }
  return n;
}

std::vector<std::int64_t> int_tuple(const PyValue& v, const char* what) {
  if (!v.is_tuple() && !v.is_list() &&
      !(v.is_object() && v.class_name() == "torch.Size" && v.object_args().size() == 1)) {
    throw Error(detail::concat(what, " is not a tuple of ints: ", v.repr(80)));
  }
  const PyValue& items = v.is_object() ? v.object_args()[0] : v;
  std::vector<std::int64_t> out;
  for (const PyValue& item : items.items()) {
    if (!item.is_int()) throw Error(detail::concat(what, " holds a non-int: ", item.repr(80)));
    out.push_back(item.as_int());
  }
  return out;
}

// ---- storages ----

// The storages of one file: each key read once, so views and tied weights share memory.
class StorageTable {
 public:
  using Loader = std::function<at::Tensor(const std::string& key, ElementType type,
                                          std::int64_t numel)>;
  explicit StorageTable(Loader loader) : loader_(std::move(loader)) {}
  // Storages already read (a legacy stream's), checked against the ids' element counts.
  static StorageTable of(const std::unordered_map<std::string, at::Tensor>& storages) {
    return StorageTable([&storages](const std::string& key, ElementType, std::int64_t numel) {
      const auto it = storages.find(key);
      if (it == storages.end()) throw Error(detail::concat("storage '", key, "' has no data"));
      if (it->second.numel() != numel) {
        throw Error(detail::concat("storage '", key, "' holds ", it->second.numel(),
                                   " elements; its id says ", numel));
      }
      return it->second;
    });
  }

  // ('storage', class, key, location, numel[, view_metadata]) -> a 1-D tensor of its elements.
  at::Tensor storage(const PyValue& id) {
    if (!id.is_tuple() || id.size() < 5 || !id[0].is_str() || id[0].as_str() != "storage") {
      throw Error(detail::concat("unknown persistent id ", id.repr(120),
                                 " (expected ('storage', class, key, location, size))"));
    }
    const PyValue& cls = id[1];
    if (!cls.is_global()) throw Error(detail::concat("storage class is not a global: ", cls.repr(80)));
    const auto type = storage_type(cls.class_name());
    if (!type) {
      throw Error(detail::concat("unsupported storage class ", cls.class_name(),
                                 " (quantized and untyped storages are not read)"));
    }
    if (!id[2].is_str() && !id[2].is_int()) throw Error("storage key is not a str");
    const std::string key = id[2].is_str() ? id[2].as_str() : std::to_string(id[2].as_int());
    if (!id[4].is_int() || id[4].as_int() < 0) {
      throw Error(detail::concat("storage '", key, "' has an invalid size ", id[4].repr(40)));
    }
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      at::Tensor t = loader_(key, *type, id[4].as_int());
      it = cache_.emplace(key, std::move(t)).first;
    }
    at::Tensor storage = it->second;
    if (storage.scalar_type() != type->dtype) {
      throw Error(detail::concat("storage '", key, "' is read as ", cls.class_name(),
                                 " and as another type"));
    }
    // Legacy storage views: (view key, offset, size) in elements of the base storage.
    if (id.size() >= 6 && !id[5].is_none()) {
      const PyValue& view = id[5];
      if (!view.is_tuple() || view.size() != 3 || !view[1].is_int() || !view[2].is_int()) {
        throw Error(detail::concat("malformed storage view ", view.repr(80)));
      }
      const std::int64_t offset = view[1].as_int(), size = view[2].as_int();
      if (offset < 0 || size < 0 || offset > storage.numel() - size) {
        throw Error(detail::concat("storage view [", offset, ", +", size, ") outside storage '",
                                   key, "' of ", storage.numel(), " elements"));
      }
      storage = storage.narrow(0, offset, size);
    }
    return storage;
  }

 private:
  Loader loader_;
  std::unordered_map<std::string, at::Tensor> cache_;
};

// ---- interpretation ----

PyValue read_legacy_stream(std::string_view bytes, const std::string& source,
                           std::function<void(void*)> keeper, std::size_t base_offset,
                           std::unordered_map<std::string, at::Tensor>& storages_out);

class Interpreter {
 public:
  Interpreter(std::string source, StorageTable* storages, WeightFile& out)
      : source_(std::move(source)), storages_(storages), out_(out) {}

  void flatten(const PyValue& v, const std::string& name, int depth = 0) {
    if (depth > 64) throw Error(detail::concat("nesting deeper than 64 at '", name, "'"));
    auto join = [&](const std::string& key) { return name.empty() ? key : name + "." + key; };
    switch (v.kind()) {
      case PyValue::Kind::kDict:
        for (const auto& [key, value] : v.as_dict()) flatten(value, join(key_text(key)), depth + 1);
        return;
      case PyValue::Kind::kList:
      case PyValue::Kind::kTuple: {
        const bool plain = std::all_of(v.items().begin(), v.items().end(), [](const PyValue& x) {
          return x.is_none() || x.is_bool() || x.is_int() || x.is_float() || x.is_str();
        });
        if (plain) return add_value(name, v);
        for (std::size_t i = 0; i < v.size(); ++i) flatten(v[i], join(std::to_string(i)), depth + 1);
        return;
      }
      case PyValue::Kind::kObject:
      case PyValue::Kind::kPersistentId: {
        Value value;
        try {
          value = eval(v);
        } catch (const Error& e) {
          throw Error(detail::concat(source_, ": entry '", name, "': ", e.what()));
        }
        if (value.tensor.defined()) return add_tensor(name, value.tensor);
        if (!value.plain.is_object()) return add_value(name, value.plain);
        const PyValue& state = v.object_state();
        if (const PyValue* parameters = state.find("_parameters")) {
          return flatten_module(state, *parameters, name, depth);
        }
        if (state.is_dict()) {
          out_.notes.push_back(detail::concat("'", name, "': ", v.class_name(),
                                              " read by its attributes"));
          return flatten(state, name, depth + 1);
        }
        out_.notes.push_back(detail::concat("'", name, "': ", v.class_name(), " kept inert"));
        return add_value(name, v);
      }
      default:
        return add_value(name, v);
    }
  }

 private:
  struct Value {
    at::Tensor tensor;  // a tensor or a storage
    PyValue plain;      // otherwise
  };

  static std::string key_text(const PyValue& key) {
    if (key.is_str()) return key.as_str();
    if (key.is_int()) return std::to_string(key.as_int());
    return key.repr(80);
  }

  void add_tensor(const std::string& name, const at::Tensor& t) {
    if (!WeightFileBuilder::add_tensor(out_, name, t)) {
      out_.notes.push_back(detail::concat("'", name, "' appears twice; the first kept"));
    }
  }
  void add_value(const std::string& name, const PyValue& v) {
    if (v.is_none()) return;
    out_.values.emplace_back(name, v);
  }

  // An nn.Module pickled whole: its state_dict is _parameters and persistent _buffers, then
  // its _modules, recursively (None entries skipped, as state_dict does).
  void flatten_module(const PyValue& state, const PyValue& parameters, const std::string& name,
                      int depth) {
    auto join = [&](const std::string& key) { return name.empty() ? key : name + "." + key; };
    for (const auto& [key, value] : parameters.as_dict()) {
      if (!value.is_none()) flatten(value, join(key_text(key)), depth + 1);
    }
    std::unordered_set<std::string> transient;
    if (const PyValue* set = state.find("_non_persistent_buffers_set")) {
      if (set->is_list()) {
        for (const PyValue& b : set->as_list()) {
          if (b.is_str()) transient.insert(b.as_str());
        }
      }
    }
    if (const PyValue* buffers = state.find("_buffers"); buffers && buffers->is_dict()) {
      for (const auto& [key, value] : buffers->as_dict()) {
        if (!value.is_none() && !transient.count(key_text(key))) {
          flatten(value, join(key_text(key)), depth + 1);
        }
      }
    }
    if (const PyValue* modules = state.find("_modules"); modules && modules->is_dict()) {
      for (const auto& [key, value] : modules->as_dict()) {
        if (value.is_none()) continue;
        if (!value.is_object() || !value.object_state().find("_parameters")) {
          throw Error(detail::concat(source_, ": submodule '", join(key_text(key)),
                                     "' is not a module: ", value.repr(80)));
        }
        flatten_module(value.object_state(), value.object_state().at("_parameters"),
                       join(key_text(key)), depth + 1);
      }
    }
  }

  Value eval(const PyValue& v) {
    if (!v.is_object() && !v.is_persistent_id()) return Value{at::Tensor(), v};
    const auto cached = cache_.find(v.identity());
    if (cached != cache_.end()) return cached->second;
    Value result = eval_uncached(v);
    cache_.emplace(v.identity(), result);
    return result;
  }

  at::Tensor eval_tensor(const PyValue& v, const char* what) {
    Value value = eval(v);
    if (!value.tensor.defined()) {
      throw Error(detail::concat(what, " is not a tensor: ", v.repr(80)));
    }
    return value.tensor;
  }

  Value eval_uncached(const PyValue& v) {
    if (v.is_persistent_id()) {
      if (storages_ == nullptr) throw Error("a persistent id in a file that has no storages");
      return Value{storages_->storage(v.persistent_id()), PyValue()};
    }
    const std::string& cls = v.class_name();
    const PyValue& args = v.object_args();
    if (cls == "torch._utils._rebuild_tensor_v2" || cls == "torch._utils._rebuild_tensor") {
      if (args.size() < 4) throw Error(detail::concat(cls, " with ", args.size(), " arguments"));
      return Value{rebuild_tensor(eval_tensor(args[0], "the storage"), args[1], args[2], args[3]),
                   PyValue()};
    }
    if (cls == "torch._utils._rebuild_parameter" ||
        cls == "torch._utils._rebuild_parameter_with_state" || cls == "torch.nn.parameter.Parameter") {
      if (args.size() < 1) throw Error(detail::concat(cls, " without arguments"));
      return Value{eval_tensor(args[0], "the parameter's data"), PyValue()};
    }
    if (cls.rfind("torch._utils._rebuild_", 0) == 0) {
      throw Error(detail::concat(cls, ": quantized, sparse and other special tensors are not read"));
    }
    if (cls == "torch.storage._load_from_bytes") {
      if (args.size() != 1 || !args[0].is_bytes()) throw Error("_load_from_bytes needs one bytes");
      return load_from_bytes(args[0]);
    }
    if (is_numpy(cls, "multiarray", "_reconstruct")) return Value{numpy_array(v), PyValue()};
    if (is_numpy(cls, "numeric", "_frombuffer")) return Value{numpy_frombuffer(args), PyValue()};
    if (is_numpy(cls, "multiarray", "scalar")) return Value{at::Tensor(), numpy_scalar(args)};
    return Value{at::Tensor(), v};
  }

  static at::Tensor rebuild_tensor(const at::Tensor& storage, const PyValue& offset_value,
                                   const PyValue& size_value, const PyValue& stride_value) {
    if (!offset_value.is_int() || offset_value.as_int() < 0) {
      throw Error(detail::concat("invalid storage offset ", offset_value.repr(40)));
    }
    const std::int64_t offset = offset_value.as_int();
    const auto sizes = int_tuple(size_value, "tensor size");
    const auto strides = int_tuple(stride_value, "tensor stride");
    if (sizes.size() != strides.size()) {
      throw Error(detail::concat("tensor size ", size_value.repr(60), " and stride ",
                                 stride_value.repr(60), " differ in rank"));
    }
    const std::int64_t numel = checked_product(sizes, "tensor size");
    if (numel > 0) {
      // The last element addressed must lie inside the storage.
      std::int64_t last = offset;
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        if (strides[i] < 0) throw Error(detail::concat("negative stride ", strides[i]));
        const std::int64_t span = sizes[i] - 1;
        if (strides[i] != 0 && span > (std::numeric_limits<std::int64_t>::max() - last) / strides[i]) {
          throw Error("tensor extent overflows");
        }
        last += span * strides[i];
      }
      if (last >= storage.numel()) {
        throw Error(detail::concat("tensor of size ", size_value.repr(60), ", stride ",
                                   stride_value.repr(60), " at offset ", offset,
                                   " reaches element ", last, " of a storage of ",
                                   storage.numel()));
      }
    } else if (offset > storage.numel()) {
      throw Error(detail::concat("storage offset ", offset, " past a storage of ", storage.numel()));
    }
    if (numel == 0) return at::empty(sizes, storage.options());
    return storage.as_strided(sizes, strides, offset);
  }

  Value load_from_bytes(const PyValue& bytes) {
    std::unordered_map<std::string, at::Tensor> storages;
    const std::string& raw = bytes.as_bytes();
    PyValue keep = bytes;
    PyValue inner = read_legacy_stream(raw, source_ + " (embedded torch stream)",
                                       [keep](void*) {}, 0, storages);
    // The stream pickles one storage (torch.Storage.__reduce__) or a tensor.
    StorageTable table = StorageTable::of(storages);
    Interpreter nested(source_, &table, out_);
    return nested.eval(inner);
  }

  // numpy.dtype('f4', False, True) with state (3, '<', ...).
  static std::pair<ElementType, bool> numpy_dtype(const PyValue& dtype) {
    if (!dtype.is_object() || dtype.class_name().find("dtype") == std::string::npos ||
        dtype.object_args().size() < 1 || !dtype.object_args()[0].is_str()) {
      throw Error(detail::concat("expected a numpy dtype, got ", dtype.repr(80)));
    }
    std::string code = dtype.object_args()[0].as_str();
    char order = '|';
    const PyValue& state = dtype.object_state();
    if (state.is_tuple() && state.size() >= 2 && state[1].is_str() && state[1].size() == 1) {
      order = state[1].as_str()[0];
    }
    if (!code.empty() && (code[0] == '<' || code[0] == '>' || code[0] == '|' || code[0] == '=')) {
      order = code[0];
      code = code.substr(1);
    }
    const ElementType type = numpy_type(code);
    return {type, order == '>' && type.size > 1};
  }

  static const std::string& raw_text(const PyValue& v, const char* what) {
    if (v.is_bytes()) return v.as_bytes();
    if (v.is_str()) return v.as_str();  // a Python 2 str: raw bytes
    throw Error(detail::concat(what, " is not bytes (object arrays are not read): ", v.repr(60)));
  }

  static at::Tensor array_from(const PyValue& holder, const std::string& raw,
                               std::vector<std::int64_t> shape, ElementType type, bool big_endian,
                               bool fortran) {
    const std::int64_t numel = checked_product(shape, "numpy array shape");
    if (static_cast<std::uint64_t>(numel) * type.size != raw.size()) {
      throw Error(detail::concat("numpy array of shape ", shape.size(), "-d with ", numel,
                                 " elements needs ", numel * static_cast<std::int64_t>(type.size),
                                 " bytes, the pickle holds ", raw.size()));
    }
    PyValue keep = holder;
    at::Tensor flat = view_bytes(raw.data(), numel, type, [keep](void*) {});
    at::Tensor t;
    if (fortran && shape.size() > 1) {
      std::vector<std::int64_t> reversed(shape.rbegin(), shape.rend());
      std::vector<std::int64_t> order;
      for (std::int64_t i = static_cast<std::int64_t>(shape.size()) - 1; i >= 0; --i) order.push_back(i);
      t = flat.reshape(reversed).permute(order);
    } else {
      t = flat.reshape(shape);
    }
    return big_endian ? byte_swapped(t, type.size) : t;
  }

  // _reconstruct(ndarray, (0,), b'b') + BUILD (version, shape, dtype, is_fortran, raw data).
  static at::Tensor numpy_array(const PyValue& v) {
    const PyValue& state = v.object_state();
    if (!state.is_tuple() || state.size() < 5) {
      throw Error(detail::concat("numpy array without its state: ", v.repr(80)));
    }
    const auto [type, big_endian] = numpy_dtype(state[2]);
    if (!state[3].is_bool() && !state[3].is_int()) throw Error("numpy is_fortran is not a bool");
    const bool fortran = state[3].is_bool() ? state[3].as_bool() : state[3].as_int() != 0;
    return array_from(state[4], raw_text(state[4], "numpy array data"),
                      int_tuple(state[1], "numpy array shape"), type, big_endian, fortran);
  }

  // Protocol 5: _frombuffer(buffer, dtype, shape, order).
  static at::Tensor numpy_frombuffer(const PyValue& args) {
    if (args.size() != 4 || !args[3].is_str()) throw Error("_frombuffer needs 4 arguments");
    const auto [type, big_endian] = numpy_dtype(args[1]);
    return array_from(args[0], raw_text(args[0], "numpy buffer"), int_tuple(args[2], "shape"),
                      type, big_endian, args[3].as_str() == "F");
  }

  // numpy.core.multiarray.scalar(dtype, raw bytes) -> a Python number.
  static PyValue numpy_scalar(const PyValue& args) {
    if (args.size() != 2) throw Error("numpy scalar needs 2 arguments");
    const auto [type, big_endian] = numpy_dtype(args[0]);
    const std::string& raw = raw_text(args[1], "numpy scalar data");
    if (raw.size() != type.size) throw Error("numpy scalar of the wrong size");
    at::Tensor t = at::from_blob(const_cast<char*>(raw.data()), {}, at::TensorOptions().dtype(type.dtype)).clone();
    if (big_endian) t = byte_swapped(t, type.size);
    if (type.dtype == at::kBool) return PyValue::boolean(t.item<bool>());
    if (at::isIntegralType(type.dtype, false)) return PyValue::integer(t.item<std::int64_t>());
    if (at::isComplexType(type.dtype)) return PyValue::real(at::real(t).item<double>());
    return PyValue::real(t.to(at::kDouble).item<double>());
  }

  std::string source_;
  StorageTable* storages_;
  WeightFile& out_;
  std::unordered_map<const void*, Value> cache_;
};

// The options of every weight pickle: inert objects, and the legacy format's module classes
// ('module', class, source file, source text) resolved to their class.
data::PickleOptions weight_pickle_options(
    std::function<void(const PyValue&)> on_storage = nullptr) {
  data::PickleOptions options;
  options.objects = true;
  options.persistent_load = [on_storage](const PyValue& id) {
    if (id.is_tuple() && id.size() >= 2 && id[0].is_str() && id[0].as_str() == "module") {
      return id[1];
    }
    if (on_storage) on_storage(id);
    return PyValue::persistent(id);
  };
  return options;
}

constexpr unsigned char kLegacyMagic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                            0x20, 0x6a, 0xa8, 0x50, 0x19};

// The magic number pickle: PROTO n, [FRAME], LONG1 of 10 bytes, STOP. Returns its length, or 0.
std::size_t legacy_magic_length(std::string_view bytes) {
  std::size_t pos = 0;
  auto at = [&](std::size_t i) { return static_cast<unsigned char>(bytes[i]); };
  if (bytes.size() < 2 || at(0) != 0x80) return 0;
  pos = 2;
  if (bytes.size() > pos && at(pos) == 0x95) pos += 9;  // FRAME (protocol >= 4)
  if (bytes.size() < pos + 13 || at(pos) != 0x8a || at(pos + 1) != 10) return 0;
  if (std::memcmp(bytes.data() + pos + 2, kLegacyMagic, 10) != 0 || at(pos + 12) != '.') return 0;
  return pos + 13;
}

// A legacy stream: magic, protocol 1001, sys_info, the object, the storage keys, then per key an
// int64 element count and the raw elements. Storages are views of `bytes` kept by `keeper`.
PyValue read_legacy_stream(std::string_view bytes, const std::string& source,
                           std::function<void(void*)> keeper, std::size_t base_offset,
                           std::unordered_map<std::string, at::Tensor>& storages_out) {
  std::size_t pos = legacy_magic_length(bytes);
  if (pos == 0) {
    throw Error(detail::concat(source, ": not a legacy torch.save stream (no magic number at byte "
                                       "offset ", base_offset, ")"));
  }
  auto next = [&](const data::PickleOptions& options, const char* what) {
    PyValue value;
    try {
      pos += data::parse_pickle_prefix(bytes.substr(pos), source, options, value);
    } catch (const Error& e) {
      throw Error(detail::concat("reading the ", what, " pickle of the legacy stream at byte offset ",
                                 base_offset + pos, ": ", e.what()));
    }
    return value;
  };
  const PyValue protocol = next({}, "protocol");
  if (!protocol.is_int() || protocol.as_int() != 1001) {
    throw Error(detail::concat(source, ": legacy protocol ", protocol.repr(40),
                               " (expected 1001)"));
  }
  const PyValue sys_info = next({}, "sys_info");
  bool little_endian = true;
  if (const PyValue* le = sys_info.find("little_endian"); le && le->is_bool()) {
    little_endian = le->as_bool();
  }
  std::unordered_map<std::string, ElementType> types;
  const PyValue object = next(weight_pickle_options([&](const PyValue& id) {
    if (id.is_tuple() && id.size() >= 3 && id[1].is_global() && id[2].is_str()) {
      if (const auto type = storage_type(id[1].class_name())) types[id[2].as_str()] = *type;
    }
  }), "object");
  const PyValue keys = next({}, "storage keys");
  if (!keys.is_list()) throw Error(detail::concat(source, ": the storage key list is not a list"));
  for (const PyValue& key_value : keys.as_list()) {
    if (!key_value.is_str()) throw Error(detail::concat(source, ": a storage key is not a str"));
    const std::string& key = key_value.as_str();
    const auto type = types.find(key);
    if (type == types.end()) {
      throw Error(detail::concat(source, ": storage '", key, "' at byte offset ", base_offset + pos,
                                 " is not referenced by the object"));
    }
    if (bytes.size() - pos < 8) {
      throw Error(detail::concat(source, ": truncated at byte offset ", base_offset + pos,
                                 ": expected the element count of storage '", key, "'"));
    }
    const std::uint64_t count = read_le(bytes, pos, 8);
    pos += 8;
    if (count > (bytes.size() - pos) / type->second.size) {
      throw Error(detail::concat(source, ": truncated at byte offset ", base_offset + pos,
                                 ": storage '", key, "' needs ", count, " elements of ",
                                 type->second.size, " bytes, ", bytes.size() - pos, " bytes left"));
    }
    at::Tensor storage = view_bytes(bytes.data() + pos, static_cast<std::int64_t>(count),
                                    type->second, keeper);
    if (!little_endian) storage = byte_swapped(storage, type->second.size);
    storages_out[key] = storage;
    pos += count * type->second.size;
  }
  return object;
}

}  // namespace

WeightFile read_torch_zip(const std::filesystem::path& path) {
  return read_zip_pickle(path, WeightFormat::kTorchZip, "data.pkl", "data");
}

WeightFile read_zip_pickle(const std::filesystem::path& path, WeightFormat format,
                           const std::string& record, const std::string& storage_folder) {
  auto mapped = MappedFile::open(path);
  ZipArchive zip(mapped);
  WeightFile out = WeightFileBuilder::start(path, format, mapped);
  if (zip.entries().empty()) throw Error(detail::concat(path.string(), ": empty zip archive"));
  const std::string& first = zip.entries().front().name;
  const auto slash = first.find('/');
  if (slash == std::string::npos) {
    throw Error(detail::concat(path.string(), ": zip entry '", first,
                               "' is not inside an archive folder (not a torch.save file)"));
  }
  out.root = first.substr(0, slash);
  const ZipEntry* pickle = zip.find(out.root + "/" + record);
  if (pickle == nullptr) {
    throw Error(detail::concat(path.string(), ": no '", out.root, "/", record,
                               "' record (not a torch.save file)"));
  }
  bool big_endian = false;
  if (const ZipEntry* order = zip.find(out.root + "/byteorder")) {
    big_endian = zip.data(*order) == "big";
  }
  StorageTable storages([&](const std::string& key, ElementType type, std::int64_t numel) {
    const std::string name = out.root + "/" + storage_folder + "/" + key;
    const ZipEntry* entry = zip.find(name);
    if (entry == nullptr) throw Error(detail::concat("no record '", name, "' for storage '", key, "'"));
    if (entry->size != static_cast<std::uint64_t>(numel) * type.size) {
      throw Error(detail::concat("record '", name, "' at byte offset ", entry->data_offset,
                                 " holds ", entry->size, " bytes; the storage needs ", numel,
                                 " x ", type.size));
    }
    at::Tensor t = view_bytes(zip.data(*entry).data(), numel, type, [mapped](void*) {});
    return big_endian ? byte_swapped(t, type.size) : t;
  });
  PyValue root;
  {
    const std::string_view bytes = zip.data(*pickle);
    const std::string source =
        detail::concat(path.string(), " (record ", pickle->name, " at byte offset ",
                       pickle->data_offset, ")");
    root = data::parse_pickle(bytes, source, weight_pickle_options());
  }
  Interpreter(path.string(), &storages, out).flatten(root, "");
  return out;
}

WeightFile read_torch_legacy(const std::filesystem::path& path) {
  auto mapped = MappedFile::open(path);
  WeightFile out = WeightFileBuilder::start(path, WeightFormat::kTorchLegacy, mapped);
  std::unordered_map<std::string, at::Tensor> storages;
  const PyValue root =
      read_legacy_stream(mapped->bytes(), path.string(), [mapped](void*) {}, 0, storages);
  StorageTable table = StorageTable::of(storages);
  Interpreter(path.string(), &table, out).flatten(root, "");
  return out;
}

WeightFile read_weight_pickle(const std::filesystem::path& path) {
  auto mapped = MappedFile::open(path);
  WeightFile out = WeightFileBuilder::start(path, WeightFormat::kPickle, nullptr);
  const PyValue root = data::parse_pickle(mapped->bytes(), path.string(), weight_pickle_options());
  // Arrays are views of the pickle's own byte strings, not of the mapping.
  Interpreter(path.string(), nullptr, out).flatten(root, "");
  return out;
}

bool is_legacy_torch_stream(std::string_view bytes) { return legacy_magic_length(bytes) > 0; }

}  // namespace wico::io
