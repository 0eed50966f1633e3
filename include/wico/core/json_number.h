// Integers read from JSON documents of unknown origin. nlohmann's get<int>() converts a float such
// as 1e98 with undefined behaviour and silently truncates integers that do not fit (found by the
// predictions fuzzer); these checks say no instead.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

namespace wico {

// `value` as a T when it is an integer, or a float with an integral value, inside T's range.
template <typename T>
std::optional<T> json_integer(const nlohmann::json& value) {
  static_assert(std::is_integral_v<T>);
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return std::nullopt;
    return static_cast<T>(v);
  }
  if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    if constexpr (std::is_signed_v<T>) {
      if (v < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
          v > static_cast<std::int64_t>(std::numeric_limits<T>::max())) {
        return std::nullopt;
      }
    } else if (v < 0) {
      return std::nullopt;
    }
    return static_cast<T>(v);
  }
  if (value.is_number_float()) {
    const double v = value.get<double>();
    // Compared as doubles: the limits of 64-bit types round up, so the upper test is strict.
    if (!std::isfinite(v) || v != std::floor(v) ||
        v < static_cast<double>(std::numeric_limits<T>::min()) ||
        v >= static_cast<double>(std::numeric_limits<T>::max())) {
      return std::nullopt;
    }
    return static_cast<T>(v);
  }
  return std::nullopt;
}

}  // namespace wico
