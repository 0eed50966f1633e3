// Reads the tensor fixtures written by scripts/make_*_fixtures.py: NAME.bin holds raw
// little-endian float32 data, NAME.json the index
//   {"meta": {...}, "tensors": {name: {"shape": [...], "offset": <in floats>}}}.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/module.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace wico::test {

class TensorFixture {
 public:
  // `stem` is the path without extension: data/swin/swin -> swin.json + swin.bin.
  explicit TensorFixture(const std::filesystem::path& stem) {
    std::ifstream json_in(stem.string() + ".json");
    if (!json_in) throw std::runtime_error("cannot read " + stem.string() + ".json");
    const auto index = nlohmann::json::parse(json_in);
    meta_ = index.at("meta");
    std::ifstream bin_in(stem.string() + ".bin", std::ios::binary);
    if (!bin_in) throw std::runtime_error("cannot read " + stem.string() + ".bin");
    std::ostringstream bytes;
    bytes << bin_in.rdbuf();
    const std::string raw = bytes.str();
    static_assert(sizeof(float) == 4);
    const std::uint32_t probe = 1;
    if (*reinterpret_cast<const std::uint8_t*>(&probe) != 1) {
      throw std::runtime_error("tensor fixtures are little-endian; this machine is not");
    }
    for (const auto& [name, entry] : index.at("tensors").items()) {
      std::vector<std::int64_t> shape = entry.at("shape");
      const auto offset = entry.at("offset").get<std::int64_t>();
      std::int64_t count = 1;
      for (auto s : shape) count *= s;
      if ((offset + count) * 4 > static_cast<std::int64_t>(raw.size())) {
        throw std::runtime_error("fixture tensor " + name + " lies past the end of the .bin");
      }
      auto t = at::empty(shape, at::kFloat);
      std::memcpy(t.data_ptr<float>(), raw.data() + offset * 4, count * 4);
      tensors_.emplace(name, t);
    }
  }

  const at::Tensor& get(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw std::runtime_error("no fixture tensor " + name);
    return it->second;
  }
  const nlohmann::json& meta() const { return meta_; }

  // Copies every fixture tensor named `prefix` + P into the module's parameter or buffer P
  // (shapes must match) and returns the names of the module's parameters it did not set.
  // Fixture tensors under `prefix` that the module lacks fail the test (unless excluded by
  // `not_parameters`, e.g. inputs and outputs stored beside the weights).
  std::set<std::string> load_into(torch::nn::Module& module, const std::string& prefix,
                                  const std::set<std::string>& not_parameters = {}) const {
    auto params = module.named_parameters();
    std::set<std::string> unset;
    for (const auto& item : params) unset.insert(item.key());
    at::NoGradGuard no_grad;
    for (const auto& [name, tensor] : tensors_) {
      if (name.rfind(prefix, 0) != 0) continue;
      const auto key = name.substr(prefix.size());
      if (not_parameters.count(key)) continue;
      auto* target = params.find(key);
      if (!target) {
        ADD_FAILURE() << "the module has no parameter " << key << " (fixture " << name << ")";
        continue;
      }
      if (target->sizes() != tensor.sizes()) {
        ADD_FAILURE() << key << ": module shape " << target->sizes() << ", fixture "
                      << tensor.sizes();
        continue;
      }
      target->copy_(tensor);
      unset.erase(key);
    }
    return unset;
  }

 private:
  nlohmann::json meta_;
  std::map<std::string, at::Tensor> tensors_;
};

// Largest absolute difference of two tensors of the same shape (fails the test otherwise).
inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e30;
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace wico::test
