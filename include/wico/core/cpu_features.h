// What the CPU running us supports, for kernels that carry an instruction-set clone
// (__attribute__((target(...)))) beside the portable x86-64 build and pick one at run time.
#pragma once

// Defined where GCC/Clang can compile x86 target clones.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define WICO_X86_TARGET_CLONES 1
#endif

namespace wico {

// AVX2 and FMA both present (checked once).
inline bool cpu_has_avx2_fma() {
#ifdef WICO_X86_TARGET_CLONES
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

}  // namespace wico
