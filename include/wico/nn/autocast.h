// A region where autocast (train.amp) is off, as the originals' `autocast(enabled=False)`: Mask2Former
// runs its deformable pixel decoder and its Hungarian matcher's costs in float32 under AMP. The
// previous state (CPU and CUDA autocast) comes back when the guard goes.
#pragma once
#include <ATen/autocast_mode.h>

namespace wico::nn {

class AutocastDisabled {
 public:
  AutocastDisabled() : gpu_(at::autocast::is_enabled()), cpu_(at::autocast::is_cpu_enabled()) {
    at::autocast::set_enabled(false);
    at::autocast::set_cpu_enabled(false);
  }
  ~AutocastDisabled() {
    at::autocast::set_enabled(gpu_);
    at::autocast::set_cpu_enabled(cpu_);
  }
  AutocastDisabled(const AutocastDisabled&) = delete;
  AutocastDisabled& operator=(const AutocastDisabled&) = delete;

 private:
  bool gpu_, cpu_;
};

}  // namespace wico::nn
