#include "wico/core/error.h"

#include <filesystem>

namespace wico::detail {

std::string check_failure(const char* file, int line, const char* condition,
                          const std::string& message) {
  std::ostringstream out;
  out << (message.empty() ? std::string("check failed") : message) << " [" << condition << " at "
      << std::filesystem::path(file).filename().string() << ":" << line << "]";
  return out.str();
}

}  // namespace wico::detail
