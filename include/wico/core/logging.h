// Logging: spdlog's default logger writes to the console (stderr, above any progress bar) and,
// once a run directory exists, to its log.txt. Components call spdlog::info(...) directly.
#pragma once

#include <filesystem>
#include <string>

namespace wico {

// Sets the console logger and its level ("trace".."error"); safe to call again.
void init_logging(const std::string& level);
// Adds a file sink (append) to the default logger; log lines from now on also go there.
void add_log_file(const std::filesystem::path& file);

}  // namespace wico
