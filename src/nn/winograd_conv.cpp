// The choice of kernel for 3x3 convolutions, and oneDNN's Winograd convolution behind an autograd
// function (our own Winograd is winograd_gemm.cpp). The only translation unit that includes
// oneDNN (CMakeLists.txt gives it WICO_HAVE_DNNL when libdnnl-dev is found).
#include "wico/nn/winograd_conv.h"
#include "winograd_internal.h"

#include <torch/autograd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "wico/core/error.h"
#include "wico/core/runtime.h"

#ifdef WICO_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace wico::nn {

namespace detail {
std::atomic<std::uint64_t>& winograd_counter() {
  static std::atomic<std::uint64_t> count{0};
  return count;
}

void check_conv3x3_arguments(const char* caller, const at::Tensor& input,
                             const at::Tensor& weight, const at::Tensor& bias,
                             std::int64_t padding) {
  if (input.dim() != 4 || weight.dim() != 4 || weight.size(2) != 3 || weight.size(3) != 3 ||
      input.size(1) != weight.size(1) || !input.device().is_cpu() ||
      !weight.device().is_cpu() || input.scalar_type() != torch::kFloat ||
      weight.scalar_type() != torch::kFloat || padding < 0 || padding > 1 ||
      input.size(2) + 2 * padding < 3 || input.size(3) + 2 * padding < 3 ||
      (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0) ||
                          bias.scalar_type() != torch::kFloat))) {
    throw Error(std::string(caller) +
                ": expected a float32 CPU input [N, C, H, W] of at least 3x3 with the padding, a "
                "weight [O, C, 3, 3], a bias [O] or none and padding 0 or 1; got input " +
                c10::str(input.sizes()) + ", weight " + c10::str(weight.sizes()) + ", bias " +
                (bias.defined() ? c10::str(bias.sizes()) : std::string("none")) + ", padding " +
                std::to_string(padding));
  }
}
}  // namespace detail

namespace {

// Below this output size the 4x4 tiles and the layout changes eat the saving, for oneDNN's
// Winograd (measured with `wico bench conv` on an AVX-512 EPYC: a 512-channel 15x15 map is even,
// a 64-channel 32x32 one 1.6x faster, LAVT's decoder convolutions at 30x30 to 120x120 1.5-3.8x
// faster) and for ours (winograd_gemm.cpp; on a 2-core AVX2 EPYC: 512 channels at 15x15 0.7x,
// LAVT's 1536-channel 30x30 convolution 1.7x, its 1/4-resolution ones 2.6-3.1x).
constexpr std::int64_t kAutoMinOutputPixels = 24 * 24;
// Ours also needs enough channels: the tile transforms cost grows with C + O, the products' with
// C x O (64 channels at 32x32 or 120x120: 0.9x forward).
constexpr std::int64_t kAutoMinChannelsGemm = 128;

bool shape_eligible(const torch::Tensor& x, const torch::nn::Conv2dImpl& conv) {
  const auto& o = conv.options;
  const auto& k = o.kernel_size();
  const auto& s = o.stride();
  const auto& d = o.dilation();
  if (k->at(0) != 3 || k->at(1) != 3 || s->at(0) != 1 || s->at(1) != 1 || d->at(0) != 1 ||
      d->at(1) != 1 || o.groups() != 1 || o.transposed()) {
    return false;
  }
  const auto* pad = c10::get_if<torch::ExpandingArray<2>>(&o.padding());
  if (pad == nullptr || (*pad)->at(0) != (*pad)->at(1) || (*pad)->at(0) > 1) return false;
  if (!c10::holds_alternative<torch::enumtype::kZeros>(o.padding_mode())) return false;
  return x.dim() == 4 && x.device().is_cpu() && x.scalar_type() == torch::kFloat &&
         conv.weight.scalar_type() == torch::kFloat && !x.is_mkldnn();
}

std::int64_t padding_of(const torch::nn::Conv2dImpl& conv) {
  return c10::get<torch::ExpandingArray<2>>(conv.options.padding())->at(0);
}

#ifdef WICO_HAVE_DNNL

using dnnl::memory;
using Tag = memory::format_tag;
constexpr auto kF32 = memory::data_type::f32;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// One shape's primitives, made once: creating a Winograd primitive descriptor costs more than a
// small convolution.
struct Plan {
  bool ok = false;
  dnnl::convolution_forward::primitive_desc forward_pd;
  dnnl::convolution_forward forward;
  dnnl::convolution_backward_data::primitive_desc backward_data_pd;
  dnnl::convolution_backward_data backward_data;
  dnnl::convolution_backward_weights::primitive_desc backward_weights_pd;
  dnnl::convolution_backward_weights backward_weights;
};

using PlanKey = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                           std::int64_t>;  // N, C, O, H, W, padding

struct Shape {
  memory::dims src, weights, dst, strides{1, 1}, padding;
};

Shape shape_of(const PlanKey& key) {
  const auto [n, c, o, h, w, p] = key;
  const std::int64_t oh = h + 2 * p - 2, ow = w + 2 * p - 2;
  return {{n, c, h, w}, {o, c, 3, 3}, {n, o, oh, ow}, {1, 1}, {p, p}};
}

// Builds every primitive of the shape; ok stays false when oneDNN has no Winograd kernel for it
// (a CPU without AVX-512, a shape its kernels reject).
Plan make_plan(const PlanKey& key) {
  Plan plan;
  const Shape s = shape_of(key);
  const memory::desc src(s.src, kF32, Tag::any), weights(s.weights, kF32, Tag::any),
      dst(s.dst, kF32, Tag::any);
  const auto algorithm = dnnl::algorithm::convolution_winograd;
  try {
    auto& engine = cpu_engine();
    plan.forward_pd = dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algorithm, src, weights,
                                        dst, s.strides, s.padding, s.padding),
        engine);
    plan.backward_data_pd = dnnl::convolution_backward_data::primitive_desc(
        dnnl::convolution_backward_data::desc(algorithm, src, weights, dst, s.strides, s.padding,
                                              s.padding),
        engine, plan.forward_pd);
    plan.backward_weights_pd = dnnl::convolution_backward_weights::primitive_desc(
        dnnl::convolution_backward_weights::desc(algorithm, src, weights, dst, s.strides, s.padding,
                                                 s.padding),
        engine, plan.forward_pd);
    plan.forward = dnnl::convolution_forward(plan.forward_pd);
    plan.backward_data = dnnl::convolution_backward_data(plan.backward_data_pd);
    plan.backward_weights = dnnl::convolution_backward_weights(plan.backward_weights_pd);
    plan.ok = true;
  } catch (const dnnl::error&) {
    plan.ok = false;
  }
  return plan;
}

const Plan& plan_for(const PlanKey& key) {
  static std::mutex mutex;
  static std::map<PlanKey, std::unique_ptr<Plan>> plans;
  const std::lock_guard<std::mutex> lock(mutex);
  auto& slot = plans[key];
  if (!slot) slot = std::make_unique<Plan>(make_plan(key));
  return *slot;
}

PlanKey key_of(const torch::Tensor& input, const torch::Tensor& weight, std::int64_t padding) {
  return {input.size(0), input.size(1), weight.size(0), input.size(2), input.size(3), padding};
}

// A plain (nchw / oihw) view of a contiguous tensor's memory.
memory plain(const torch::Tensor& t, const memory::dims& dims, Tag tag) {
  return memory({dims, kF32, tag}, cpu_engine(), t.data_ptr());
}

// `from` in the layout `want`: itself when it already is, else a reordered copy.
// (memory objects are reference-counted handles: passing them by value copies no data.)
memory in_layout(memory from, const memory::desc& want, dnnl::stream& stream) {
  if (from.get_desc() == want) return from;
  memory to(want, cpu_engine());
  dnnl::reorder(from, to).execute(stream, from, to);
  return to;
}

// Where a primitive writes the result meant for `user`: `user` itself when the layouts agree, else
// scratch memory that copy_out reorders into `user`.
memory output_for(const memory& user, const memory::desc& want) {
  return want == user.get_desc() ? user : memory(want, cpu_engine());
}

void copy_out(memory from, memory to, dnnl::stream& stream) {
  if (from.get_data_handle() == to.get_data_handle()) return;
  dnnl::reorder(from, to).execute(stream, from, to);
}

const Plan& checked_plan(const torch::Tensor& input, const torch::Tensor& weight,
                         std::int64_t padding) {
  const Plan& plan = plan_for(key_of(input, weight, padding));
  if (!plan.ok) {
    throw Error("onednn_winograd_conv3x3: oneDNN has no Winograd kernel for input " +
                c10::str(input.sizes()) + " and weight " + c10::str(weight.sizes()) +
                " on this CPU");
  }
  return plan;
}

torch::Tensor run_forward(const torch::Tensor& input, const torch::Tensor& weight,
                          std::int64_t padding) {
  const Plan& plan = checked_plan(input, weight, padding);
  const Shape s = shape_of(key_of(input, weight, padding));
  dnnl::stream stream(cpu_engine());
  auto out = torch::empty(s.dst, input.options());
  const memory src = in_layout(plain(input, s.src, Tag::nchw), plan.forward_pd.src_desc(), stream);
  const memory wei =
      in_layout(plain(weight, s.weights, Tag::oihw), plan.forward_pd.weights_desc(), stream);
  const memory user_dst = plain(out, s.dst, Tag::nchw);
  const memory dst = output_for(user_dst, plan.forward_pd.dst_desc());
  ++detail::winograd_counter();
  plan.forward.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
  copy_out(dst, user_dst, stream);
  stream.wait();
  return out;
}

std::pair<torch::Tensor, torch::Tensor> run_backward(const torch::Tensor& input,
                                                     const torch::Tensor& weight,
                                                     const torch::Tensor& grad_output,
                                                     std::int64_t padding, bool want_input,
                                                     bool want_weight) {
  const Plan& plan = checked_plan(input, weight, padding);
  const Shape s = shape_of(key_of(input, weight, padding));
  dnnl::stream stream(cpu_engine());
  const memory user_grad = plain(grad_output, s.dst, Tag::nchw);
  torch::Tensor grad_input, grad_weight;
  memory diff_dst;  // shared by both backward primitives when their layouts agree
  if (want_input) {
    grad_input = torch::empty(s.src, input.options());
    diff_dst = in_layout(user_grad, plan.backward_data_pd.diff_dst_desc(), stream);
    const memory wei = in_layout(plain(weight, s.weights, Tag::oihw),
                                 plan.backward_data_pd.weights_desc(), stream);
    const memory user_diff_src = plain(grad_input, s.src, Tag::nchw);
    const memory diff_src = output_for(user_diff_src, plan.backward_data_pd.diff_src_desc());
    plan.backward_data.execute(
        stream,
        {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, diff_src}});
    copy_out(diff_src, user_diff_src, stream);
  }
  if (want_weight) {
    grad_weight = torch::empty(s.weights, weight.options());
    const auto& pd = plan.backward_weights_pd;
    const memory dd = want_input && diff_dst.get_desc() == pd.diff_dst_desc()
                          ? diff_dst
                          : in_layout(user_grad, pd.diff_dst_desc(), stream);
    const memory src = in_layout(plain(input, s.src, Tag::nchw), pd.src_desc(), stream);
    const memory user_diff_w = plain(grad_weight, s.weights, Tag::oihw);
    const memory diff_w = output_for(user_diff_w, pd.diff_weights_desc());
    plan.backward_weights.execute(
        stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_DIFF_WEIGHTS, diff_w}});
    copy_out(diff_w, user_diff_w, stream);
  }
  stream.wait();
  return {grad_input, grad_weight};
}

struct WinogradFunction : torch::autograd::Function<WinogradFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                               const torch::Tensor& weight, std::int64_t padding) {
    const auto x = input.contiguous(), w = weight.contiguous();
    ctx->save_for_backward({x, w});
    ctx->saved_data["padding"] = padding;
    return run_forward(x, w, padding);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto padding = ctx->saved_data["padding"].toInt();
    auto [grad_input, grad_weight] =
        run_backward(saved[0], saved[1], grads[0].contiguous(), padding, ctx->needs_input_grad(0),
                     ctx->needs_input_grad(1));
    return {grad_input, grad_weight, torch::Tensor()};
  }
};

bool plan_available(const torch::Tensor& x, const torch::nn::Conv2dImpl& conv) {
  const std::int64_t padding = padding_of(conv);
  if (x.size(2) + 2 * padding < 3 || x.size(3) + 2 * padding < 3) return false;
  return plan_for(key_of(x, conv.weight, padding)).ok;
}

#endif  // WICO_HAVE_DNNL

}  // namespace

std::uint64_t winograd_forward_count() { return detail::winograd_counter(); }

bool onednn_winograd_available() {
#ifdef WICO_HAVE_DNNL
  // A shape every Winograd kernel takes; the answer is about the CPU and the build.
  static const bool available = plan_for(PlanKey{1, 16, 16, 8, 8, 1}).ok;
  return available;
#else
  return false;
#endif
}

ConvKernel conv_kernel_for(const torch::nn::Conv2d& conv, const torch::Tensor& x) {
  const ConvAlgorithm algorithm = conv_algorithm();
  if (algorithm == ConvAlgorithm::kDirect || !shape_eligible(x, *conv)) return ConvKernel::kDirect;
  const std::int64_t p = padding_of(*conv);
  const std::int64_t out_h = x.size(2) + 2 * p - 2, out_w = x.size(3) + 2 * p - 2;
  if (out_h < 1 || out_w < 1) return ConvKernel::kDirect;  // the module's own error
  const bool onednn_takes_it =
#ifdef WICO_HAVE_DNNL
      algorithm != ConvAlgorithm::kWinograd && onednn_winograd_available() &&
      plan_available(x, *conv);
#else
      false;
#endif
  switch (algorithm) {
    case ConvAlgorithm::kWinograd: return ConvKernel::kWinograd;
    case ConvAlgorithm::kOneDnnWinograd:
      return onednn_takes_it ? ConvKernel::kOneDnnWinograd : ConvKernel::kDirect;
    case ConvAlgorithm::kAuto:
      if (onednn_takes_it && out_h * out_w >= kAutoMinOutputPixels) {
        return ConvKernel::kOneDnnWinograd;
      }
      return out_h * out_w >= kAutoMinOutputPixels &&
                     std::min(x.size(1), conv->weight.size(0)) >= kAutoMinChannelsGemm
                 ? ConvKernel::kWinograd
                 : ConvKernel::kDirect;
    case ConvAlgorithm::kDirect: break;
  }
  return ConvKernel::kDirect;
}

bool uses_winograd(const torch::nn::Conv2d& conv, const torch::Tensor& x) {
  return conv_kernel_for(conv, x) != ConvKernel::kDirect;
}

torch::Tensor onednn_winograd_conv3x3(const torch::Tensor& input, const torch::Tensor& weight,
                                      const torch::Tensor& bias, std::int64_t padding) {
  detail::check_conv3x3_arguments("onednn_winograd_conv3x3", input, weight, bias, padding);
#ifdef WICO_HAVE_DNNL
  torch::Tensor out = WinogradFunction::apply(input, weight, padding);
  if (bias.defined()) out = out + bias.view({1, -1, 1, 1});
  return out;
#else
  (void)bias;
  throw Error(
      "onednn_winograd_conv3x3: this build has no oneDNN (install libdnnl-dev and reconfigure)");
#endif
}

torch::Tensor conv2d(const torch::nn::Conv2d& conv, const torch::Tensor& x) {
  switch (conv_kernel_for(conv, x)) {
    case ConvKernel::kWinograd:
      return winograd_conv3x3(x, conv->weight, conv->bias, padding_of(*conv));
    case ConvKernel::kOneDnnWinograd:
      return onednn_winograd_conv3x3(x, conv->weight, conv->bias, padding_of(*conv));
    case ConvKernel::kDirect: break;
  }
  torch::nn::Conv2d module = conv;  // the holder's operator-> is const on a const holder
  return module->forward(x);
}

}  // namespace wico::nn
