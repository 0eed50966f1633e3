#include "wico/core/run_dir.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "wico/core/config.h"
#include "wico/core/error.h"

namespace fs = std::filesystem;

namespace wico {

void atomic_write(const fs::path& path, const std::string& content) {
  atomic_write_with(path, [&](const ByteSink& sink) { sink(content.data(), content.size()); });
}

void atomic_write_with(const fs::path& path,
                       const std::function<void(const ByteSink& sink)>& produce) {
  // Unique per process and per call, so concurrent writers never share a temporary.
  static std::atomic<unsigned> counter{0};
  const fs::path temp = path.string() + ".tmp." + std::to_string(::getpid()) + "." +
                        std::to_string(counter++);
  std::FILE* f = std::fopen(temp.c_str(), "wb");
  if (!f) throw Error("cannot write '" + temp.string() + "': " + std::strerror(errno));
  bool written = true;
  try {
    produce([&](const void* data, std::size_t size) {
      if (written && std::fwrite(data, 1, size, f) != size) written = false;
    });
  } catch (...) {
    std::fclose(f);
    std::error_code ignored;
    fs::remove(temp, ignored);
    throw;
  }
  written = written && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed) {
    std::error_code ignored;
    fs::remove(temp, ignored);
    throw Error("cannot write '" + path.string() + "' (disk full?); the previous file is kept");
  }
  std::error_code ec;
  fs::rename(temp, path, ec);
  if (ec) {
    fs::remove(temp, ec);
    throw Error("cannot replace '" + path.string() + "': " + ec.message());
  }
}

std::string run_name_for(const Config& config) {
  const std::string& name = config.text("run.name");
  if (!name.empty()) return name;
  if (!config.source().empty()) return config.source().stem().string();
  return "default";
}

RunDir::RunDir(const fs::path& root, const std::string& name, Mode mode) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    throw ConfigError("run name '" + name + "' must be a plain directory name (run.name)");
  }
  path_ = root / name;
  switch (mode) {
    case Mode::kCreate:
      if (fs::exists(path_ / "config.yaml") ||
          (fs::exists(checkpoints()) && !fs::is_empty(checkpoints()))) {
        throw ConfigError("run directory '" + path_.string() +
                          "' already holds a run; resume it with --resume, or choose another "
                          "name with --set run.name=NAME (nothing was changed)");
      }
      break;
    case Mode::kResume:
      if (!fs::exists(path_ / "config.yaml")) {
        throw ConfigError("cannot resume '" + path_.string() + "': it has no config.yaml");
      }
      break;
    case Mode::kReuse:
      break;
  }
  std::error_code ec;
  for (const auto& dir : {path_, checkpoints(), eval()}) {
    fs::create_directories(dir, ec);
    if (ec) throw Error("cannot create run directory '" + dir.string() + "': " + ec.message());
  }
}

RunDir RunDir::for_config(const Config& config, Mode mode) {
  return RunDir(config.text("run.root"), run_name_for(config), mode);
}

void RunDir::write_config(const Config& config) const {
  atomic_write(config_file(), "# Resolved configuration of this run (wico " WICO_VERSION ")\n" +
                                  config.to_yaml());
}

namespace {

// Keeps the complete records of iterations up to `iteration` (and records without one).
void trim_metrics(const fs::path& file, std::int64_t iteration) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string kept;
  std::size_t dropped = 0, start = 0;
  while (start < text.size()) {
    const std::size_t end = text.find('\n', start);
    if (end == std::string::npos) {  // cut off mid-write
      ++dropped;
      break;
    }
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool later = record.is_object() && record.contains("iteration") &&
                       record["iteration"].is_number_integer() &&
                       record["iteration"].get<std::int64_t>() > iteration;
    if (record.is_discarded() || later) {
      ++dropped;
      continue;
    }
    kept += line;
    kept += '\n';
  }
  if (dropped == 0) return;
  atomic_write(file, kept);
  spdlog::info("{}: removed {} record(s) written after the checkpoint of iteration {} or cut "
               "off by the interruption", file.string(), dropped, iteration);
}

}  // namespace

MetricsLog::MetricsLog(const fs::path& file, std::optional<std::int64_t> resumed_at_iteration)
    : file_(file) {
  if (resumed_at_iteration) trim_metrics(file, *resumed_at_iteration);
  out_.open(file, std::ios::app);
  if (!out_) throw Error("cannot open '" + file.string() + "' for writing");
}

void MetricsLog::write(const nlohmann::json& record) {
  out_ << record.dump() << "\n";
  out_.flush();
  if (!out_) throw Error("cannot append to '" + file_.string() + "'");
}

}  // namespace wico
