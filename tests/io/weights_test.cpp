// The weight-file readers against files written by Python's torch.save (zip and legacy),
// pickle (numpy and tensors), torch.jit.save and a safetensors writer following the spec
// (scripts/make_weight_fixtures.py and tests/data/weights/expected.json): names, shapes, dtypes,
// every value, shared storages, non-tensor entries; every broken safetensors rule and every
// truncation of two files gives an Error naming a byte offset.
#include "wico/io/weights.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "wico/core/error.h"
#include "wico/io/zip_archive.h"

namespace wico::io {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kDir = fs::path(WICO_TEST_DATA_DIR) / "weights";

const nlohmann::json& expected() {
  static const nlohmann::json j = [] {
    std::ifstream in(kDir / "expected.json");
    return nlohmann::json::parse(in);
  }();
  return j;
}

at::ScalarType dtype_named(const std::string& name) {
  static const std::map<std::string, at::ScalarType> kTypes = {
      {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf},
      {"bfloat16", at::kBFloat16}, {"int64", at::kLong}, {"int32", at::kInt},
      {"int16", at::kShort}, {"int8", at::kChar}, {"uint8", at::kByte}, {"bool", at::kBool}};
  return kTypes.at(name);
}

WeightFormat format_named(const std::string& name) {
  static const std::map<std::string, WeightFormat> kFormats = {
      {"torch_zip", WeightFormat::kTorchZip}, {"torch_legacy", WeightFormat::kTorchLegacy},
      {"safetensors", WeightFormat::kSafetensors}, {"torchscript", WeightFormat::kTorchScript},
      {"pickle", WeightFormat::kPickle}};
  return kFormats.at(name);
}

// A JSON scalar (or list of scalars) equal to a Python value read from the file.
bool same_value(const nlohmann::json& j, const data::PyValue& v) {
  if (j.is_boolean()) return v.is_bool() && v.as_bool() == j.get<bool>();
  if (j.is_number_integer()) return v.is_int() && v.as_int() == j.get<std::int64_t>();
  if (j.is_number_float()) return (v.is_float() || v.is_int()) && v.as_float() == j.get<double>();
  if (j.is_string()) return v.is_str() && v.as_str() == j.get<std::string>();
  if (j.is_array()) {
    if (!v.is_list() && !v.is_tuple()) return false;
    if (v.size() != j.size()) return false;
    for (std::size_t i = 0; i < j.size(); ++i) {
      if (!same_value(j[i], v[i])) return false;
    }
    return true;
  }
  return false;
}

class FixtureFile : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureFile, ReadsEveryTensorValueAndEntry) {
  const std::string name = GetParam();
  const auto& e = expected().at(name);
  const fs::path path = kDir / name;
  EXPECT_EQ(detect_weight_format(path), format_named(e.at("format")));
  const WeightFile file = read_weights(path);
  EXPECT_EQ(file.format, format_named(e.at("format")));
  if (e.contains("root")) {
    EXPECT_EQ(file.root, e.at("root").get<std::string>());
  }
  const auto& tensors = e.at("tensors");
  EXPECT_EQ(file.tensors.size(), tensors.size());
  for (const auto& [tensor_name, info] : tensors.items()) {
    const at::Tensor* t = file.find(tensor_name);
    ASSERT_NE(t, nullptr) << tensor_name;
    EXPECT_EQ(t->sizes().vec(), info.at("shape").get<std::vector<std::int64_t>>()) << tensor_name;
    EXPECT_EQ(t->scalar_type(), dtype_named(info.at("dtype"))) << tensor_name;
    const at::Tensor flat = t->to(at::kDouble).contiguous().reshape({-1});
    const auto values = info.at("values").get<std::vector<double>>();
    ASSERT_EQ(flat.numel(), static_cast<std::int64_t>(values.size())) << tensor_name;
    for (std::size_t i = 0; i < values.size(); ++i) {
      EXPECT_EQ(flat[static_cast<std::int64_t>(i)].item<double>(), values[i])
          << tensor_name << "[" << i << "]";
    }
  }
  for (const auto& [value_name, value] : e.at("scalars").items()) {
    const data::PyValue* v = file.find_value(value_name);
    ASSERT_NE(v, nullptr) << value_name;
    EXPECT_TRUE(same_value(value, *v)) << value_name << ": " << v->repr() << " vs " << value.dump();
  }
  for (const auto& pair : e.at("shared")) {
    const at::Tensor* a = file.find(pair[0]);
    const at::Tensor* b = file.find(pair[1]);
    ASSERT_TRUE(a && b);
    EXPECT_TRUE(a->storage().is_alias_of(b->storage())) << pair.dump();
  }
}

std::vector<std::string> fixture_files() {
  std::vector<std::string> names;
  for (const auto& [name, e] : expected().items()) {
    if (name != "broken") names.push_back(name);
  }
  return names;
}

INSTANTIATE_TEST_SUITE_P(Weights, FixtureFile, ::testing::ValuesIn(fixture_files()),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return n;
                         });

TEST(Weights, NonTensorObjectsAreInertAndNoted) {
  const WeightFile file = read_weights(kDir / "checkpoint.pth");
  bool namespace_noted = false;
  for (const auto& note : file.notes) namespace_noted |= note.find("argparse.Namespace") != std::string::npos;
  EXPECT_TRUE(namespace_noted);
  // The scheduler's lambdas pickle as None: nothing to read, nothing fails.
  EXPECT_NE(file.find("optimizer.state.0.exp_avg"), nullptr);
}

TEST(Weights, TensorsOfZipFilesViewTheMappedFile) {
  const WeightFile file = read_weights(kDir / "state_dict.pth");
  ASSERT_TRUE(file.file);
  const at::Tensor* weight = file.find("0.weight");
  ASSERT_NE(weight, nullptr);
  const char* data = static_cast<const char*>(weight->data_ptr());
  EXPECT_GE(data, file.file->data());
  EXPECT_LT(data, file.file->data() + file.file->size());
}

TEST(Weights, BrokenSafetensorsNameTheRuleAndTheOffset) {
  for (const auto& [name, word] : expected().at("broken").items()) {
    const std::string message = test::thrown_message<Error>([&] { read_weights(kDir / name); });
    std::string lower = message;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_THAT(lower, HasSubstr(word.get<std::string>())) << name << ": " << message;
    EXPECT_THAT(message, HasSubstr("byte offset")) << name;
    EXPECT_THAT(message, HasSubstr(name)) << name;
  }
}

// Every prefix of a file is an Error naming a byte offset: no crash, no hang, no huge allocation.
void expect_every_truncation_fails(const std::string& name) {
  const std::string bytes = test::read_file(kDir / name);
  test::TempDir dir;
  const fs::path path = dir.path() / name;
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(n));
    }
    try {
      read_weights(path);
      ADD_FAILURE() << name << " truncated to " << n << " bytes was read";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("byte offset")) << name << " at " << n;
    }
  }
}

TEST(Weights, EveryTruncationOfAZipFileIsAnError) { expect_every_truncation_fails("state_dict.pth"); }
TEST(Weights, EveryTruncationOfALegacyFileIsAnError) {
  expect_every_truncation_fails("state_dict_legacy.pth");
}
TEST(Weights, EveryTruncationOfASafetensorsFileIsAnError) {
  expect_every_truncation_fails("good.safetensors");
}

TEST(Weights, CorruptedStorageExtentIsAnError) {
  // A storage record 4 bytes shorter (in the central directory) than its tensor needs.
  test::TempDir dir;
  const std::string bytes = test::read_file(kDir / "my.model.v2.pth");
  const fs::path path = dir.write("copy.pth", bytes);
  ZipArchive zip(MappedFile::open(path));
  const ZipEntry* storage = nullptr;
  for (const auto& e : zip.entries()) {
    if (e.name.find("/data/") != std::string::npos) storage = &e;
  }
  ASSERT_NE(storage, nullptr);
  // Rewrite the central directory size fields of that record to 4 bytes less.
  std::string changed = bytes;
  const std::string name = storage->name;
  std::size_t central = changed.rfind(name);
  ASSERT_NE(central, std::string::npos);
  const std::size_t header = central - 46;
  for (std::size_t field : {header + 20, header + 24}) {
    std::uint32_t size = 0;
    for (int i = 0; i < 4; ++i) size |= static_cast<std::uint32_t>(static_cast<unsigned char>(changed[field + i])) << (8 * i);
    size -= 4;
    for (int i = 0; i < 4; ++i) changed[field + i] = static_cast<char>((size >> (8 * i)) & 0xFF);
  }
  const fs::path bad = dir.write("bad.pth", changed);
  const std::string message = test::thrown_message<Error>([&] { read_weights(bad); });
  EXPECT_THAT(message, HasSubstr("bytes; the storage needs"));
  EXPECT_THAT(message, HasSubstr("byte offset"));
}

TEST(Weights, UnknownFilesAreRejectedWithTheirFirstBytes) {
  test::TempDir dir;
  const auto path = dir.write("weights.bin", "GIF89a not weights");
  const std::string message = test::thrown_message<Error>([&] { read_weights(path); });
  EXPECT_THAT(message, HasSubstr("unknown weight file format"));
  EXPECT_THAT(message, HasSubstr("47 49 46 38"));
  EXPECT_THAT(message, HasSubstr("weights.bin"));
  EXPECT_THAT(test::thrown_message<Error>([&] { read_weights(dir.path() / "missing.pth"); }),
              HasSubstr("missing.pth"));
}

TEST(Weights, SafetensorsRoundTripKeepsNamesDtypesValuesAndMetadata) {
  test::TempDir dir;
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"a.weight", at::randn({3, 4}, gen)},
      {"a.half", at::randn({5}, gen).to(at::kHalf)},
      {"b.bf16", at::randn({2, 2}, gen).to(at::kBFloat16)},
      {"c.long", at::arange(6, at::kLong).reshape({2, 3})},
      {"d.mask", at::randn({7}, gen) > 0},
      {"e.scalar", at::scalar_tensor(2.5, at::kDouble)},
      {"f.empty", at::empty({0, 3})},
      {"g.transposed", at::randn({3, 2}, gen).t()}};
  const auto path = dir.path() / "ours.safetensors";
  write_safetensors(path, tensors, {{"wico_config", "a: 1\n"}});
  const WeightFile file = read_safetensors(path);
  EXPECT_EQ(file.metadata.at("wico_config"), "a: 1\n");
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    const at::Tensor* read = file.find(name);
    ASSERT_NE(read, nullptr) << name;
    EXPECT_EQ(read->scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(read->equal(t)) << name;
  }
  // The reference writer's layout: the header padded to 8 bytes, every tensor aligned.
  const std::string bytes = test::read_file(path);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  for (const auto& [name, t] : file.tensors) {
    if (t.numel() == 0) continue;
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data_ptr()) % t.element_size(), 0u) << name;
  }
  EXPECT_THAT(test::thrown_message<Error>([&] {
                write_safetensors(dir.path() / "x.safetensors", {{"a", at::zeros({1})}, {"a", at::zeros({1})}});
              }),
              HasSubstr("duplicate name 'a'"));
}

TEST(Weights, TorchScriptKeepsHalfTensors) {
  const WeightFile file = read_weights(kDir / "scripted_fp16.pt");
  ASSERT_NE(file.find("lin.weight"), nullptr);
  EXPECT_EQ(file.find("lin.weight")->scalar_type(), at::kHalf);
  EXPECT_EQ(file.find("bn.num_batches_tracked")->scalar_type(), at::kLong);
}

}  // namespace
}  // namespace wico::io
