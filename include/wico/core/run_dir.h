// A run directory: runs/<name>/{config.yaml, log.txt, metrics.jsonl, checkpoints/, eval/}.
// Creating a run never destroys what a previous run left there.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <cstddef>
#include <fstream>
#include <functional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace wico {

class Config;

// Writes `content` to `path` through a temporary file in the same directory, flushed and renamed
// over the target, so that readers see either the old file or the new one, never a partial one.
void atomic_write(const std::filesystem::path& path, const std::string& content);

// The same for content too large to hold twice: `produce` calls `sink` with consecutive pieces.
// An exception from `produce` removes the temporary and leaves the target as it was.
using ByteSink = std::function<void(const void* data, std::size_t size)>;
void atomic_write_with(const std::filesystem::path& path,
                       const std::function<void(const ByteSink& sink)>& produce);

class RunDir {
 public:
  enum class Mode {
    kCreate,  // a new run; refused if the directory already holds checkpoints or a config
    kResume,  // an existing run: config.yaml must be there
    kReuse,   // create if missing, keep whatever is there (evaluation outputs)
  };

  // Opens runs/<name> under `root`; `name` must be a plain directory name.
  RunDir(const std::filesystem::path& root, const std::string& name, Mode mode);
  // A run named by the config: run.root / run.name, the config file's stem when run.name is "".
  static RunDir for_config(const Config& config, Mode mode);

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path config_file() const { return path_ / "config.yaml"; }
  std::filesystem::path log_file() const { return path_ / "log.txt"; }
  std::filesystem::path metrics_file() const { return path_ / "metrics.jsonl"; }
  std::filesystem::path checkpoints() const { return path_ / "checkpoints"; }
  std::filesystem::path eval() const { return path_ / "eval"; }

  // Stores the resolved config (config.yaml) atomically.
  void write_config(const Config& config) const;

 private:
  std::filesystem::path path_;
};

// The name a config's run gets: run.name, or the stem of the file it was loaded from.
std::string run_name_for(const Config& config);

// Appends one JSON object per line to metrics.jsonl and flushes it, so a crash loses at most the
// line being written.
class MetricsLog {
 public:
  // A fresh run appends to what is there. A resumed run passes the iteration of the checkpoint it
  // continues from: records of later iterations (written before an interruption, and about to be
  // written again) and a last line cut off mid-write are removed first, so the file reads as one
  // uninterrupted run.
  explicit MetricsLog(const std::filesystem::path& file,
                      std::optional<std::int64_t> resumed_at_iteration = std::nullopt);
  void write(const nlohmann::json& record);

 private:
  std::filesystem::path file_;
  std::ofstream out_;
};

}  // namespace wico
