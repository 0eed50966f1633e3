// Progress of long work (training, evaluation, data generation): a bar with rate and ETA on a
// terminal, plain periodic lines otherwise (CI logs, `| tee`), nothing when switched off.
// Log lines printed while a bar is drawn appear above it (see logging.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <mutex>
#include <string>

namespace wico {

enum class ProgressMode { kAuto, kBar, kPlain, kOff };

// "auto" | "bar" | "plain" | "off" (the config key log.progress); throws ConfigError otherwise.
ProgressMode parse_progress_mode(const std::string& name);
// The mode new Progress objects use unless told otherwise; set once at start-up.
void set_default_progress_mode(ProgressMode mode);
ProgressMode default_progress_mode();

class Progress {
 public:
  struct Options {
    std::string unit = "it";
    ProgressMode mode = ProgressMode::kAuto;  // kAuto: the default mode, bar only on a terminal
    std::ostream* out = nullptr;              // default std::cerr
    double plain_interval_s = 30.0;           // plain mode: a line at least this often...
    double plain_fraction = 0.1;              // ...and at every such share of the total
    std::function<double()> clock;            // seconds; default steady clock (tests inject one)
  };

  // `total` <= 0 means unknown: no percentage or ETA, only count and rate.
  Progress(std::string label, std::int64_t total);
  Progress(std::string label, std::int64_t total, Options options);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(std::int64_t n = 1);
  // Short text after the bar, e.g. "loss=0.412 lr=1.0e-05".
  void set_postfix(std::string postfix);
  // Draws the final state and ends the line; called by the destructor if not before.
  void finish();

  std::int64_t count() const { return count_; }
  // The text of the current state, e.g. "train 42% 2100/5000 [00:34<01:48, 35.2 it/s] loss=0.4".
  std::string status_line(int bar_width) const;

  // 75 s -> "01:15"; 3725 s -> "1:02:05".
  static std::string format_duration(double seconds);
  // 35.24 -> "35.2 it/s"; 0.05 -> "20.0 s/it".
  static std::string format_rate(double per_second, const std::string& unit);

  // Used by the console log sink: erases the bar, runs `write` (which prints a log line), and
  // draws the bar again below it, all under the bar lock (exception-safe).
  static void print_above_bar(const std::function<void()>& write);

 private:
  void draw(bool final);
  double now() const;

  std::string label_;
  std::int64_t total_;
  Options options_;
  ProgressMode mode_;
  std::int64_t count_ = 0;
  std::string postfix_;
  double start_ = 0.0;
  double last_plain_time_ = 0.0;
  std::int64_t last_plain_count_ = 0;
  double last_draw_time_ = -1.0;
  bool finished_ = false;
};

}  // namespace wico
