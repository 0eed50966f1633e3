// wico_dist_worker DIR: one rank of the multi-process tests (distributed_test.cpp), started by
// launch_local_workers. Runs every Distributed operation on the cases of dist_cases.h and writes
// what it got to DIR/rank<R>.txt.
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "train/dist_cases.h"
#include "wico/train/distributed.h"

namespace fs = std::filesystem;
using namespace wico;
using namespace wico::train;

namespace {

struct SmallNet : torch::nn::Module {
  SmallNet()
      : linear(register_module("linear", torch::nn::Linear(3, 2))),
        norm(register_module("norm", torch::nn::BatchNorm1d(2))) {}
  torch::nn::Linear linear;
  torch::nn::BatchNorm1d norm;
};

void write_named(test::ResultWriter& out, const std::string& prefix, torch::nn::Module& module) {
  for (const auto& item : module.named_parameters()) out.add(prefix + item.key(), item.value());
  for (const auto& item : module.named_buffers()) out.add(prefix + item.key(), item.value());
}

void collectives(const fs::path& dir) {
  const DistributedEnv env = DistributedEnv::from_environment();
  Distributed dist(env, c10::kCPU, std::chrono::seconds(30));
  const int rank = dist.rank();
  test::ResultWriter out(dir / ("rank" + std::to_string(rank) + ".txt"));
  out.add("env",
          at::tensor({static_cast<double>(env.rank), static_cast<double>(env.world_size),
                      static_cast<double>(env.local_rank), static_cast<double>(env.master_port)},
                     at::kDouble));

  at::Tensor sum = at::tensor({rank + 1.0, 10.0 * (rank + 1), -1.0 * rank}, at::kFloat);
  dist.all_reduce_sum(sum);
  out.add("sum_tensor", sum);
  // Non-contiguous: reduced through a copy and written back.
  at::Tensor strided = (at::arange(6, at::kDouble).view({2, 3}) * (rank + 1)).t();
  dist.all_reduce_sum(strided);
  out.add("sum_strided", strided);
  out.add("sum_double", dist.all_reduce_sum(0.5 + rank));
  out.add("any_one", dist.any(rank == 1) ? 1.0 : 0.0);
  out.add("any_none", dist.any(false) ? 1.0 : 0.0);
  dist.barrier();
  at::Tensor broadcast = at::arange(4, at::kFloat) + 100.0 * rank;
  dist.broadcast(broadcast, 1);
  out.add("broadcast_from_1", broadcast);

  // average_gradients
  const auto cases = test::grad_cases();
  std::vector<at::Tensor> params;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    at::Tensor p = at::zeros(cases[i].shape, cases[i].dtype).requires_grad_(!cases[i].frozen);
    if (!cases[i].frozen && cases[i].missing_on_rank != rank) {
      p.mutable_grad() = test::rank_gradient(rank, i);
    }
    params.push_back(p);
  }
  dist.average_gradients(params, test::kGradBucketBytes);
  for (std::size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& grad = params[i].grad();
    out.add("grad_defined" + std::to_string(i), grad.defined() ? 1.0 : 0.0);
    if (grad.defined()) out.add("grad" + std::to_string(i), grad);
  }

  // broadcast_parameters: differently initialised modules, buffers included.
  at::manual_seed(static_cast<std::uint64_t>(rank) + 7);
  SmallNet net;
  net.norm->running_mean.fill_(rank + 1.0);
  net.norm->num_batches_tracked.fill_(rank + 5);
  write_named(out, "before.", net);
  dist.broadcast_parameters(net);
  write_named(out, "after.", net);

  // sync_batch_norm over this rank's rows of the global batch.
  const test::SyncBnCase c = test::sync_bn_case();
  const std::int64_t begin = test::sync_bn_begin(rank), rows = test::sync_bn_rows(rank);
  at::Tensor input = c.input.narrow(0, begin, rows).clone().requires_grad_(true);
  at::Tensor weight = c.weight.clone().requires_grad_(true);
  at::Tensor bias = c.bias.clone().requires_grad_(true);
  at::Tensor running_mean = at::zeros({3}), running_var = at::ones({3});
  at::Tensor output = sync_batch_norm(input, weight, bias, running_mean, running_var, true,
                                      c.momentum, c.eps, dist);
  (output * c.grad_output.narrow(0, begin, rows)).sum().backward();
  out.add("bn_output", output);
  out.add("bn_grad_input", input.grad());
  out.add("bn_grad_weight", weight.grad());
  out.add("bn_grad_bias", bias.grad());
  out.add("bn_running_mean", running_mean);
  out.add("bn_running_var", running_var);

  // Rank 0 serves the store: nobody leaves while another may still need it.
  dist.barrier();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  try {
    collectives(argv[1]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wico_dist_worker: %s\n", e.what());
    return 1;
  }
}
