// at::parallel_for for bodies that call ATen operators.
//
// at::parallel_for runs its body on OpenMP's threads, and the state the operators dispatch on is
// thread-local: the grad mode, inference mode, autocast. A body that calls an operator (rather
// than plain loops over data pointers) would run it on a worker thread with that thread's own
// defaults, not the caller's; e.g. an out= operator inside an autograd Function's forward then
// refuses its inputs because grad mode is on again. This carries the caller's state to every
// thread of the team.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <cstdint>

namespace wico {

template <class F>
void parallel_for_keeping_state(std::int64_t begin, std::int64_t end, std::int64_t grain_size,
                                const F& body) {
  const at::ThreadLocalState state;
  at::parallel_for(begin, end, grain_size, [&](std::int64_t first, std::int64_t last) {
    const at::ThreadLocalStateGuard guard(state);
    body(first, last);
  });
}

}  // namespace wico
