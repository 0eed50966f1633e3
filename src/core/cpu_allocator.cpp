#include "wico/core/cpu_allocator.h"

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace wico {

namespace {

constexpr std::size_t kAlignment = 64;  // LibTorch's own CPU alignment
// Above LibTorch's default allocator (priority 0) and whatever a library registers at start-up.
constexpr std::uint8_t kPriority = 100;
// A request may take a cached block up to this much larger than its own size class.
constexpr double kReuseSlack = 1.25;

std::size_t round_up(std::size_t n, std::size_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

class CachingCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(std::size_t n) const override {
    if (n < kMinCachedBytes) return previous_->allocate(n);
    std::size_t size = cpu_cache_size_class(n);
    void* block = nullptr;
    {
      // The smallest cached block of this class or up to kReuseSlack larger (inputs whose size
      // varies from batch to batch, e.g. aspect-preserving resizes, then still reuse blocks).
      const std::lock_guard<std::mutex> lock(mutex_);
      for (auto bin = free_.lower_bound(size);
           bin != free_.end() && static_cast<double>(bin->first) <=
                                     kReuseSlack * static_cast<double>(size);
           ++bin) {
        if (bin->second.empty()) continue;
        block = bin->second.back();
        bin->second.pop_back();
        size = bin->first;
        cached_ -= size;
        break;
      }
      ++(block ? hits_ : misses_);
    }
    if (!block) block = from_system(size);
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      live_.emplace(block, size);
      in_use_ += size;
    }
    return {block, block, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  static CachingCpuAllocator& instance() {
    // Never destroyed: tensors released during exit still find it.
    static auto* allocator = new CachingCpuAllocator();
    return *allocator;
  }

  void set_limit(std::size_t limit) {
    std::vector<void*> drop;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (limit > 0 && !installed_) {
        previous_ = c10::GetCPUAllocator();
        c10::SetCPUAllocator(this, kPriority);
        installed_ = true;
      } else if (limit == 0 && installed_) {
        c10::SetCPUAllocator(previous_, kPriority);
        installed_ = false;
      }
      limit_ = limit;
      // Largest blocks first until the cache fits the new limit.
      while (cached_ > limit_) drop.push_back(take_largest());
    }
    for (void* block : drop) std::free(block);
  }

  void release_all() {
    std::vector<void*> drop;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [size, blocks] : free_) drop.insert(drop.end(), blocks.begin(), blocks.end());
      free_.clear();
      cached_ = 0;
    }
    for (void* block : drop) std::free(block);
  }

  CpuCacheStats stats() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return {cached_, in_use_, limit_, hits_, misses_};
  }

 private:
  CachingCpuAllocator() : previous_(c10::GetCPUAllocator()) {}

  static void release(void* block) {
    auto& self = instance();
    bool keep = false;
    c10::DeleterFnPtr previous = nullptr;
    {
      const std::lock_guard<std::mutex> lock(self.mutex_);
      const auto it = self.live_.find(block);
      if (it == self.live_.end()) {
        // A small block from the previous allocator freed through raw_deleter()
        // (Allocator::raw_deallocate): the previous allocator's own deleter takes it.
        previous = self.previous_->raw_deleter();
        TORCH_CHECK(previous, "wico CPU tensor cache: a block it did not hand out, and the "
                              "previous allocator has no raw deleter");
      } else {
        const std::size_t size = it->second;
        self.live_.erase(it);
        self.in_use_ -= size;
        keep = self.installed_ && self.cached_ + size <= self.limit_;
        if (keep) {
          self.free_[size].push_back(block);
          self.cached_ += size;
        }
      }
    }
    if (previous) {
      previous(block);
    } else if (!keep) {
      std::free(block);
    }
  }

  // A new block; on failure the cache is released and the request retried. (Advising blocks
  // for transparent huge pages was measured: no faster, and seconds of kernel compaction.)
  void* from_system(std::size_t size) const {
    const std::size_t bytes = round_up(size, kAlignment);
    void* block = std::aligned_alloc(kAlignment, bytes);
    if (!block) {
      const_cast<CachingCpuAllocator*>(this)->release_all();
      block = std::aligned_alloc(kAlignment, bytes);
    }
    TORCH_CHECK(block, "wico CPU tensor cache: out of memory allocating ", size, " bytes");
    return block;
  }

  void* take_largest() {  // with mutex_ held and cached_ > 0
    auto largest = free_.rbegin();
    while (largest->second.empty()) ++largest;
    void* block = largest->second.back();
    largest->second.pop_back();
    cached_ -= largest->first;
    return block;
  }

  mutable std::mutex mutex_;
  c10::Allocator* previous_;
  bool installed_ = false;
  std::size_t limit_ = 0;
  mutable std::map<std::size_t, std::vector<void*>> free_;  // block size -> blocks, ascending
  mutable std::unordered_map<void*, std::size_t> live_;               // handed out -> size
  mutable std::size_t cached_ = 0, in_use_ = 0;
  mutable std::uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace

std::size_t cpu_cache_size_class(std::size_t n) {
  std::size_t power = 1;
  while (power < n) power <<= 1;
  return round_up(n, std::max<std::size_t>(4096, power / 16));
}

void set_cpu_tensor_cache(std::size_t limit_bytes) {
  CachingCpuAllocator::instance().set_limit(limit_bytes);
}

void release_cpu_tensor_cache() { CachingCpuAllocator::instance().release_all(); }

CpuCacheStats cpu_tensor_cache_stats() { return CachingCpuAllocator::instance().stats(); }

}  // namespace wico
