#include "wico/train/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/Dict.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <spdlog/spdlog.h>
#include <torch/serialize/output-archive.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>

#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/io/pretrained.h"
#include "wico/io/zip_archive.h"
#include "wico/core/run_dir.h"

namespace fs = std::filesystem;

namespace wico::train {

namespace {

constexpr int kFormatVersion = 1;

std::string join(const std::vector<std::string>& items, std::size_t limit = 8) {
  std::string out;
  for (std::size_t i = 0; i < items.size() && i < limit; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > limit) out += ", ... (" + std::to_string(items.size()) + " in all)";
  return out;
}

std::vector<c10::Device> generator_devices() {
  std::vector<c10::Device> devices{c10::Device(c10::kCPU)};
  if (at::globalContext().hasCUDA()) {
    const int n = at::detail::getCUDAHooks().getNumGPUs();
    for (int i = 0; i < n; ++i) devices.emplace_back(c10::kCUDA, static_cast<c10::DeviceIndex>(i));
  }
  return devices;
}

at::Generator generator_of(const c10::Device& device) {
  return at::globalContext().defaultGenerator(device);
}

}  // namespace

std::map<std::string, at::Tensor> model_state(const torch::nn::Module& model) {
  std::map<std::string, at::Tensor> state;
  for (const auto& p : model.named_parameters(/*recurse=*/true)) state[p.key()] = p.value();
  for (const auto& b : model.named_buffers(/*recurse=*/true)) state[b.key()] = b.value();
  return state;
}

void load_model_state(torch::nn::Module& model, const std::map<std::string, at::Tensor>& state,
                      const std::string& source, bool strict) {
  std::map<std::string, at::Tensor> own;
  for (auto& p : model.named_parameters(true)) own[p.key()] = p.value();
  for (auto& b : model.named_buffers(true)) own[b.key()] = b.value();
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, tensor] : own) {
    if (!state.count(name)) missing.push_back(name);
  }
  for (const auto& [name, tensor] : state) {
    auto it = own.find(name);
    if (it == own.end()) {
      unexpected.push_back(name);
    } else if (it->second.sizes() != tensor.sizes()) {
      std::ostringstream s;
      s << name << " " << tensor.sizes() << " (model " << it->second.sizes() << ")";
      mismatched.push_back(s.str());
    }
  }
  std::string problems;
  if (!mismatched.empty()) problems += "\n  shape mismatches: " + join(mismatched);
  if (strict && !missing.empty()) problems += "\n  missing: " + join(missing);
  if (strict && !unexpected.empty()) problems += "\n  unexpected: " + join(unexpected);
  if (!problems.empty()) {
    throw Error("weights in '" + source + "' do not fit the model:" + problems);
  }
  if (!missing.empty()) spdlog::warn("{}: {} model entries not in the file, kept as they are: {}",
                                     source, missing.size(), join(missing));
  if (!unexpected.empty()) spdlog::warn("{}: {} entries of the file not in the model, ignored: {}",
                                        source, unexpected.size(), join(unexpected));
  at::NoGradGuard no_grad;
  for (const auto& [name, tensor] : state) {
    auto it = own.find(name);
    if (it != own.end()) it->second.copy_(tensor);
  }
}

void save_checkpoint(const fs::path& path, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const TrainState& state,
                     const Config& config) {
  c10::Dict<std::string, at::Tensor> weights;
  for (const auto& [name, tensor] : model_state(model)) {
    if (tensor.is_floating_point() && !tensor.isfinite().all().item<bool>()) {
      throw Error("refusing to write checkpoint '" + path.string() + "': parameter '" + name +
                  "' has non-finite values");
    }
    weights.insert(name, tensor.detach().to(at::kCPU));
  }
  torch::serialize::OutputArchive archive;
  nlohmann::json meta = {{"format", kFormatVersion},
                         {"wico_version", WICO_VERSION},
                         {"iteration", state.iteration},
                         {"epoch", state.epoch},
                         {"batch_in_epoch", state.batch_in_epoch},
                         {"best_metric", std::isfinite(state.best_metric)
                                             ? nlohmann::json(state.best_metric)
                                             : nlohmann::json(nullptr)},
                         {"best_iteration", state.best_iteration},
                         {"config_hash", config.hash()}};
  archive.write("meta", c10::IValue(meta.dump()));
  archive.write("config", c10::IValue(config.to_yaml()));
  archive.write("model", c10::IValue(weights));
  if (optimizer) {
    torch::serialize::OutputArchive opt;
    optimizer->save(opt);
    archive.write("optimizer", opt);
  }
  c10::Dict<std::string, at::Tensor> rng;
  for (const auto& device : generator_devices()) {
    at::Generator gen = generator_of(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    rng.insert(device.str(), gen.get_state());
  }
  archive.write("rng", c10::IValue(rng));
  fs::create_directories(path.parent_path());
  atomic_write_with(path, [&](const ByteSink& sink) {
    archive.save_to([&](const void* data, std::size_t size) -> std::size_t {
      sink(data, size);
      return size;
    });
  });
}

Checkpoint Checkpoint::read(const fs::path& path) {
  if (!fs::exists(path)) throw Error("checkpoint '" + path.string() + "' does not exist");
  Checkpoint c;
  c.path_ = path;
  // Our own checked reader first: LibTorch's may abort on a damaged archive.
  try {
    io::ZipArchive(io::MappedFile::open(path)).verify_checksums();
  } catch (const Error& e) {
    throw Error("checkpoint '" + path.string() + "' is truncated or corrupt (" + e.what() + ")");
  }
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path.string(), c10::Device(c10::kCPU));
    c10::IValue meta_value, config_value, model_value, rng_value;
    archive.read("meta", meta_value);
    archive.read("config", config_value);
    archive.read("model", model_value);
    const auto meta = nlohmann::json::parse(meta_value.toStringRef());
    if (meta.value("format", 0) != kFormatVersion) {
      throw Error("checkpoint '" + path.string() + "' has format " +
                  std::to_string(meta.value("format", 0)) + ", this build reads " +
                  std::to_string(kFormatVersion));
    }
    c.state_.iteration = meta.at("iteration").get<std::int64_t>();
    c.state_.epoch = meta.at("epoch").get<std::int64_t>();
    c.state_.batch_in_epoch = meta.at("batch_in_epoch").get<std::int64_t>();
    if (!meta.at("best_metric").is_null()) c.state_.best_metric = meta.at("best_metric");
    c.state_.best_iteration = meta.at("best_iteration").get<std::int64_t>();
    c.config_hash_ = meta.at("config_hash").get<std::string>();
    c.config_yaml_ = config_value.toStringRef();
    for (const auto& entry : model_value.toGenericDict()) {
      c.model_[entry.key().toStringRef()] = entry.value().toTensor();
    }
    if (archive.try_read("rng", rng_value)) {
      for (const auto& entry : rng_value.toGenericDict()) {
        c.rng_[entry.key().toStringRef()] = entry.value().toTensor();
      }
    }
    torch::serialize::InputArchive opt;
    if (archive.try_read("optimizer", opt)) c.optimizer_ = std::move(opt);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    throw Error("checkpoint '" + path.string() + "' is truncated or corrupt (" + what + ")");
  }
  return c;
}

Config Checkpoint::config(const std::vector<std::string>& overrides) const {
  // Config::load reads files (with file:line origins); the stored text goes through one.
  static std::atomic<unsigned> counter{0};
  const fs::path temp = fs::temp_directory_path() /
                        ("wico-checkpoint-config-" + std::to_string(::getpid()) + "-" +
                         std::to_string(counter++) + ".yaml");
  {
    std::ofstream out(temp);
    out << config_yaml_;
    if (!out) throw Error("cannot write a temporary file in " + temp.parent_path().string());
  }
  struct Remove {
    fs::path p;
    ~Remove() {
      std::error_code ignored;
      fs::remove(p, ignored);
    }
  } remove{temp};
  try {
    return Config::load(temp, overrides);
  } catch (const ConfigError& e) {
    throw ConfigError("the config stored in checkpoint '" + path_.string() +
                      "' does not load in this build: " + e.what());
  }
}

void Checkpoint::require_same_config(const Config& config) const {
  if (config.hash() == config_hash_) return;
  std::vector<std::string> diffs;
  try {
    diffs = this->config().differences(config);
  } catch (const ConfigError& e) {
    diffs.push_back(e.what());
  }
  std::string list;
  for (const auto& d : diffs) list += "\n  " + d;
  throw ConfigError("checkpoint '" + path_.string() +
                    "' was written with another config; keys that differ (checkpoint -> now):" +
                    (list.empty() ? std::string("\n  (none by value; the schema changed)") : list));
}

void Checkpoint::load_model(torch::nn::Module& model, bool strict) const {
  load_model_state(model, model_, path_.string(), strict);
}

void Checkpoint::load_optimizer(torch::optim::Optimizer& optimizer) {
  if (!optimizer_) throw Error("checkpoint '" + path_.string() + "' holds no optimizer state");
  try {
    optimizer.load(*optimizer_);
  } catch (const std::exception& e) {
    std::string what = e.what();
    throw Error("optimizer state in '" + path_.string() +
                "' does not fit this optimizer: " + what.substr(0, what.find('\n')));
  }
}

void Checkpoint::restore_rng() const {
  for (const auto& device : generator_devices()) {
    auto it = rng_.find(device.str());
    if (it == rng_.end()) continue;
    at::Generator gen = generator_of(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(it->second);
  }
}

CheckpointDir::CheckpointDir(fs::path dir, int keep_last)
    : dir_(std::move(dir)), keep_last_(std::max(1, keep_last)) {}

fs::path CheckpointDir::path_for(std::int64_t iteration) const {
  char name[32];
  std::snprintf(name, sizeof(name), "iter_%08lld.pt", static_cast<long long>(iteration));
  return dir_ / name;
}

std::vector<fs::path> CheckpointDir::list() const {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir_)) return out;
  static const std::regex pattern(R"(iter_\d{8,}\.pt)");
  for (const auto& entry : fs::directory_iterator(dir_)) {
    if (std::regex_match(entry.path().filename().string(), pattern)) out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<fs::path> CheckpointDir::latest() const {
  auto all = list();
  if (all.empty()) return std::nullopt;
  return all.back();
}

void CheckpointDir::prune() const {
  auto all = list();
  const auto keep = static_cast<std::size_t>(keep_last_);
  for (std::size_t i = 0; i + keep < all.size(); ++i) {
    std::error_code ignored;
    fs::remove(all[i], ignored);
  }
}

int CheckpointDir::remove_stale_temporaries() const {
  if (!fs::is_directory(dir_)) return 0;
  // atomic_write_with's temporaries: <final name>.tmp.<pid>.<counter>.
  static const std::regex pattern(R"(.+\.tmp\.(\d+)\.\d+)");
  int removed = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, match, pattern)) continue;
    const auto pid = static_cast<pid_t>(std::stol(match[1].str()));
    // Ours, or a process that still exists (signal 0 tests existence): maybe still writing.
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::error_code ec;
    if (fs::remove(entry.path(), ec)) ++removed;
  }
  if (removed > 0) {
    spdlog::info("{}: removed {} unfinished checkpoint file(s) of an interrupted run",
                 dir_.string(), removed);
  }
  return removed;
}

namespace {

// A train.init entry: 'source' or 'part=source', where a source is one of our checkpoints or a
// published file through a name map, 'map=NAME:file' (whose own '=' names no part).
struct InitEntry {
  std::string part, source;
};

InitEntry parse_init_entry(const std::string& entry) {
  const auto eq = entry.find('=');
  if (entry.rfind("map=", 0) == 0 || eq == std::string::npos) return {"", entry};
  return {entry.substr(0, eq), entry.substr(eq + 1)};
}

}  // namespace

bool init_replaces_whole_model(const Config& config) {
  const auto entries = config.texts("train.init");
  return std::any_of(entries.begin(), entries.end(), [](const std::string& e) {
    return parse_init_entry(e).part.empty();
  });
}

void load_initial_weights(torch::nn::Module& model, const Config& config) {
  for (const auto& entry : config.texts("train.init")) {
    const auto [prefix, source] = parse_init_entry(entry);
    auto part = [&, prefix = prefix]() -> torch::nn::Module& {
      if (prefix.empty()) return model;
      for (const auto& item : model.named_modules()) {
        if (item.key() == prefix) return *item.value();
      }
      throw ConfigError("train.init '" + entry + "': the model has no part named '" + prefix +
                        "'");
    };
    if (source.rfind("map=", 0) == 0) {
      io::import_published(part(), source.substr(4), "train.init '" + entry + "'",
                           prefix.empty() ? io::ImportMode::kStrict : io::ImportMode::kPartial);
      continue;
    }
    const std::filesystem::path file = source;
    const Checkpoint ckpt = Checkpoint::read(file);
    // A part taken from a checkpoint of a model that has the same part (stage 2 of the
    // top-down protocol: branch.extractor from a whole top-down run): its entries under the
    // part's name, the prefix stripped. Otherwise the checkpoint is the part's own.
    std::map<std::string, at::Tensor> state;
    const std::string dotted = prefix + ".";
    for (const auto& [name, tensor] : ckpt.model()) {
      if (!prefix.empty() && name.rfind(dotted, 0) == 0) state[name.substr(dotted.size())] = tensor;
    }
    if (state.empty()) state = ckpt.model();
    load_model_state(part(), state, file.string());
    spdlog::info("initialised {} from {}", prefix.empty() ? "the model" : prefix, file.string());
  }
}

}  // namespace wico::train
