#include "wico/core/core_share.h"

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

namespace wico {

namespace {

double seconds_of(const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec * 1e-6; }

}  // namespace

std::optional<CpuTimes> read_cpu_times() {
  std::ifstream stat("/proc/stat");
  std::string line;
  if (!stat || !std::getline(stat, line) || line.rfind("cpu ", 0) != 0) return std::nullopt;
  // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest time is already
  // inside user and nice); idle and iowait are the only times no one used a core.
  std::istringstream fields(line.substr(4));
  double ticks[8] = {};
  for (double& t : ticks) {
    if (!(fields >> t)) return std::nullopt;
  }
  const double busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7];
  const long hz = ::sysconf(_SC_CLK_TCK);
  rusage usage{};
  if (hz <= 0 || ::getrusage(RUSAGE_SELF, &usage) != 0) return std::nullopt;
  CpuTimes times;
  times.machine_busy = busy / static_cast<double>(hz);
  times.own = seconds_of(usage.ru_utime) + seconds_of(usage.ru_stime);
  times.at = std::chrono::steady_clock::now();
  return times;
}

double others_busy_cores(const CpuTimes& before, const CpuTimes& after) {
  const double wall = std::chrono::duration<double>(after.at - before.at).count();
  if (wall <= 0) return 0;
  const double others = (after.machine_busy - before.machine_busy) - (after.own - before.own);
  return std::max(0.0, others / wall);
}

int threads_for_load(int max_threads, int online_cores, double others_busy) {
  const double free_cores = static_cast<double>(online_cores) - others_busy;
  const int usable = static_cast<int>(std::floor(free_cores + 0.35));
  return std::clamp(usable, 1, std::max(1, max_threads));
}

CoreShare::CoreShare(int max_threads, bool enabled, std::chrono::milliseconds interval)
    : max_threads_(std::max(1, max_threads)), enabled_(enabled), interval_(interval),
      threads_(max_threads_) {
  if (enabled_) last_ = read_cpu_times();
}

int CoreShare::update() {
  if (!enabled_ || !last_) return threads_;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_->at < interval_) return threads_;
  const std::optional<CpuTimes> current = read_cpu_times();
  if (!current) return threads_;
  const double others = others_busy_cores(*last_, *current);
  last_ = current;
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  const int wanted = threads_for_load(max_threads_, online > 0 ? static_cast<int>(online) : 1,
                                      others);
  if (wanted != threads_) {
    spdlog::info("other processes keep {:.1f} of {} cores busy: {} thread(s) now, of {} "
                 "(runtime.share_cores)",
                 others, online, wanted, max_threads_);
    threads_ = wanted;
    at::set_num_threads(threads_);
  }
  return threads_;
}

namespace {

std::mutex g_share_mutex;
CoreShare g_share(1, false, std::chrono::milliseconds(0));

}  // namespace

void configure_core_share(int max_threads, bool enabled) {
  const std::lock_guard<std::mutex> lock(g_share_mutex);
  // Two seconds: long enough for /proc/stat's 10 ms ticks to give the load within 1%, short
  // enough to follow a competing job that starts or ends.
  g_share = CoreShare(max_threads, enabled, std::chrono::milliseconds(2000));
}

int share_cores_with_load() {
  const std::lock_guard<std::mutex> lock(g_share_mutex);
  return g_share.update();
}

}  // namespace wico
