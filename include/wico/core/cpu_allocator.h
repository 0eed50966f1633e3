// A caching allocator for LibTorch's CPU tensors (runtime.cpu_cache_mb).
//
// LibTorch's default CPU allocator hands every tensor to malloc and back on release. glibc serves
// blocks above its mmap threshold (at most 32 MB) with fresh mmaps, so each forward's large
// activations fault in new, kernel-zeroed pages: at paper size one top-down forward touches about
// 1.5 GB that way and spent more time in page faults than in some of its layers (docs/
// performance.md). This allocator keeps released blocks of at least kMinCachedBytes in size-class
// bins and hands the smallest one of the request's class or up to 1.25x larger to the next
// request, as PyTorch's CUDA caching allocator does for device memory. Smaller tensors go to the allocator that was installed before.
//
// The cache holds at most `limit` bytes of released blocks; a block that would exceed it goes back
// to the system (and lowering the limit frees the largest first). Memory in use is never limited
// here.
#pragma once

#include <cstddef>
#include <cstdint>

namespace wico {

struct CpuCacheStats {
  std::size_t cached_bytes = 0;    // released blocks held for reuse now
  std::size_t in_use_bytes = 0;    // blocks handed out and not yet released (cached sizes only)
  std::size_t limit_bytes = 0;     // the cache's limit
  std::uint64_t hits = 0;          // requests served from the cache
  std::uint64_t misses = 0;        // requests that went to the system
};

// The smallest request the cache serves (smaller ones go to the previous allocator).
constexpr std::size_t kMinCachedBytes = 256 * 1024;

// Installs the caching allocator as LibTorch's CPU allocator, holding at most limit_bytes of
// released memory; limit 0 restores the allocator that was there before and releases the cache.
// Safe to call again (changes the limit). Blocks handed out before a change are still released
// correctly.
void set_cpu_tensor_cache(std::size_t limit_bytes);

// Returns every cached block to the system (tensors in use are untouched).
void release_cpu_tensor_cache();

CpuCacheStats cpu_tensor_cache_stats();

// The size class a request of n bytes is served from (n rounded up to a multiple of 1/16 of the
// power of two at or above it, at least 4 KB: at most 12.5% more): what its block occupies.
std::size_t cpu_cache_size_class(std::size_t n);

}  // namespace wico
