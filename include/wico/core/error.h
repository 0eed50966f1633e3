// Errors of WiCo++: what the user did wrong (ConfigError, exit 2) versus what failed while
// running (Error, exit 1). Messages name the file, key or line and what was expected.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace wico {

// A failure while running: I/O, data, numerics. The `wico` tool exits with 1.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A usage or configuration mistake: unknown key, wrong type, bad option. The tool exits with 2.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& message) : Error(message) {}
};

namespace detail {
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
std::string check_failure(const char* file, int line, const char* condition,
                          const std::string& message);
}  // namespace detail

}  // namespace wico

// Throws wico::Error naming the source location and the failed condition, followed by the message
// parts (streamed), e.g. WICO_CHECK(n > 0, "file ", path, " has no records").
#define WICO_CHECK(condition, ...)                                                      \
  do {                                                                                  \
    if (!(condition)) {                                                                 \
      throw ::wico::Error(::wico::detail::check_failure(                                \
          __FILE__, __LINE__, #condition, ::wico::detail::concat("", ##__VA_ARGS__)));  \
    }                                                                                   \
  } while (false)
