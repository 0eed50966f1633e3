// Sharing the cores with other processes (runtime.share_cores).
//
// LibTorch's parallel ops run as OpenMP teams that meet at a barrier after every op. When another
// process keeps a core busy, the kernel runs one of our threads only half the time, and every
// op waits at its barrier for that thread: tiny LAVT trained at 18% of its idle rate next to two
// busy loops with 2 threads, at 44% with 1 (docs/performance.md). So the training and evaluation
// loops ask, between steps, how many cores the rest of the machine keeps busy (from /proc/stat
// and the process's own CPU time) and run on the cores left over, never more than
// runtime.threads, never fewer than one. The thread count changes the order of some reductions,
// so runs that change it are not bit-identical to a fixed-thread run; runtime.share_cores: false
// keeps runtime.threads fixed (docs/design.md).
#pragma once

#include <chrono>
#include <optional>

namespace wico {

// Cumulative CPU time, in seconds: the whole machine's busy time (every core, steal included)
// and this process's own (all its threads).
struct CpuTimes {
  double machine_busy = 0;
  double own = 0;
  std::chrono::steady_clock::time_point at{};
};
// Reads /proc/stat and getrusage; nullopt where /proc/stat is missing or unreadable.
std::optional<CpuTimes> read_cpu_times();

// Cores the rest of the machine kept busy between two readings (0 when no time passed).
double others_busy_cores(const CpuTimes& before, const CpuTimes& after);

// The thread count for a machine with `online_cores` of which `others_busy` are taken by other
// processes: the cores left over (a core counts once 65% of it is free), clamped to
// [1, max_threads].
int threads_for_load(int max_threads, int online_cores, double others_busy);

// Re-measures at most once per `interval` and sets LibTorch's thread count when it changes.
class CoreShare {
 public:
  CoreShare(int max_threads, bool enabled, std::chrono::milliseconds interval);
  // Call between steps; cheap when the interval has not passed. Returns the thread count in use.
  int update();
  int threads() const { return threads_; }

 private:
  int max_threads_;
  bool enabled_;
  std::chrono::milliseconds interval_;
  int threads_;
  std::optional<CpuTimes> last_;
};

// The process-wide instance apply_runtime() configures (disabled until it runs); the training,
// evaluation and prediction loops call this between batches.
int share_cores_with_load();
void configure_core_share(int max_threads, bool enabled);

}  // namespace wico
