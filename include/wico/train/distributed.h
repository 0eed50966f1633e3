// Data-parallel training on LibTorch's c10d: one process per device, a TCPStore rendezvous
// (rank 0 serves it) and a process group (Gloo on CPU, NCCL on CUDA when this build has it).
// Every collective must be issued by all ranks in the same order; with one process there is no
// process group and every collective returns at once.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace torch::nn {
class Module;
}

namespace wico::train {

// Where this process sits in the job, as torchrun (or launch_local_workers) describes it.
struct DistributedEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;

  // RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; all absent -> a single process.
  // LOCAL_RANK defaults to RANK (one node). Throws ConfigError naming the variable and what was
  // expected for a malformed or inconsistent value.
  static DistributedEnv from_environment();
  // The same rules over an explicit name -> value map (absent names are unset).
  static DistributedEnv from_variables(const std::map<std::string, std::string>& variables);

  bool enabled() const { return world_size > 1; }
};

class Distributed {
 public:
  // Joins the job: rendezvous at master_addr:master_port, then a Gloo (CPU device) or NCCL (CUDA
  // device) process group. A failed rendezvous (port taken, a peer missing after `timeout`) is a
  // wico::Error naming the address, rank and world size; `timeout` (at least 1 s for the
  // rendezvous, which c10d counts in seconds) also bounds each collective.
  Distributed(const DistributedEnv& env, c10::Device device,
              std::chrono::milliseconds timeout = std::chrono::minutes(30));
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  // Whether this build can run collectives for tensors on `type`: CPU needs Gloo, CUDA needs NCCL.
  static bool has_backend(c10::DeviceType type);

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  int local_rank() const { return env_.local_rank; }
  bool is_main() const { return env_.rank == 0; }
  const c10::Device& device() const { return device_; }

  // Copies rank 0's parameters and buffers to every rank (call once, before training). Throws if
  // the ranks' modules differ in tensor count or sizes.
  void broadcast_parameters(torch::nn::Module& module);
  // Replaces each parameter's gradient by its mean over ranks. Gradients are packed into flat
  // buckets of at most `bucket_bytes` (per dtype and device, in order; a larger tensor gets its own
  // bucket), one all-reduce per bucket. A parameter that requires grad but has none on this rank
  // counts as zeros and gets the averaged gradient; parameters that do not require grad are
  // skipped. All ranks must pass the same parameter list.
  void average_gradients(const std::vector<at::Tensor>& params,
                         std::size_t bucket_bytes = std::size_t{25} << 20);

  // In place: the element-wise sum over ranks.
  void all_reduce_sum(at::Tensor& tensor);
  double all_reduce_sum(double value);
  // True on every rank when any rank passes true (stop requests, non-finite losses).
  bool any(bool flag);
  void barrier();
  // In place: every rank receives `root`'s tensor (same shape and dtype on all ranks).
  void broadcast(at::Tensor& tensor, int root = 0);

 private:
  struct Group;  // the c10d store and process group, absent in a single process
  void broadcast_flat(const std::vector<at::Tensor>& tensors, std::size_t bucket_bytes);

  DistributedEnv env_;
  c10::Device device_;
  std::unique_ptr<Group> group_;
};

// Batch norm whose statistics are those of the whole global batch: the forward pass all-reduces
// per-channel sum, sum of squares and count; the backward pass all-reduces the per-channel sums of
// grad and grad * (x - mean), as PyTorch's SyncBatchNorm does. Input is [N, C, *]; weight and bias
// may be undefined (no affine). In training the running statistics (if defined) are updated in
// place with the global mean and the unbiased global variance; in evaluation this is
// at::batch_norm with the running statistics. The gradients of weight and bias are this rank's
// share (as in PyTorch): average_gradients() combines them like any other parameter's.
at::Tensor sync_batch_norm(const at::Tensor& input, const at::Tensor& weight,
                           const at::Tensor& bias, at::Tensor running_mean, at::Tensor running_var,
                           bool training, double momentum, double eps, Distributed& dist);

}  // namespace wico::train
