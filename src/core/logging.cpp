#include "wico/core/logging.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <mutex>

#include "wico/core/error.h"
#include "wico/core/progress.h"

namespace wico {

namespace {

// Writes log lines to stderr, erasing a progress bar first and drawing it again after, so that
// bars and log lines never interleave on one line.
class ConsoleSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    Progress::print_above_bar([&] {
      std::fwrite(formatted.data(), 1, formatted.size(), stderr);
      std::fflush(stderr);
    });
  }
  void flush_() override { std::fflush(stderr); }
};

spdlog::level::level_enum parse_level(const std::string& level) {
  const auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    throw ConfigError("log level '" + level + "' is not one of trace, debug, info, warn, error");
  }
  return parsed;
}

}  // namespace

void init_logging(const std::string& level) {
  auto logger = std::make_shared<spdlog::logger>("wico", std::make_shared<ConsoleSink>());
  logger->set_pattern("[%H:%M:%S %^%L%$] %v");
  logger->set_level(parse_level(level));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

void add_log_file(const std::filesystem::path& file) {
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file.string(), false);
  sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  auto logger = spdlog::default_logger();
  logger->sinks().push_back(sink);
  logger->flush_on(spdlog::level::info);
}

}  // namespace wico
