#include "wico/core/core_share.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "wico/core/benchmark.h"

namespace wico {
namespace {

using namespace std::chrono_literals;

TEST(CoreShare, ThreadsAreTheCoresLeftOver) {
  EXPECT_EQ(threads_for_load(2, 2, 0.0), 2);   // idle machine
  EXPECT_EQ(threads_for_load(2, 2, 0.1), 2);   // a daemon's noise
  EXPECT_EQ(threads_for_load(2, 2, 1.0), 1);   // one busy loop
  EXPECT_EQ(threads_for_load(2, 2, 1.33), 1);  // two busy loops sharing with our one thread
  EXPECT_EQ(threads_for_load(2, 2, 2.0), 1);   // never fewer than one
  EXPECT_EQ(threads_for_load(8, 64, 10.0), 8); // never more than asked for
  EXPECT_EQ(threads_for_load(16, 16, 4.7), 11);  // 11.3 cores free
  EXPECT_EQ(threads_for_load(16, 16, 5.0), 11);  // exactly 11 free
  EXPECT_EQ(threads_for_load(16, 16, 5.4), 10);  // 10.6 free: the 11th core is 60% free
}

TEST(CoreShare, OthersAreTheMachineMinusThisProcess) {
  CpuTimes before, after;
  before.machine_busy = 100.0;
  before.own = 10.0;
  after = before;
  after.at = before.at + 2s;
  after.machine_busy = 104.0;  // 2 cores busy for 2 s
  after.own = 11.0;            // of which this process used 1 core-second
  EXPECT_DOUBLE_EQ(others_busy_cores(before, after), 1.5);
  after.own = 15.0;            // more than the machine (tick rounding): no one else
  EXPECT_DOUBLE_EQ(others_busy_cores(before, after), 0.0);
  EXPECT_DOUBLE_EQ(others_busy_cores(before, before), 0.0);
}

TEST(CoreShare, ReadsThisMachinesTimes) {
  const auto first = read_cpu_times();
  ASSERT_TRUE(first.has_value()) << "/proc/stat unreadable";
  // This process burns CPU: its own time grows, and the machine's with it.
  volatile double x = 0;
  const auto until = std::chrono::steady_clock::now() + 300ms;
  while (std::chrono::steady_clock::now() < until) x = x + 1;
  const auto second = read_cpu_times();
  ASSERT_TRUE(second.has_value());
  EXPECT_GT(second->own - first->own, 0.2);
  EXPECT_GT(second->machine_busy - first->machine_busy, 0.15);
}

TEST(CoreShare, BusyMachineGetsOneThreadAndDisabledKeepsTheCount) {
  const int before = at::get_num_threads();
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  ASSERT_GT(online, 0);
  CoreShare shared(2, true, 300ms);
  CoreShare fixed(2, false, 300ms);
  {
    // Every core wanted by another process: nothing is left over.
    const BusyProcesses load(static_cast<int>(online));
    std::this_thread::sleep_for(600ms);
    EXPECT_EQ(shared.update(), 1);
    EXPECT_EQ(at::get_num_threads(), 1);
    EXPECT_EQ(fixed.update(), 2);
  }
  // Within the interval nothing is re-measured.
  EXPECT_EQ(shared.update(), 1);
  at::set_num_threads(before);
}

}  // namespace
}  // namespace wico
