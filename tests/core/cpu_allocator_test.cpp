// The CPU tensor cache (runtime.cpu_cache_mb): blocks reused by size class, small tensors left
// to LibTorch's allocator, the limit kept when blocks come back and when it is lowered, raw
// allocations, uninstalling with blocks still out, concurrent use, and the config key.
#include "wico/core/cpu_allocator.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "wico/core/config.h"
#include "wico/core/runtime.h"

namespace wico {
namespace {

constexpr std::size_t kMb = std::size_t{1} << 20;

// Each test starts from no cache and leaves none behind.
class CpuTensorCache : public ::testing::Test {
 protected:
  void SetUp() override {
    set_cpu_tensor_cache(0);
    original_ = c10::GetCPUAllocator();
  }
  void TearDown() override { set_cpu_tensor_cache(0); }
  c10::Allocator* original_ = nullptr;
};

std::uintptr_t address(const at::Tensor& t) { return reinterpret_cast<std::uintptr_t>(t.data_ptr()); }

TEST_F(CpuTensorCache, SizeClassesRoundUpByAtMostAnEighth) {
  EXPECT_EQ(cpu_cache_size_class(1), 4096u);
  EXPECT_EQ(cpu_cache_size_class(4096), 4096u);
  EXPECT_EQ(cpu_cache_size_class(300000), 327680u);  // 2^19 / 16 = 32768: 10 of them
  EXPECT_EQ(cpu_cache_size_class(4 * kMb), 4 * kMb);
  EXPECT_EQ(cpu_cache_size_class(4 * kMb + 1), 4 * kMb + 512 * 1024);
  for (std::size_t n = kMinCachedBytes; n < 64 * kMb; n = n * 9 / 7 + 13) {
    const std::size_t c = cpu_cache_size_class(n);
    EXPECT_GE(c, n);
    EXPECT_LE(static_cast<double>(c), 1.125 * static_cast<double>(n)) << n;
  }
}

TEST_F(CpuTensorCache, ReusesAReleasedBlockOfTheSameClass) {
  set_cpu_tensor_cache(64 * kMb);
  EXPECT_NE(c10::GetCPUAllocator(), original_);
  std::uintptr_t first = 0;
  {
    const at::Tensor a = at::empty({1 << 20});  // 4 MB
    first = address(a);
    EXPECT_EQ(first % 64, 0u) << "LibTorch's alignment";
    EXPECT_EQ(cpu_tensor_cache_stats().in_use_bytes, 4 * kMb);
  }
  EXPECT_EQ(cpu_tensor_cache_stats().cached_bytes, 4 * kMb);
  const auto before = cpu_tensor_cache_stats();
  {
    const at::Tensor b = at::empty({(1 << 20) - 25});  // 100 bytes less: the same class
    EXPECT_EQ(address(b), first);
    EXPECT_EQ(cpu_tensor_cache_stats().hits, before.hits + 1);
    EXPECT_EQ(cpu_tensor_cache_stats().cached_bytes, 0u);
    const at::Tensor c = at::empty({1 << 21});  // another class: a new block
    EXPECT_NE(address(c), first);
    EXPECT_EQ(cpu_tensor_cache_stats().misses, before.misses + 1);
  }
  // Values written through reused memory are what they should be.
  const at::Tensor x = at::arange(1 << 20, at::kFloat);
  EXPECT_DOUBLE_EQ(x.sum().item<double>(), 0.5 * (1 << 20) * ((1 << 20) - 1));
}

// A request takes a cached block of a larger class when it is at most 1.25x its own (batches
// whose sizes vary a little reuse memory), and not a much larger one.
TEST_F(CpuTensorCache, ReusesASlightlyLargerBlockButNotAMuchLargerOne) {
  set_cpu_tensor_cache(64 * kMb);
  std::uintptr_t big = 0;
  {
    const at::Tensor a = at::empty({1 << 20});  // 4 MB
    big = address(a);
  }
  {
    const at::Tensor b = at::empty({900000});  // 3.6 MB: class 3.75 MB, the 4 MB block fits
    EXPECT_EQ(address(b), big);
    EXPECT_EQ(cpu_tensor_cache_stats().in_use_bytes, 4 * kMb) << "accounted as the block it got";
  }
  const at::Tensor c = at::empty({1 << 18});  // 1 MB: the 4 MB block is too large
  EXPECT_NE(address(c), big);
  EXPECT_EQ(cpu_tensor_cache_stats().cached_bytes, 4 * kMb);
}

TEST_F(CpuTensorCache, SmallTensorsStayWithLibTorchsAllocator) {
  set_cpu_tensor_cache(64 * kMb);
  const auto before = cpu_tensor_cache_stats();
  { const at::Tensor small = at::ones({1000}); }  // 4 KB
  const auto after = cpu_tensor_cache_stats();
  EXPECT_EQ(after.hits + after.misses, before.hits + before.misses);
  EXPECT_EQ(after.cached_bytes, before.cached_bytes);
}

// Allocator::raw_allocate / raw_deallocate (storage resizes, some kernels' scratch) use the
// allocator's raw deleter for blocks of either size.
TEST_F(CpuTensorCache, RawAllocationsOfBothSizesAreReleased) {
  set_cpu_tensor_cache(64 * kMb);
  c10::Allocator* allocator = c10::GetCPUAllocator();
  for (const std::size_t bytes : {std::size_t{1000}, 4 * kMb}) {
    void* block = allocator->raw_allocate(bytes);
    ASSERT_NE(block, nullptr);
    static_cast<char*>(block)[bytes - 1] = 1;
    allocator->raw_deallocate(block);
  }
  EXPECT_EQ(cpu_tensor_cache_stats().in_use_bytes, 0u);
  EXPECT_EQ(cpu_tensor_cache_stats().cached_bytes, 4 * kMb);
}

TEST_F(CpuTensorCache, KeepsItsLimitAndRestoresTheAllocatorWhenTurnedOff) {
  set_cpu_tensor_cache(8 * kMb);
  {
    std::vector<at::Tensor> blocks;
    for (int i = 0; i < 3; ++i) blocks.push_back(at::empty({1 << 20}));
  }
  EXPECT_EQ(cpu_tensor_cache_stats().cached_bytes, 8 * kMb) << "the third block went back";
  set_cpu_tensor_cache(4 * kMb);
  EXPECT_EQ(cpu_tensor_cache_stats().cached_bytes, 4 * kMb);
  const at::Tensor still_out = at::empty({1 << 20});  // served from the cache
  set_cpu_tensor_cache(0);
  EXPECT_EQ(c10::GetCPUAllocator(), original_);
  EXPECT_EQ(cpu_tensor_cache_stats().cached_bytes, 0u);
  const at::Tensor plain = at::empty({1 << 20});  // LibTorch's allocator again
  EXPECT_EQ(cpu_tensor_cache_stats().in_use_bytes, 4 * kMb) << "only the block still out";
}

TEST_F(CpuTensorCache, BlocksOutWhenTurnedOffAreReleasedToTheSystem) {
  set_cpu_tensor_cache(16 * kMb);
  at::Tensor out = at::empty({1 << 20});
  set_cpu_tensor_cache(0);
  out.reset();
  const auto stats = cpu_tensor_cache_stats();
  EXPECT_EQ(stats.in_use_bytes, 0u);
  EXPECT_EQ(stats.cached_bytes, 0u);
}

TEST_F(CpuTensorCache, ConcurrentUseBalances) {
  set_cpu_tensor_cache(256 * kMb);
  at::parallel_for(0, 16, 1, [](std::int64_t begin, std::int64_t end) {
    for (std::int64_t task = begin; task < end; ++task) {
      for (int i = 0; i < 50; ++i) {
        at::Tensor t = at::empty({(1 << 16) * (1 + (task + i) % 5)});
        t.fill_(static_cast<float>(task));
        ASSERT_EQ(t[7].item<float>(), static_cast<float>(task));
      }
    }
  });
  const auto stats = cpu_tensor_cache_stats();
  EXPECT_EQ(stats.in_use_bytes, 0u);
  EXPECT_LE(stats.cached_bytes, 256 * kMb);
  EXPECT_GT(stats.hits, 0u);
}

TEST_F(CpuTensorCache, ConfigKeySetsTheLimit) {
  apply_runtime(Config::defaults({"runtime.cpu_cache_mb=16", "log.level=warn"}));
  EXPECT_EQ(cpu_tensor_cache_stats().limit_bytes, 16 * kMb);
  EXPECT_NE(c10::GetCPUAllocator(), original_);
  const RuntimeInfo automatic = apply_runtime(Config::defaults({"log.level=warn"}));
  EXPECT_EQ(automatic.cpu_cache_bytes, physical_memory_bytes() / 4);
  apply_runtime(Config::defaults({"runtime.cpu_cache_mb=0", "log.level=warn"}));
  EXPECT_EQ(c10::GetCPUAllocator(), original_);
  EXPECT_EQ(cpu_tensor_cache_stats().limit_bytes, 0u);
}

}  // namespace
}  // namespace wico
