#include "wico/core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "wico/core/error.h"

namespace wico {

namespace {
std::atomic<ProgressMode> g_default_mode{ProgressMode::kAuto};
// The one bar drawn on the terminal now, if any; guarded by g_bar_mutex.
std::recursive_mutex g_bar_mutex;
Progress* g_active_bar = nullptr;
constexpr int kBarWidth = 30;
}  // namespace

ProgressMode parse_progress_mode(const std::string& name) {
  if (name == "auto") return ProgressMode::kAuto;
  if (name == "bar") return ProgressMode::kBar;
  if (name == "plain") return ProgressMode::kPlain;
  if (name == "off") return ProgressMode::kOff;
  throw ConfigError("progress mode '" + name + "' is not one of auto, bar, plain, off");
}

void set_default_progress_mode(ProgressMode mode) { g_default_mode = mode; }
ProgressMode default_progress_mode() { return g_default_mode; }

Progress::Progress(std::string label, std::int64_t total)
    : Progress(std::move(label), total, Options{}) {}

Progress::Progress(std::string label, std::int64_t total, Options options)
    : label_(std::move(label)), total_(total), options_(std::move(options)) {
  if (!options_.out) options_.out = &std::cerr;
  mode_ = options_.mode == ProgressMode::kAuto ? default_progress_mode() : options_.mode;
  if (mode_ == ProgressMode::kAuto) {
    const bool terminal = options_.out == &std::cerr && isatty(STDERR_FILENO) == 1;
    mode_ = terminal ? ProgressMode::kBar : ProgressMode::kPlain;
  }
  start_ = now();
  last_plain_time_ = start_;
  if (mode_ == ProgressMode::kBar) {
    std::lock_guard<std::recursive_mutex> lock(g_bar_mutex);
    g_active_bar = this;
  }
}

Progress::~Progress() {
  try {
    finish();
  } catch (...) {  // a destructor must not throw; the output stream failing is not fatal
  }
  std::lock_guard<std::recursive_mutex> lock(g_bar_mutex);
  if (g_active_bar == this) g_active_bar = nullptr;
}

double Progress::now() const {
  if (options_.clock) return options_.clock();
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

void Progress::advance(std::int64_t n) {
  // The log sink may read this bar's state from another thread (a loader worker logging).
  std::lock_guard<std::recursive_mutex> lock(g_bar_mutex);
  count_ += n;
  draw(false);
}

void Progress::set_postfix(std::string postfix) {
  std::lock_guard<std::recursive_mutex> lock(g_bar_mutex);
  postfix_ = std::move(postfix);
}

void Progress::finish() {
  if (finished_) return;
  draw(true);
  finished_ = true;
  if (mode_ == ProgressMode::kBar) {
    std::lock_guard<std::recursive_mutex> lock(g_bar_mutex);
    if (g_active_bar == this) g_active_bar = nullptr;
  }
}

std::string Progress::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<long long>(std::llround(seconds));
  const long long h = total / 3600, m = (total / 60) % 60, s = total % 60;
  char buffer[32];
  if (h > 0) {
    std::snprintf(buffer, sizeof(buffer), "%lld:%02lld:%02lld", h, m, s);
  } else {
    std::snprintf(buffer, sizeof(buffer), "%02lld:%02lld", m, s);
  }
  return buffer;
}

std::string Progress::format_rate(double per_second, const std::string& unit) {
  char buffer[64];
  if (!(per_second > 0) || !std::isfinite(per_second)) {
    std::snprintf(buffer, sizeof(buffer), "? %s/s", unit.c_str());
  } else if (per_second < 1.0) {
    std::snprintf(buffer, sizeof(buffer), "%.1f s/%s", 1.0 / per_second, unit.c_str());
  } else {
    std::snprintf(buffer, sizeof(buffer), "%.1f %s/s", per_second, unit.c_str());
  }
  return buffer;
}

std::string Progress::status_line(int bar_width) const {
  const double elapsed = now() - start_;
  const double rate = elapsed > 0 ? static_cast<double>(count_) / elapsed : 0.0;
  std::ostringstream out;
  out << label_ << " ";
  if (total_ > 0) {
    const double fraction = std::clamp(static_cast<double>(count_) / total_, 0.0, 1.0);
    out << std::setw(3) << static_cast<int>(fraction * 100) << "%";
    if (bar_width > 0) {
      // Eighths of a cell give a smooth bar on terminals that have the block glyphs.
      static const char* kPartial[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
      const int eighths = static_cast<int>(fraction * bar_width * 8);
      out << "|";
      for (int i = 0; i < eighths / 8; ++i) out << "█";
      int drawn = eighths / 8;
      if (drawn < bar_width) {
        out << kPartial[eighths % 8];
        ++drawn;
      }
      for (; drawn < bar_width; ++drawn) out << " ";
      out << "|";
    }
    out << " " << count_ << "/" << total_;
    const double eta = rate > 0 ? static_cast<double>(total_ - count_) / rate : -1.0;
    out << " [" << format_duration(elapsed) << "<" << format_duration(eta) << ", "
        << format_rate(rate, options_.unit) << "]";
  } else {
    out << count_ << " " << options_.unit << " [" << format_duration(elapsed) << ", "
        << format_rate(rate, options_.unit) << "]";
  }
  if (!postfix_.empty()) out << " " << postfix_;
  return out.str();
}

void Progress::draw(bool final) {
  if (mode_ == ProgressMode::kOff) return;
  const double t = now();
  std::ostream& out = *options_.out;
  if (mode_ == ProgressMode::kBar) {
    // Redraw at most 10 times a second: terminals are slow and steps can be fast.
    if (!final && last_draw_time_ >= 0 && t - last_draw_time_ < 0.1) return;
    last_draw_time_ = t;
    std::lock_guard<std::recursive_mutex> lock(g_bar_mutex);
    out << "\r\033[K" << status_line(kBarWidth);
    if (final) out << "\n";
    out.flush();
    return;
  }
  const bool by_time = t - last_plain_time_ >= options_.plain_interval_s;
  const bool by_share =
      total_ > 0 && static_cast<double>(count_ - last_plain_count_) >=
                        options_.plain_fraction * static_cast<double>(total_);
  if (final || by_time || by_share) {
    if (final && count_ == last_plain_count_ && count_ > 0 && last_plain_count_ > 0) return;
    last_plain_time_ = t;
    last_plain_count_ = count_;
    out << status_line(0) << "\n";
    out.flush();
  }
}

void Progress::print_above_bar(const std::function<void()>& write) {
  std::lock_guard<std::recursive_mutex> lock(g_bar_mutex);
  if (g_active_bar) *g_active_bar->options_.out << "\r\033[K";
  write();
  if (g_active_bar) {
    *g_active_bar->options_.out << g_active_bar->status_line(kBarWidth);
    g_active_bar->options_.out->flush();
  }
}

}  // namespace wico
