// safetensors (huggingface/safetensors): u64 little-endian header length N, N bytes of JSON,
// then the tensors' bytes. The reader applies the reference reader's rules (spec section 3):
// entries tile the buffer without holes or overlaps, each exactly numel x element size, the last
// one ending the file; names unique; metadata strings only.
#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "little_endian.h"
#include "weight_file_builder.h"
#include "wico/core/error.h"
#include "wico/io/weights.h"

namespace wico::io {

namespace {

constexpr std::uint64_t kMaxHeader = 100000000;

struct SafetensorsType {
  const char* name;
  at::ScalarType dtype;
  std::size_t size;
};

const SafetensorsType kTypes[] = {
    {"BOOL", at::kBool, 1},    {"U8", at::kByte, 1},     {"I8", at::kChar, 1},
    {"I16", at::kShort, 2},    {"F16", at::kHalf, 2},    {"BF16", at::kBFloat16, 2},
    {"I32", at::kInt, 4},      {"F32", at::kFloat, 4},   {"F64", at::kDouble, 8},
    {"I64", at::kLong, 8},     {"C64", at::kComplexFloat, 8}};

const SafetensorsType* type_named(const std::string& name) {
  for (const auto& t : kTypes) {
    if (name == t.name) return &t;
  }
  return nullptr;
}

const SafetensorsType* type_of(at::ScalarType dtype) {
  for (const auto& t : kTypes) {
    if (dtype == t.dtype) return &t;
  }
  return nullptr;
}

struct Entry {
  std::string name;
  const SafetensorsType* type;
  std::vector<std::int64_t> shape;
  std::uint64_t begin, end;
};

}  // namespace

WeightFile read_safetensors(const std::filesystem::path& path) {
  auto mapped = MappedFile::open(path);
  const std::string_view bytes = mapped->bytes();
  const std::string file = path.string();
  auto fail = [&](std::uint64_t offset, const std::string& what) -> void {
    throw Error(detail::concat("malformed safetensors file ", file, " at byte offset ", offset,
                               ": ", what));
  };
  if (bytes.size() < 8) fail(0, "truncated header: fewer than 8 bytes for the header length");
  const std::uint64_t n = read_le(bytes, 0, 8);
  if (n > kMaxHeader) {
    fail(0, detail::concat("header length ", n, " exceeds the limit of ", kMaxHeader));
  }
  if (n > bytes.size() - 8) {
    fail(0, detail::concat("truncated header: its length is ", n, " bytes, the file has ",
                           bytes.size() - 8, " after the length"));
  }
  const std::string_view header = bytes.substr(8, n);
  const std::size_t first = header.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || header[first] != '{') {
    fail(8 + (first == std::string_view::npos ? 0 : first), "the JSON header must start with '{'");
  }
  // Duplicate names are refused (nlohmann keeps the last silently): a callback sees every key.
  std::set<std::string> seen;
  std::string duplicate;
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(
        header.begin(), header.end(),
        [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
          if (depth == 1 && event == nlohmann::json::parse_event_t::key) {
            const std::string key = parsed.get<std::string>();
            if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
          }
          return true;
        });
  } catch (const nlohmann::json::parse_error& e) {
    fail(8 + e.byte, detail::concat("invalid JSON header: ", e.what()));
  } catch (const nlohmann::json::exception& e) {  // a number beyond double's range
    fail(8, detail::concat("invalid JSON header: ", e.what()));
  }
  if (!duplicate.empty()) fail(8, detail::concat("duplicate tensor name '", duplicate, "' in the header"));
  if (!json.is_object()) fail(8, "the JSON header is not an object");

  WeightFile out = WeightFileBuilder::start(path, WeightFormat::kSafetensors, mapped);
  const std::uint64_t buffer = 8 + n;
  const std::uint64_t buffer_size = bytes.size() - buffer;
  std::vector<Entry> entries;
  for (const auto& item : json.items()) {
    // Named copies: lambdas cannot capture structured bindings before C++20 (clang refuses).
    const std::string name = item.key();
    const nlohmann::json& info = item.value();
    if (name == "__metadata__") {
      if (!info.is_object()) fail(8, "__metadata__ is not an object");
      for (const auto& [key, value] : info.items()) {
        if (!value.is_string()) {
          fail(8, detail::concat("__metadata__ value of '", key, "' is not a string: ", value.dump()));
        }
        out.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& what) { fail(8, detail::concat("tensor '", name, "': ", what)); };
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") ||
        !info.contains("data_offsets")) {
      bad("expected {\"dtype\", \"shape\", \"data_offsets\"}");
    }
    if (!info["dtype"].is_string()) bad("dtype is not a string");
    const std::string dtype = info["dtype"].get<std::string>();
    const SafetensorsType* type = type_named(dtype);
    if (type == nullptr) {
      bad(detail::concat("dtype ", dtype, " is not supported (LibTorch 1.13 has BOOL U8 I8 I16 F16 "
                         "BF16 I32 F32 F64 I64 C64)"));
    }
    Entry e{name, type, {}, 0, 0};
    if (!info["shape"].is_array()) bad("shape is not a list");
    for (const auto& d : info["shape"]) {
      if (!d.is_number_unsigned()) bad(detail::concat("shape holds ", d.dump(), ", not a size"));
      if (d.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        bad("shape too large");
      }
      e.shape.push_back(d.get<std::int64_t>());
    }
    const auto& offsets = info["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      bad("data_offsets is not [begin, end]");
    }
    e.begin = offsets[0].get<std::uint64_t>();
    e.end = offsets[1].get<std::uint64_t>();
    if (e.end < e.begin) bad(detail::concat("data_offsets end ", e.end, " < begin ", e.begin));
    if (e.end > buffer_size) {
      fail(buffer + e.begin, detail::concat("tensor '", name, "': data_offsets [", e.begin, ", ",
                                            e.end, ") out of range of the ", buffer_size,
                                            "-byte buffer"));
    }
    std::uint64_t numel = 1;
    for (const std::int64_t d : e.shape) {
      if (d != 0 && numel > std::numeric_limits<std::uint64_t>::max() / 8 / static_cast<std::uint64_t>(d)) {
        bad("element count overflows");
      }
      numel *= static_cast<std::uint64_t>(d);
    }
    if (numel * type->size != e.end - e.begin) {
      fail(buffer + e.begin, detail::concat("tensor '", name, "': size mismatch: ", numel,
                                            " elements of ", dtype, " need ", numel * type->size,
                                            " bytes, data_offsets span ", e.end - e.begin));
    }
    entries.push_back(std::move(e));
  }
  // The entries, by begin, must tile the buffer exactly.
  std::vector<const Entry*> order;
  for (const auto& e : entries) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  std::uint64_t expected = 0;
  for (const Entry* e : order) {
    if (e->begin < expected) {
      fail(buffer + e->begin, detail::concat("tensor '", e->name, "' overlaps the previous tensor (",
                                             "begins at ", e->begin, ", previous ends at ", expected, ")"));
    }
    if (e->begin > expected) {
      fail(buffer + expected, detail::concat("hole of ", e->begin - expected, " bytes before tensor '",
                                             e->name, "'"));
    }
    expected = e->end;
  }
  if (expected != buffer_size) {
    fail(buffer + expected, detail::concat(buffer_size - expected,
                                           " trailing bytes after the last tensor"));
  }
  // Header order is JSON's (sorted by nlohmann): report tensors in data order, as written.
  for (const Entry* e : order) {
    const char* data = mapped->data() + buffer + e->begin;
    at::Tensor t;
    const std::int64_t numel = static_cast<std::int64_t>((e->end - e->begin) / e->type->size);
    if (numel == 0) {
      t = at::empty(e->shape, at::TensorOptions().dtype(e->type->dtype));
    } else {
      t = at::from_blob(const_cast<char*>(data), e->shape, [mapped](void*) {},
                        at::TensorOptions().dtype(e->type->dtype));
      // Writers other than the reference one need not align tensors: a view all the same
      // (ATen's CPU kernels load unaligned; see torch_pickle.cpp).
    }
    WeightFileBuilder::add_tensor(out, e->name, t);
  }
  return out;
}

void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  struct Item {
    std::string name;
    at::Tensor tensor;
    const SafetensorsType* type;
  };
  std::vector<Item> items;
  std::set<std::string> names;
  for (const auto& [name, tensor] : tensors) {
    const SafetensorsType* type = type_of(tensor.scalar_type());
    if (type == nullptr) {
      throw Error(detail::concat("write_safetensors ", path.string(), ": tensor '", name, "' has dtype ",
                                 tensor.scalar_type(), ", which safetensors cannot hold"));
    }
    if (!names.insert(name).second) {
      throw Error(detail::concat("write_safetensors ", path.string(), ": duplicate name '", name, "'"));
    }
    items.push_back({name, tensor.detach().to(at::kCPU).contiguous(), type});
  }
  // The reference writer's order: larger elements first, then by name, so each is aligned.
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.type->size != b.type->size ? a.type->size > b.type->size : a.name < b.name;
  });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const Item& item : items) {
    const std::uint64_t size = static_cast<std::uint64_t>(item.tensor.numel()) * item.type->size;
    header[item.name] = {{"dtype", item.type->name},
                         {"shape", item.tensor.sizes().vec()},
                         {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::filesystem::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(detail::concat("cannot write ", temporary.string()));
    char length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<char>((text.size() >> (8 * i)) & 0xFF);
    out.write(length, 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const Item& item : items) {
      out.write(static_cast<const char*>(item.tensor.data_ptr()),
                static_cast<std::streamsize>(item.tensor.numel() * item.type->size));
    }
    out.flush();
    if (!out) throw Error(detail::concat("cannot write ", temporary.string(), " (disk full?)"));
  }
  std::filesystem::rename(temporary, path);
}

}  // namespace wico::io
