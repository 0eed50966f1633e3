#include "wico/train/distributed.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <limits>
#include <optional>

#include "wico/core/error.h"

// LibTorch ships c10d but its headers hide each backend behind USE_C10D_<NAME>, which CMake
// defines for this file when the backend's headers are found (cmake/WicoDependencies.cmake).
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(USE_C10D_NCCL) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define WICO_HAVE_NCCL 1
#endif

namespace wico::train {

// ---- environment ------------------------------------------------------------------------------

namespace {

std::optional<std::string> lookup(const std::map<std::string, std::string>& variables,
                                  const std::string& name) {
  const auto it = variables.find(name);
  if (it == variables.end()) return std::nullopt;
  return it->second;
}

int parse_int(const std::string& name, const std::string& text, int min, int max,
              const std::string& expected) {
  int value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value < min || value > max) {
    throw ConfigError("environment variable " + name + "='" + text + "': expected " + expected);
  }
  return value;
}

}  // namespace

DistributedEnv DistributedEnv::from_variables(const std::map<std::string, std::string>& variables) {
  constexpr int kMaxInt = std::numeric_limits<int>::max();
  DistributedEnv env;
  const auto world = lookup(variables, "WORLD_SIZE");
  const auto rank = lookup(variables, "RANK");
  const auto local_rank = lookup(variables, "LOCAL_RANK");
  const auto addr = lookup(variables, "MASTER_ADDR");
  const auto port = lookup(variables, "MASTER_PORT");
  if (world) env.world_size = parse_int("WORLD_SIZE", *world, 1, kMaxInt, "an integer >= 1");
  if (rank) {
    env.rank = parse_int(
        "RANK", *rank, 0, env.world_size - 1,
        "an integer in [0, WORLD_SIZE - 1] = [0, " + std::to_string(env.world_size - 1) + "]");
  } else if (env.world_size > 1) {
    throw ConfigError("environment variable RANK is not set, but WORLD_SIZE=" +
                      std::to_string(env.world_size) + " (expected both, as torchrun sets them)");
  }
  env.local_rank = local_rank ? parse_int("LOCAL_RANK", *local_rank, 0, env.world_size - 1,
                                          "an integer in [0, WORLD_SIZE - 1] = [0, " +
                                              std::to_string(env.world_size - 1) + "]")
                              : env.rank;
  if (addr) {
    if (addr->empty()) {
      throw ConfigError("environment variable MASTER_ADDR is empty: expected a host name or IP");
    }
    env.master_addr = *addr;
  }
  if (port) env.master_port = parse_int("MASTER_PORT", *port, 1, 65535, "a port in [1, 65535]");
  return env;
}

DistributedEnv DistributedEnv::from_environment() {
  std::map<std::string, std::string> variables;
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) {
    if (const char* value = std::getenv(name)) variables[name] = value;
  }
  return from_variables(variables);
}

// ---- process group ----------------------------------------------------------------------------

struct Distributed::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::chrono::milliseconds timeout;
};

namespace {

// c10::Error's what() carries a C++ backtrace; the message alone is what a user needs.
std::string reason(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) {
    return c10_error->what_without_backtrace();
  }
  return e.what();
}

std::string where(const DistributedEnv& env) {
  return env.master_addr + ":" + std::to_string(env.master_port) + " (rank " +
         std::to_string(env.rank) + ", world size " + std::to_string(env.world_size) + ")";
}

// Runs one collective and waits for it; c10d's failures become wico::Error naming the operation.
template <typename Issue>
void run_collective(const char* what, const DistributedEnv& env, Issue&& issue) {
  try {
    issue()->wait();
  } catch (const std::exception& e) {
    throw Error(std::string("distributed ") + what + " failed on rank " + std::to_string(env.rank) +
                " of " + std::to_string(env.world_size) + ": " + reason(e));
  }
}

// Every rank counts itself in; the last one opens the door for all.
void wait_for_all_ranks(c10d::Store& store, const DistributedEnv& env,
                        std::chrono::milliseconds timeout) {
  if (store.add("arrived", 1) == env.world_size) store.set("all_arrived", {1});
  try {
    store.wait({"all_arrived"}, timeout);
  } catch (const std::exception&) {
    throw Error("only " + std::to_string(store.add("arrived", 0)) + " of " +
                std::to_string(env.world_size) + " ranks arrived");
  }
}

#ifdef USE_C10D_GLOO
std::shared_ptr<gloo::transport::Device> gloo_device(const std::string& master_addr) {
  // Like torch.distributed: an explicit interface wins; a loopback master means a one-machine job,
  // where binding to loopback avoids depending on how the host name resolves.
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME")) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  }
  if (master_addr == "127.0.0.1" || master_addr == "localhost") {
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}
#endif

}  // namespace

bool Distributed::has_backend(c10::DeviceType type) {
#ifdef WICO_HAVE_NCCL
  if (type == c10::DeviceType::CUDA) return true;
#endif
#ifdef USE_C10D_GLOO
  if (type == c10::DeviceType::CPU) return true;
#endif
  return false;
}

Distributed::Distributed(const DistributedEnv& env, c10::Device device,
                         std::chrono::milliseconds timeout)
    : env_(env), device_(device) {
  WICO_CHECK(env.world_size >= 1 && env.rank >= 0 && env.rank < env.world_size, "invalid rank ",
             env.rank, " for world size ", env.world_size);
  if (!env.enabled()) return;
  if (!has_backend(device.type())) {
    throw Error(device.is_cuda()
                    ? "distributed training on " + device.str() +
                          " needs NCCL, which this build of WiCo++ lacks (configure it against a "
                          "CUDA LibTorch with nccl.h), or use device cpu (Gloo)"
                    : "distributed training on " + device.str() +
                          " needs Gloo (CPU), which this build of WiCo++ lacks (install "
                          "libgloo-dev and reconfigure)");
  }

  auto group = std::make_unique<Group>();
  group->timeout = timeout;
  // c10d's socket code counts in whole seconds: below one, even rank 0 fails to reach its own
  // store.
  const std::chrono::milliseconds rendezvous_timeout =
      std::max(timeout, std::chrono::milliseconds(1000));
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(env.master_port);
    options.isServer = env.rank == 0;
    options.numWorkers = static_cast<std::size_t>(env.world_size);
    // The store's own wait for workers reports a bare "Socket Timeout"; counting arrivals here
    // tells how many ranks came.
    options.waitWorkers = false;
    options.timeout = rendezvous_timeout;
    auto tcp_store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
    // A prefix keeps this group's keys apart should the store ever serve a second group.
    group->store = c10::make_intrusive<c10d::PrefixStore>("wico/", tcp_store);
    wait_for_all_ranks(*group->store, env, rendezvous_timeout);
#ifdef WICO_HAVE_NCCL
    if (device.is_cuda()) {
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = timeout;
      group->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(group->store, env.rank,
                                                              env.world_size, nccl_options);
    }
#endif
#ifdef USE_C10D_GLOO
    if (!device.is_cuda()) {
      auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
      gloo_options->devices.push_back(gloo_device(env.master_addr));
      group->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, env.rank,
                                                              env.world_size, gloo_options);
    }
#endif
  } catch (const std::exception& e) {
    throw Error("distributed rendezvous at " + where(env) + " failed within " +
                std::to_string(rendezvous_timeout.count()) + " ms: " + reason(e) +
                " (is MASTER_PORT free on rank 0, and did every rank start?)");
  }
  group_ = std::move(group);
  spdlog::debug("distributed: joined {} on {} ({})", where(env_), device_.str(),
                group_->pg->getBackendName());
}

Distributed::~Distributed() = default;

// Collectives run on the group's device: CPU tensors for Gloo, the CUDA device for NCCL.
namespace {

at::Tensor scalar_on(const c10::Device& device, double value) {
  return at::full({1}, value, at::TensorOptions().dtype(at::kDouble).device(device));
}

}  // namespace

void Distributed::all_reduce_sum(at::Tensor& tensor) {
  if (!group_) return;
  WICO_CHECK(tensor.defined(), "all_reduce_sum of an undefined tensor");
  // c10d wants dense contiguous tensors on the group's device; reduce a copy otherwise.
  const bool direct = tensor.is_contiguous() && tensor.device() == device_;
  std::vector<at::Tensor> buffer{direct ? tensor : tensor.to(device_).contiguous()};
  run_collective("all_reduce", env_, [&] { return group_->pg->allreduce(buffer); });
  if (!direct) tensor.copy_(buffer[0]);
}

double Distributed::all_reduce_sum(double value) {
  if (!group_) return value;
  at::Tensor t = scalar_on(device_, value);
  all_reduce_sum(t);
  return t.item<double>();
}

bool Distributed::any(bool flag) {
  if (!group_) return flag;
  return all_reduce_sum(flag ? 1.0 : 0.0) > 0.5;
}

void Distributed::barrier() {
  if (!group_) return;
  run_collective("barrier", env_, [&] { return group_->pg->barrier(); });
}

void Distributed::broadcast(at::Tensor& tensor, int root) {
  if (!group_) return;
  WICO_CHECK(tensor.defined(), "broadcast of an undefined tensor");
  WICO_CHECK(root >= 0 && root < env_.world_size, "broadcast root ", root,
             " is not a rank of world size ", env_.world_size);
  const bool direct = tensor.is_contiguous() && tensor.device() == device_;
  std::vector<at::Tensor> buffer{direct ? tensor : tensor.to(device_).contiguous()};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  run_collective("broadcast", env_, [&] { return group_->pg->broadcast(buffer, options); });
  if (!direct) tensor.copy_(buffer[0]);
}

// ---- buckets ----------------------------------------------------------------------------------

namespace {

// Consecutive runs of same-dtype, same-device tensors, cut at `bucket_bytes`. The split depends
// only on the tensors' dtypes, devices and sizes, which all ranks share, so all issue the same
// collectives in the same order.
std::vector<std::vector<std::size_t>> make_buckets(const std::vector<at::Tensor>& tensors,
                                                   std::size_t bucket_bytes) {
  struct Open {
    at::ScalarType dtype;
    c10::Device device;
    std::size_t bytes;
    std::size_t bucket;
  };
  std::vector<std::vector<std::size_t>> buckets;
  std::vector<Open> open;  // one open bucket per (dtype, device)
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    const std::size_t bytes = static_cast<std::size_t>(t.numel()) * t.element_size();
    auto it = std::find_if(open.begin(), open.end(), [&](const Open& o) {
      return o.dtype == t.scalar_type() && o.device == t.device();
    });
    if (it != open.end() && it->bytes + bytes > bucket_bytes) {
      open.erase(it);
      it = open.end();
    }
    if (it == open.end()) {
      buckets.emplace_back();
      open.push_back({t.scalar_type(), t.device(), 0, buckets.size() - 1});
      it = std::prev(open.end());
    }
    it->bytes += bytes;
    buckets[it->bucket].push_back(i);
  }
  return buckets;
}

}  // namespace

void Distributed::average_gradients(const std::vector<at::Tensor>& params,
                                    std::size_t bucket_bytes) {
  if (!group_) return;
  std::vector<at::Tensor> trained;
  for (const at::Tensor& p : params) {
    if (p.defined() && p.requires_grad()) trained.push_back(p);
  }
  for (const at::Tensor& p : trained) {
    WICO_CHECK(!p.grad().defined() || !p.grad().is_sparse(),
               "average_gradients: sparse gradients are not supported");
  }
  struct Pending {
    std::vector<std::size_t> members;
    at::Tensor flat;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<Pending> pending;
  // Issue every bucket's all-reduce first, then wait: the backend overlaps them.
  for (auto& members : make_buckets(trained, bucket_bytes)) {
    std::int64_t total = 0;
    for (std::size_t i : members) total += trained[i].numel();
    const at::Tensor& first = trained[members.front()];
    at::Tensor flat = at::empty({total}, first.options().requires_grad(false));
    std::int64_t offset = 0;
    for (std::size_t i : members) {
      const at::Tensor& grad = trained[i].grad();
      at::Tensor slot = flat.narrow(0, offset, trained[i].numel());
      if (grad.defined()) {
        slot.copy_(grad.reshape({-1}));
      } else {
        slot.zero_();
      }
      offset += trained[i].numel();
    }
    Pending p{std::move(members), flat, {}};
    std::vector<at::Tensor> buffer{p.flat.device() == device_ ? p.flat : p.flat.to(device_)};
    p.flat = buffer[0];
    try {
      p.work = group_->pg->allreduce(buffer);
    } catch (const std::exception& e) {
      throw Error("distributed average_gradients failed on rank " + std::to_string(env_.rank) +
                  ": " + reason(e));
    }
    pending.push_back(std::move(p));
  }
  const double scale = 1.0 / env_.world_size;
  for (Pending& p : pending) {
    run_collective("average_gradients", env_, [&] { return p.work; });
    p.flat.mul_(scale);
    std::int64_t offset = 0;
    for (std::size_t i : p.members) {
      at::Tensor param = trained[i];
      at::Tensor mean = p.flat.narrow(0, offset, param.numel()).view(param.sizes());
      offset += param.numel();
      if (param.grad().defined()) {
        param.mutable_grad().copy_(mean);
      } else {
        param.mutable_grad() = mean.to(param.device()).clone();
      }
    }
  }
}

void Distributed::broadcast_flat(const std::vector<at::Tensor>& tensors, std::size_t bucket_bytes) {
  for (const auto& members : make_buckets(tensors, bucket_bytes)) {
    std::vector<at::Tensor> parts;
    for (std::size_t i : members) parts.push_back(tensors[i].detach().reshape({-1}));
    at::Tensor flat = at::cat(parts).to(device_);
    broadcast(flat, 0);
    std::int64_t offset = 0;
    for (std::size_t i : members) {
      const at::Tensor& t = tensors[i];
      // detach(): an in-place write to a leaf that requires grad is not an autograd operation.
      t.detach().copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

void Distributed::broadcast_parameters(torch::nn::Module& module) {
  if (!group_) return;
  std::vector<at::Tensor> tensors;
  for (const at::Tensor& p : module.parameters()) tensors.push_back(p);
  for (const at::Tensor& b : module.buffers()) {
    if (b.defined()) tensors.push_back(b);
  }
  // A different model on some rank would make the broadcasts mismatch (or hang): compare first.
  double elements = 0;
  for (const at::Tensor& t : tensors) elements += static_cast<double>(t.numel());
  at::Tensor shape = at::tensor({static_cast<double>(tensors.size()), elements},
                                at::TensorOptions().dtype(at::kDouble));
  at::Tensor reference = shape.clone();
  broadcast(reference, 0);
  const bool differs = any(!at::equal(shape, reference));
  if (differs) {
    throw Error("broadcast_parameters: the ranks' modules differ (rank " +
                std::to_string(env_.rank) + " has " + std::to_string(tensors.size()) +
                " tensors of " + std::to_string(static_cast<std::int64_t>(elements)) +
                " elements, rank 0 " +
                std::to_string(static_cast<std::int64_t>(reference[0].item<double>())) + " of " +
                std::to_string(static_cast<std::int64_t>(reference[1].item<double>())) + ")");
  }
  broadcast_flat(tensors, std::size_t{25} << 20);
}

// ---- synchronised batch norm ------------------------------------------------------------------

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// [C] -> [1, C, 1, ...] to broadcast against an [N, C, *] input.
at::Tensor per_channel(const at::Tensor& t, std::int64_t dims) {
  std::vector<std::int64_t> shape(static_cast<std::size_t>(dims), 1);
  shape[1] = t.numel();
  return t.view(shape);
}

std::vector<std::int64_t> reduce_dims(const at::Tensor& input) {
  std::vector<std::int64_t> dims{0};
  for (std::int64_t d = 2; d < input.dim(); ++d) dims.push_back(d);
  return dims;
}

struct RunningStats {
  at::Tensor mean, var;
};

struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  // LibTorch 1.13's Function cannot take undefined tensors as inputs: weight and bias are always
  // defined (ones and zeros without grad for a norm without affine), and the running statistics,
  // which need no gradient, come through a pointer.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, RunningStats* running, double momentum,
                            double eps, Distributed* dist) {
    const std::int64_t channels = input.size(1);
    const auto dims = reduce_dims(input);
    // Sums in double: var = E[x^2] - E[x]^2 cancels badly in float over a large global batch.
    const at::Tensor count = at::full({1}, static_cast<double>(input.numel() / channels),
                                      input.options().dtype(at::kDouble));
    at::Tensor stats = at::cat(
        {input.sum(dims, false, at::kDouble), input.square().sum(dims, false, at::kDouble), count});
    dist->all_reduce_sum(stats);
    const double n = stats[2 * channels].item<double>();
    WICO_CHECK(n > 1, "sync_batch_norm: expected more than 1 value per channel when training, got ",
               n, " over all ranks (input ", input.sizes(), ")");
    const at::Tensor mean64 = stats.narrow(0, 0, channels) / n;
    const at::Tensor var64 =
        (stats.narrow(0, channels, channels) / n - mean64.square()).clamp_min(0);
    const at::Tensor mean = mean64.to(input.scalar_type());
    const at::Tensor invstd = (var64 + eps).rsqrt().to(input.scalar_type());
    if (running->mean.defined()) {
      running->mean.mul_(1 - momentum).add_(mean64.to(running->mean.scalar_type()), momentum);
    }
    if (running->var.defined()) {
      running->var.mul_(1 - momentum)
          .add_((var64 * (n / (n - 1))).to(running->var.scalar_type()), momentum);
    }

    const at::Tensor scale = invstd * weight;
    const at::Tensor output =
        (input - per_channel(mean, input.dim())) * per_channel(scale, input.dim()) +
        per_channel(bias, input.dim());

    ctx->save_for_backward({input, weight, mean, invstd});
    ctx->saved_data["count"] = n;
    ctx->saved_data["dist"] = reinterpret_cast<std::int64_t>(dist);
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& input = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& mean = saved[2];
    const at::Tensor& invstd = saved[3];
    const double n = ctx->saved_data["count"].toDouble();
    auto* dist = reinterpret_cast<Distributed*>(ctx->saved_data["dist"].toInt());
    // An unused output still takes part: the other ranks all-reduce below.
    const at::Tensor grad_out = grad_outputs[0].defined() ? grad_outputs[0] : at::zeros_like(input);
    const std::int64_t channels = input.size(1), dims = input.dim();

    const at::Tensor xmu = input - per_channel(mean, dims);
    const auto rdims = reduce_dims(input);
    const at::Tensor sum_dy = grad_out.sum(rdims);
    const at::Tensor sum_dy_xmu = (grad_out * xmu).sum(rdims);

    at::Tensor grad_input, grad_weight, grad_bias;
    // This rank's share, as in PyTorch; the trainer averages them with the other gradients.
    if (ctx->needs_input_grad(1)) grad_weight = sum_dy_xmu * invstd;
    if (ctx->needs_input_grad(2)) grad_bias = sum_dy;
    // Every rank all-reduces here, so every rank must run backward through this layer.
    if (ctx->needs_input_grad(0)) {
      at::Tensor sums = at::cat({sum_dy, sum_dy_xmu});
      dist->all_reduce_sum(sums);
      const at::Tensor mean_dy = sums.narrow(0, 0, channels) / n;
      const at::Tensor mean_dy_xmu = sums.narrow(0, channels, channels) / n;
      const at::Tensor scale = invstd * weight;
      grad_input = (grad_out - per_channel(mean_dy, dims) -
                    xmu * per_channel(invstd.square() * mean_dy_xmu, dims)) *
                   per_channel(scale, dims);
    }
    return {grad_input,   grad_weight,  grad_bias,   at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor sync_batch_norm(const at::Tensor& input, const at::Tensor& weight,
                           const at::Tensor& bias, at::Tensor running_mean, at::Tensor running_var,
                           bool training, double momentum, double eps, Distributed& dist) {
  WICO_CHECK(input.dim() >= 2, "sync_batch_norm: expected an [N, C, *] input, got ", input.sizes());
  if (!training) {
    return at::batch_norm(input, weight, bias, running_mean, running_var, false, momentum, eps,
                          false);
  }
  WICO_CHECK(input.size(1) > 0, "sync_batch_norm: input ", input.sizes(), " has no channels");
  const std::int64_t channels = input.size(1);
  const at::Tensor affine_weight =
      weight.defined() ? weight : at::ones({channels}, input.options());
  const at::Tensor affine_bias = bias.defined() ? bias : at::zeros({channels}, input.options());
  RunningStats running{std::move(running_mean), std::move(running_var)};
  return SyncBatchNormFunction::apply(input, affine_weight, affine_bias, &running, momentum, eps,
                                      &dist);
}

}  // namespace wico::train
