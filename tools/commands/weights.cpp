// `wico weights`: the published weights of the originals and ours.
//   inspect FILE [--map NAME]     format, tensors (shape, dtype), totals, non-tensor entries
//   maps                          the name maps and what each converts
//   convert FILE --map NAME -c C --out K.pt   a wico checkpoint `wico eval` / `predict` take
//   export K.pt --out F.safetensors           our weights for Python, config in __metadata__
#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <map>

#include "../commands.h"
#include "wico/core/error.h"
#include "wico/core/runtime.h"
#include "wico/io/import.h"
#include "wico/io/weights.h"
#include "wico/nn/ris_model.h"
#include "wico/train/checkpoint.h"

namespace fs = std::filesystem;

namespace wico::tool {

namespace {

std::string shape_text(const at::Tensor& t) {
  std::string out = "[";
  for (std::int64_t i = 0; i < t.dim(); ++i) out += (i ? ", " : "") + std::to_string(t.size(i));
  return out + "]";
}

void refuse_overwrite(const fs::path& out, bool force) {
  if (fs::exists(out) && !force) {
    throw ConfigError("'" + out.string() + "' exists; pass --force to replace it");
  }
}

int inspect(const std::string& path, const std::string& map_name) {
  const io::WeightFile file = io::read_weights(path);
  std::map<std::string, std::string> ours;
  if (!map_name.empty()) {
    for (const auto& [source, target] : io::mapped_names(file, io::name_map(map_name))) {
      ours[source] = target;
    }
  }
  std::size_t width = 4;
  for (const auto& [name, t] : file.tensors) width = std::max(width, name.size());
  std::cout << "file: " << path << "\nformat: " << io::format_name(file.format);
  if (!file.root.empty()) std::cout << " (archive root '" << file.root << "')";
  std::cout << "\n";
  std::int64_t bytes = 0;
  std::map<std::string, std::int64_t> per_dtype;
  for (const auto& [name, t] : file.tensors) {
    bytes += t.numel() * static_cast<std::int64_t>(t.element_size());
    per_dtype[c10::toString(t.scalar_type())] += t.numel();
  }
  std::cout << fmt::format("tensors: {} ({} values, {:.1f} MB)\n", file.tensors.size(),
                           file.element_count(), static_cast<double>(bytes) / 1e6);
  for (const auto& [dtype, n] : per_dtype) std::cout << fmt::format("  {}: {} values\n", dtype, n);
  std::cout << fmt::format("{:<{}}  {:<20}  {}", "name", width, "shape", "dtype")
            << (map_name.empty() ? "" : "  -> ours (map " + map_name + ")") << "\n";
  for (const auto& [name, t] : file.tensors) {
    std::cout << fmt::format("{:<{}}  {:<20}  {}", name, width, shape_text(t),
                             c10::toString(t.scalar_type()));
    if (!map_name.empty()) {
      const auto it = ours.find(name);
      std::cout << "  " << (it == ours.end() ? "(not imported)" : it->second);
    }
    std::cout << "\n";
  }
  if (!file.values.empty()) {
    std::cout << "non-tensor entries: " << file.values.size() << "\n";
    for (const auto& [name, value] : file.values) std::cout << "  " << name << " = " << value.repr(100) << "\n";
  }
  for (const auto& [key, value] : file.metadata) {
    std::cout << "metadata " << key << " = " << (value.size() > 100 ? value.substr(0, 100) + "..." : value) << "\n";
  }
  for (const auto& note : file.notes) std::cout << "note: " << note << "\n";
  return 0;
}

int list_maps() {
  for (const std::string& name : io::name_map_names()) {
    std::cout << fmt::format("{:<20} {}\n", name, io::name_map(name).description);
  }
  return 0;
}

int convert(const std::string& path, const std::string& map_name, const ConfigOptions& config_options,
            const fs::path& out, bool partial, bool force) {
  refuse_overwrite(out, force);
  const Config config = config_options.load();
  apply_runtime(config);
  const auto model = nn::build_model(config);
  const io::WeightFile file = io::read_weights(path);
  const io::ImportReport report = io::import_weights(
      *model, file, io::name_map(map_name), partial ? io::ImportMode::kPartial : io::ImportMode::kStrict);
  std::cout << report.table();
  if (!out.parent_path().empty()) fs::create_directories(out.parent_path());
  train::save_checkpoint(out, *model, nullptr, train::TrainState{}, config);
  std::cout << "wrote " << out.string() << " (wico eval --checkpoint " << out.string() << ")\n";
  return 0;
}

int export_safetensors(const fs::path& checkpoint, const fs::path& out, bool force) {
  refuse_overwrite(out, force);
  const train::Checkpoint ckpt = train::Checkpoint::read(checkpoint);
  std::vector<std::pair<std::string, at::Tensor>> tensors(ckpt.model().begin(), ckpt.model().end());
  io::write_safetensors(out, tensors,
                        {{"format", "pt"},
                         {"wico_config", ckpt.config_yaml()},
                         {"wico_config_hash", ckpt.config_hash()},
                         {"wico_source", checkpoint.filename().string()}});
  std::int64_t values = 0;
  for (const auto& [name, t] : tensors) values += t.numel();
  std::cout << fmt::format("wrote {} ({} tensors, {} values); in Python: "
                           "safetensors.torch.load_file('{}')\n",
                           out.string(), tensors.size(), values, out.filename().string());
  return 0;
}

}  // namespace

Action add_weights_command(CLI::App& app) {
  auto* sub = app.add_subcommand("weights", "published weights: inspect, convert, export");
  sub->require_subcommand(1);
  struct Options {
    std::string file, map, out;
    ConfigOptions config;
    bool partial = false, force = false;
  };
  auto o = std::make_shared<Options>();
  auto* inspect_cmd = sub->add_subcommand("inspect", "list a weight file's tensors and entries");
  inspect_cmd->add_option("file", o->file, "a .pth, .bin, .safetensors, .pt or .pkl file")->required();
  inspect_cmd->add_option("--map", o->map, "also show our name of each tensor under this map");
  auto* maps_cmd = sub->add_subcommand("maps", "list the name maps");
  auto* convert_cmd = sub->add_subcommand(
      "convert", "a published checkpoint -> a wico checkpoint (eval, predict, train.init)");
  convert_cmd->add_option("file", o->file, "the published file")->required();
  convert_cmd->add_option("--map", o->map, "name map (wico weights maps)")->required();
  o->config.add_to(*convert_cmd, true);
  convert_cmd->add_option("--out", o->out, "the wico checkpoint to write (.pt)")->required();
  convert_cmd->add_flag("--partial", o->partial,
                        "load what matches and report the rest (default: strict)");
  convert_cmd->add_flag("--force", o->force, "replace --out if it exists");
  auto* export_cmd = sub->add_subcommand("export", "a wico checkpoint -> safetensors for Python");
  export_cmd->add_option("checkpoint", o->file, "a wico checkpoint (.pt)")->required();
  export_cmd->add_option("--out", o->out, "the .safetensors file to write")->required();
  export_cmd->add_flag("--force", o->force, "replace --out if it exists");
  return [o, inspect_cmd, maps_cmd, convert_cmd, export_cmd]() {
    if (inspect_cmd->parsed()) return inspect(o->file, o->map);
    if (maps_cmd->parsed()) return list_maps();
    if (convert_cmd->parsed()) return convert(o->file, o->map, o->config, o->out, o->partial, o->force);
    if (export_cmd->parsed()) return export_safetensors(o->file, o->out, o->force);
    return 2;
  };
}

}  // namespace wico::tool
