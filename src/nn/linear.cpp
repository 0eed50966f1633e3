// The only translation unit besides winograd_conv.cpp that includes oneDNN (CMakeLists.txt gives
// it WICO_HAVE_DNNL when libdnnl-dev is found).
#include "wico/nn/linear.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "wico/core/runtime.h"

#ifdef WICO_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace wico::nn {

namespace {

std::atomic<std::int64_t> g_onednn_calls{0};

#ifdef WICO_HAVE_DNNL

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

using Dims = dnnl::memory::dims;
using Tag = dnnl::memory::format_tag;
constexpr auto kF32 = dnnl::memory::data_type::f32;

// [M, K] x [K, N] (the weight's [N, K] rows read transposed) + [1, N]: one primitive per shape.
struct Product {
  dnnl::memory::desc src, weights, bias, dst;
  dnnl::matmul primitive;
};

const Product& product_for(std::int64_t m, std::int64_t k, std::int64_t n, bool with_bias) {
  using Key = std::tuple<std::int64_t, std::int64_t, std::int64_t, bool>;
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<Product>> products;
  const std::lock_guard<std::mutex> lock(mutex);
  auto& slot = products[Key{m, k, n, with_bias}];
  if (!slot) {
    auto p = std::make_unique<Product>();
    p->src = dnnl::memory::desc(Dims{m, k}, kF32, Tag::ab);
    p->weights = dnnl::memory::desc(Dims{k, n}, kF32, Tag::ba);
    p->bias = with_bias ? dnnl::memory::desc(Dims{1, n}, kF32, Tag::ab) : dnnl::memory::desc();
    p->dst = dnnl::memory::desc(Dims{m, n}, kF32, Tag::ab);
    p->primitive = dnnl::matmul(dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(p->src, p->weights, p->bias, p->dst), engine()));
    slot = std::move(p);
  }
  return *slot;
}

bool cpu_has_avx512() {
  static const bool yes = dnnl::get_effective_cpu_isa() >= dnnl::cpu_isa::avx512_core;
  return yes;
}

at::Tensor onednn_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  RECORD_FUNCTION("wico::onednn_linear", std::vector<c10::IValue>());
  const at::Tensor input = x.contiguous(), w = weight.contiguous();
  const std::int64_t k = input.size(-1), n = w.size(0), m = input.numel() / k;
  std::vector<std::int64_t> out_sizes(input.sizes().begin(), input.sizes().end());
  out_sizes.back() = n;
  at::Tensor out = at::empty(out_sizes, input.options());
  const bool with_bias = bias.defined();
  const at::Tensor b = with_bias ? bias.contiguous() : at::Tensor();
  const Product& p = product_for(m, k, n, with_bias);
  dnnl::stream stream(engine());
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, dnnl::memory(p.src, engine(), input.data_ptr())},
      {DNNL_ARG_WEIGHTS, dnnl::memory(p.weights, engine(), w.data_ptr())},
      {DNNL_ARG_DST, dnnl::memory(p.dst, engine(), out.data_ptr())}};
  if (with_bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(p.bias, engine(), b.data_ptr()));
  p.primitive.execute(stream, args);
  stream.wait();
  ++g_onednn_calls;
  return out;
}

#endif

bool takes_onednn(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!linear_uses_onednn()) return false;
  const bool needs_grad = c10::GradMode::is_enabled() &&
                          (x.requires_grad() || weight.requires_grad() ||
                           (bias.defined() && bias.requires_grad()));
  const auto f32_cpu = [](const at::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.layout() == at::kStrided;
  };
  return !needs_grad && !at::autocast::is_cpu_enabled() && f32_cpu(x) && f32_cpu(weight) &&
         (!bias.defined() || (f32_cpu(bias) && bias.dim() == 1)) && weight.dim() == 2 &&
         x.dim() >= 1 && x.size(-1) == weight.size(1) && x.numel() > 0;
}

}  // namespace

bool onednn_linear_available() {
#ifdef WICO_HAVE_DNNL
  return true;
#else
  return false;
#endif
}

bool linear_uses_onednn() {
#ifdef WICO_HAVE_DNNL
  switch (linear_backend()) {
    case LinearBackend::kBlas: return false;
    case LinearBackend::kOneDnn: return true;
    case LinearBackend::kAuto: return cpu_has_avx512();
  }
#endif
  return false;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
#ifdef WICO_HAVE_DNNL
  if (takes_onednn(x, weight, bias)) return onednn_linear(x, weight, bias);
#endif
  return at::linear(x, weight, bias);
}

at::Tensor linear(const at::Tensor& x, const torch::nn::Linear& layer) {
  return linear(x, layer->weight, layer->bias);
}

std::int64_t onednn_linear_calls() { return g_onednn_calls; }

}  // namespace wico::nn
