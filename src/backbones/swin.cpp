#include "wico/backbones/swin.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/autograd.h>
#include <torch/nn/init.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <utility>

#include "wico/core/error.h"
#include "wico/core/parallel.h"

namespace wico::backbones {

// ---- options ------------------------------------------------------------------------------------

namespace {
SwinOptions make(std::int64_t embed, std::vector<std::int64_t> depths,
                 std::vector<std::int64_t> heads, std::int64_t window) {
  SwinOptions o;
  o.embed_dim = embed;
  o.depths = std::move(depths);
  o.num_heads = std::move(heads);
  o.window_size = window;
  return o;
}
}  // namespace

SwinOptions SwinOptions::tiny(std::int64_t window) {
  return make(96, {2, 2, 6, 2}, {3, 6, 12, 24}, window);
}
SwinOptions SwinOptions::small(std::int64_t window) {
  return make(96, {2, 2, 18, 2}, {3, 6, 12, 24}, window);
}
SwinOptions SwinOptions::base(std::int64_t window) {
  return make(128, {2, 2, 18, 2}, {4, 8, 16, 32}, window);
}
SwinOptions SwinOptions::large(std::int64_t window) {
  return make(192, {2, 2, 18, 2}, {6, 12, 24, 48}, window);
}
SwinOptions SwinOptions::nano(std::int64_t window) {
  return make(16, {2, 2, 2, 2}, {1, 2, 4, 8}, window);
}

SwinOptions SwinOptions::preset(const std::string& name, std::optional<std::int64_t> window) {
  if (name == "tiny") return window ? tiny(*window) : tiny();
  if (name == "small") return window ? small(*window) : small();
  if (name == "base") return window ? base(*window) : base();
  if (name == "large") return window ? large(*window) : large();
  if (name == "nano") return window ? nano(*window) : nano();
  throw ConfigError("unknown Swin size '" + name + "'; valid: tiny, small, base, large, nano");
}

void SwinOptions::validate() const {
  auto fail = [](const std::string& what) { throw ConfigError("Swin options: " + what); };
  if (depths.empty() || depths.size() != num_heads.size()) {
    fail("depths and num_heads must be non-empty and of the same length");
  }
  if (patch_size < 1 || window_size < 1 || embed_dim < 1 || in_channels < 1) {
    fail("patch_size, window_size, embed_dim and in_channels must be positive");
  }
  for (std::int64_t i = 0; i < num_stages(); ++i) {
    if (depths[i] < 1 || num_heads[i] < 1 || stage_dim(i) % num_heads[i] != 0) {
      fail("stage " + std::to_string(i) + ": width " + std::to_string(stage_dim(i)) +
           " must be divisible by its " + std::to_string(num_heads[i]) + " heads, depth positive");
    }
  }
  for (auto i : out_indices) {
    if (i < 0 || i >= num_stages()) fail("out index " + std::to_string(i) + " out of range");
  }
  for (double p : {drop_rate, attn_drop_rate, drop_path_rate}) {
    if (p < 0.0 || p >= 1.0) fail("dropout and drop-path rates must lie in [0, 1)");
  }
  if (mlp_ratio <= 0.0) fail("mlp_ratio must be positive");
}

// ---- helpers ------------------------------------------------------------------------------------

torch::Tensor TokenMap::to_image() const {
  const auto b = tokens.size(0), c = tokens.size(2);
  return tokens.reshape({b, height, width, c}).permute({0, 3, 1, 2}).contiguous();
}

torch::Tensor window_partition(const torch::Tensor& x, std::int64_t window) {
  const auto b = x.size(0), h = x.size(1), w = x.size(2), c = x.size(3);
  WICO_CHECK(h % window == 0 && w % window == 0, "map ", h, "x", w,
             " is not a multiple of the window ", window);
  return x.view({b, h / window, window, w / window, window, c})
      .permute({0, 1, 3, 2, 4, 5})
      .reshape({-1, window * window, c});
}

torch::Tensor window_reverse(const torch::Tensor& windows, std::int64_t window, std::int64_t height,
                             std::int64_t width) {
  const auto c = windows.size(-1);
  const auto per_image = (height / window) * (width / window);
  const auto b = windows.size(0) / per_image;
  return windows.reshape({b, height / window, width / window, window, window, c})
      .permute({0, 1, 3, 2, 4, 5})
      .reshape({b, height, width, c});
}

torch::Tensor relative_position_index(std::int64_t window) {
  const auto n = window * window;
  auto index = torch::empty({n, n}, torch::kLong);
  auto* out = index.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      const auto dy = i / window - j / window + window - 1;
      const auto dx = i % window - j % window + window - 1;
      out[i * n + j] = dy * (2 * window - 1) + dx;
    }
  }
  return index;
}

torch::Tensor shifted_window_mask(std::int64_t padded_height, std::int64_t padded_width,
                                  std::int64_t window, std::int64_t shift,
                                  const torch::TensorOptions& options) {
  WICO_CHECK(padded_height % window == 0 && padded_width % window == 0, "padded map ",
             padded_height, "x", padded_width, " is not a multiple of the window ", window);
  // Regions of the shifted map, as the original's slices (0, -w), (-w, -s), (-s, None).
  auto region = [&](std::int64_t i, std::int64_t size) -> std::int64_t {
    if (i < size - window) return 0;
    if (i < size - shift) return 1;
    return 2;
  };
  auto ids = torch::empty({padded_height, padded_width}, torch::kFloat);
  auto* id = ids.data_ptr<float>();
  for (std::int64_t y = 0; y < padded_height; ++y) {
    for (std::int64_t x = 0; x < padded_width; ++x) {
      id[y * padded_width + x] =
          static_cast<float>(3 * region(y, padded_height) + region(x, padded_width));
    }
  }
  const auto windows = window_partition(ids.view({1, padded_height, padded_width, 1}), window)
                           .view({-1, window * window});
  const auto diff = windows.unsqueeze(1) - windows.unsqueeze(2);
  return torch::zeros_like(diff)
      .masked_fill_(diff != 0, -100.0)
      .to(options.device(), options.dtype().toScalarType());
}

WindowIndex window_index(std::int64_t batch, std::int64_t height, std::int64_t width,
                         std::int64_t window, std::int64_t shift, const torch::Device& device) {
  WindowIndex index;
  index.batch = batch;
  index.height = height;
  index.width = width;
  index.padded_height = (height + window - 1) / window * window;
  index.padded_width = (width + window - 1) / window * window;
  const auto hp = index.padded_height, wp = index.padded_width;
  const auto per_row = wp / window, windows = (hp / window) * per_row, n = window * window;
  const auto tokens = height * width;
  auto gather = torch::empty({batch * windows * n}, torch::kLong);
  auto scatter = torch::empty({batch * tokens}, torch::kLong);
  auto* g = gather.data_ptr<std::int64_t>();
  auto* s = scatter.data_ptr<std::int64_t>();
  std::vector<std::int64_t> padding;
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t ry = 0; ry < hp; ++ry) {  // coordinates in the rolled, padded map
      for (std::int64_t rx = 0; rx < wp; ++rx) {
        const auto slot = (b * windows + (ry / window) * per_row + rx / window) * n +
                          (ry % window) * window + rx % window;
        const auto y = (ry + shift) % hp, x = (rx + shift) % wp;  // roll by -shift
        if (y < height && x < width) {
          g[slot] = b * tokens + y * width + x;
          s[b * tokens + y * width + x] = slot;
        } else {
          g[slot] = 0;
          padding.push_back(slot);
        }
      }
    }
  }
  index.gather = gather.to(device);
  index.scatter = scatter.to(device);
  index.padding = torch::tensor(padding, torch::kLong).to(device);
  return index;
}

torch::Tensor drop_path(const torch::Tensor& x, double p, bool training) {
  if (!training || p == 0.0) return x;
  const double keep = 1.0 - p;
  std::vector<std::int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  auto random = torch::rand(shape, x.options()).add_(keep).floor_();
  return x.div(keep) * random;
}

void trunc_normal_(torch::Tensor& tensor, double std, double mean, double a, double b) {
  torch::NoGradGuard no_grad;
  auto cdf = [](double v) { return (1.0 + std::erf(v / std::sqrt(2.0))) / 2.0; };
  const double l = cdf((a - mean) / std), u = cdf((b - mean) / std);
  tensor.uniform_(2 * l - 1, 2 * u - 1);
  tensor.erfinv_();
  tensor.mul_(std * std::sqrt(2.0));
  tensor.add_(mean);
  tensor.clamp_(a, b);
}

// ---- window attention ---------------------------------------------------------------------------

WindowAttentionImpl::WindowAttentionImpl(std::int64_t dim_, std::int64_t window_,
                                         std::int64_t num_heads_, bool qkv_bias, double attn_drop_,
                                         double proj_drop_)
    : dim(dim_),
      window(window_),
      num_heads(num_heads_),
      scale(std::pow(static_cast<double>(dim_ / num_heads_), -0.5)),
      attn_drop(attn_drop_),
      proj_drop(proj_drop_) {
  WICO_CHECK(dim % num_heads == 0, "width ", dim, " is not divisible by ", num_heads, " heads");
  relative_position_bias_table =
      register_parameter("relative_position_bias_table",
                         torch::zeros({(2 * window - 1) * (2 * window - 1), num_heads}));
  trunc_normal_(relative_position_bias_table, 0.02);
  relative_position_index =
      register_buffer("relative_position_index", backbones::relative_position_index(window));
  qkv = register_module("qkv",
                        torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(qkv_bias)));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
}

torch::Tensor WindowAttentionImpl::relative_position_bias() const {
  const auto n = window * window;
  // LibTorch's Module::to(dtype) converts integer buffers too (Python's does not): read the
  // index as int64 whatever it became.
  const auto index = relative_position_index.scalar_type() == torch::kLong
                         ? relative_position_index
                         : relative_position_index.to(torch::kLong);
  return relative_position_bias_table.index_select(0, index.view(-1))
      .view({n, n, num_heads})
      .permute({2, 0, 1});
}

namespace {

// softmax(scale q k^T + bias + mask) v, one window at a time in each thread: single-threaded BLAS
// calls on [heads, N, hd] strided views of qkv5 [B_, N, 3, heads, hd] (no copies of q, k, v), the
// bias and mask added by the GEMM itself (beta = 1), the logits in a per-thread buffer that stays
// in cache, and A v written straight into the [B_, N, C] layout the projection reads. mask
// [nW, N, N] may be undefined or empty. The probabilities go to *probs ([B_, heads, N, N]) when
// given, else to a per-thread buffer.
torch::Tensor windowwise_attention(const torch::Tensor& qkv5, const torch::Tensor& bias,
                                   const torch::Tensor& mask, double scale, torch::Tensor* probs) {
  const auto b = qkv5.size(0), n = qkv5.size(1), heads = qkv5.size(3), hd = qkv5.size(4);
  const bool masked = mask.defined() && mask.numel() > 0;
  const auto bias_all = (masked ? mask.unsqueeze(1) + bias.unsqueeze(0) : bias.unsqueeze(0))
                            .contiguous();  // [nW or 1, heads, N, N]
  const auto nw = bias_all.size(0);
  auto out = at::empty({b, n, heads * hd}, qkv5.options());
  parallel_for_keeping_state(0, b, 1, [&](std::int64_t begin, std::int64_t end) {
    auto logits = at::empty({heads, n, n}, qkv5.options());
    auto own_probs = probs ? torch::Tensor() : at::empty({heads, n, n}, qkv5.options());
    for (std::int64_t i = begin; i < end; ++i) {
      const auto w = qkv5[i];                         // [N, 3, heads, hd]
      const auto q = w.select(1, 0).transpose(0, 1);  // [heads, N, hd], rows 3C apart
      const auto k = w.select(1, 1).transpose(0, 1);
      const auto v = w.select(1, 2).transpose(0, 1);
      auto p = probs ? (*probs)[i] : own_probs;
      logits.copy_(bias_all[i % nw]);
      logits.baddbmm_(q, k.transpose(1, 2), 1.0, scale);
      at::_softmax_out(p, logits, -1, false);
      auto o = out[i].view({n, heads, hd}).transpose(0, 1);  // [heads, N, hd] view
      at::bmm_out(o, p, v);
    }
  });
  return out;
}

// Window attention with autograd, computed window by window in parallel over windows like
// forward_windowwise: softmax(scale q k^T + bias + mask) v for every window and head, reading q,
// k, v as strided views of the qkv projection's output and writing A v straight into the [B_, N,
// C] layout the projection reads. The generic path (reshape + permute copies, one batched product
// over all windows, a separate add of the bias) ran these small products at under 30 GFLOP/s.
// Saves the attention probabilities, as autograd's softmax does. The bias gradient is summed per
// thread chunk and the chunks added in order: the same thread count gives the same bits.
struct WindowAttentionFunction : torch::autograd::Function<WindowAttentionFunction> {
  // qkv5 [B_, N, 3, heads, hd]; bias [heads, N, N]; mask [nW, N, N] or empty (not
  // differentiable; autograd functions take no undefined tensors).
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& qkv5,
                               const torch::Tensor& bias, const torch::Tensor& mask,
                               double scale) {
    auto probs = at::empty({qkv5.size(0), qkv5.size(3), qkv5.size(1), qkv5.size(1)},
                           qkv5.options());
    auto out = windowwise_attention(qkv5, bias, mask, scale, &probs);
    ctx->save_for_backward({qkv5, probs});
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& qkv5 = saved[0];
    const auto& probs = saved[1];
    const double scale = ctx->saved_data["scale"].toDouble();
    const auto b = qkv5.size(0), n = qkv5.size(1), heads = qkv5.size(3), hd = qkv5.size(4);
    const auto grad_out = grads[0].contiguous();
    auto grad_qkv = at::empty_like(qkv5);
    const bool want_bias = ctx->needs_input_grad(1);
    std::mutex mutex;
    std::vector<std::pair<std::int64_t, torch::Tensor>> bias_parts;  // (chunk begin, sum)
    parallel_for_keeping_state(0, b, 1, [&](std::int64_t begin, std::int64_t end) {
      auto d_probs = at::empty({heads, n, n}, qkv5.options());
      auto d_logits = at::empty({heads, n, n}, qkv5.options());
      auto bias_sum = want_bias ? at::zeros({heads, n, n}, qkv5.options()) : torch::Tensor();
      for (std::int64_t i = begin; i < end; ++i) {
        const auto w = qkv5[i];
        const auto q = w.select(1, 0).transpose(0, 1);  // [heads, N, hd]
        const auto k = w.select(1, 1).transpose(0, 1);
        const auto v = w.select(1, 2).transpose(0, 1);
        const auto g = grad_qkv[i];
        auto dq = g.select(1, 0).transpose(0, 1);
        auto dk = g.select(1, 1).transpose(0, 1);
        auto dv = g.select(1, 2).transpose(0, 1);
        const auto p = probs[i];
        const auto d_out = grad_out[i].view({n, heads, hd}).transpose(0, 1);
        at::bmm_out(dv, p.transpose(1, 2), d_out);          // dV = P^T dO
        at::bmm_out(d_probs, d_out, v.transpose(1, 2));     // dP = dO V^T
        at::_softmax_backward_data_out(d_logits, d_probs, p, -1, at::kFloat);
        if (want_bias) bias_sum.add_(d_logits);
        at::bmm_out(dq, d_logits, k);                       // dQ = scale dS K
        dq.mul_(scale);
        at::bmm_out(dk, d_logits.transpose(1, 2), q);       // dK = scale dS^T Q
        dk.mul_(scale);
      }
      if (want_bias) {
        const std::lock_guard<std::mutex> lock(mutex);
        bias_parts.emplace_back(begin, bias_sum);
      }
    });
    torch::Tensor grad_bias;
    if (want_bias) {
      std::sort(bias_parts.begin(), bias_parts.end(),
                [](const auto& x, const auto& y) { return x.first < y.first; });
      grad_bias = bias_parts.front().second;
      for (std::size_t j = 1; j < bias_parts.size(); ++j) grad_bias.add_(bias_parts[j].second);
    }
    return {grad_qkv, grad_bias, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor WindowAttentionImpl::forward(const torch::Tensor& windows,
                                           const torch::Tensor& mask) {
  const auto b = windows.size(0), n = windows.size(1), c = windows.size(2);
  WICO_CHECK(n == window * window && c == dim, "window attention expects [B, ", window * window,
             ", ", dim, "], got ", windows.sizes());
  if (mask.defined()) {
    WICO_CHECK(b % mask.size(0) == 0, "the mask has ", mask.size(0), " windows, the input ", b);
  }
  const bool no_autograd = !at::GradMode::is_enabled();
  const bool dropping = attn_drop > 0.0 && is_training();
  if (!dropping && windows.device().is_cpu() && b >= at::get_num_threads() &&
      windows.scalar_type() == torch::kFloat) {
    if (no_autograd) return forward_windowwise(windows, mask);
    const auto qkv5 = qkv(windows).view({b, n, 3, num_heads, c / num_heads});
    const auto no_mask = at::empty({0}, windows.options());
    const auto x = WindowAttentionFunction::apply(
        qkv5, relative_position_bias(), mask.defined() ? mask.detach() : no_mask, scale);
    return proj_drop > 0.0 ? at::dropout(proj(x), proj_drop, is_training()) : proj(x);
  }
  const auto qkv_out =
      qkv(windows).reshape({b, n, 3, num_heads, c / num_heads}).permute({2, 0, 3, 1, 4});
  const auto q = qkv_out[0] * scale;
  const auto k = qkv_out[1];
  const auto v = qkv_out[2];
  auto attn = at::matmul(q, k.transpose(-2, -1));  // [B_, heads, N, N]
  const auto bias = relative_position_bias();      // [heads, N, N]
  if (mask.defined()) {
    const auto nw = mask.size(0);
    // One add of (bias + mask) rather than two passes over the attention logits.
    attn.view({b / nw, nw, num_heads, n, n}).add_(mask.unsqueeze(1) + bias.unsqueeze(0));
  } else {
    attn.add_(bias);
  }
  attn = at::softmax(attn, -1);
  if (attn_drop > 0.0) attn = at::dropout(attn, attn_drop, is_training());
  auto x = at::matmul(attn, v).transpose(1, 2).reshape({b, n, c});
  x = proj(x);
  if (proj_drop > 0.0) x = at::dropout(x, proj_drop, is_training());
  return x;
}

torch::Tensor WindowAttentionImpl::forward_windowwise(const torch::Tensor& windows,
                                                      const torch::Tensor& mask) {
  WICO_CHECK(!at::GradMode::is_enabled(),
             "forward_windowwise has no autograd: call it under NoGradGuard or InferenceMode");
  const auto b = windows.size(0), n = windows.size(1), c = windows.size(2);
  const auto qkv5 = qkv(windows).view({b, n, 3, num_heads, c / num_heads});
  return proj(windowwise_attention(qkv5, relative_position_bias(), mask, scale, nullptr));
}

// ---- MLP, block ---------------------------------------------------------------------------------

SwinMlpImpl::SwinMlpImpl(std::int64_t dim, std::int64_t hidden, double drop_) : drop(drop_) {
  fc1 = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, dim));
}

torch::Tensor SwinMlpImpl::forward(const torch::Tensor& x) {
  auto h = at::gelu(fc1(x));
  if (drop > 0.0) h = at::dropout(h, drop, is_training());
  h = fc2(h);
  if (drop > 0.0) h = at::dropout(h, drop, is_training());
  return h;
}

SwinBlockImpl::SwinBlockImpl(std::int64_t dim, std::int64_t num_heads, std::int64_t window_,
                             std::int64_t shift_, double mlp_ratio, bool qkv_bias, double drop,
                             double attn_drop, double drop_path_)
    : window(window_), shift(shift_), drop_path_prob(drop_path_) {
  WICO_CHECK(shift >= 0 && (shift < window || shift == 0), "shift ", shift,
             " must lie in [0, window ", window, ")");
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  attn =
      register_module("attn", WindowAttention(dim, window, num_heads, qkv_bias, attn_drop, drop));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  mlp = register_module(
      "mlp", SwinMlp(dim, static_cast<std::int64_t>(static_cast<double>(dim) * mlp_ratio), drop));
}

WindowIndex SwinBlockImpl::index_for(std::int64_t batch, std::int64_t height, std::int64_t width,
                                     const torch::Device& device) {
  std::lock_guard<std::mutex> lock(index_mutex_);
  // As the shift mask: an index made under InferenceMode cannot be saved by autograd.
  if (!index_.gather.defined() || index_.batch != batch || index_.height != height ||
      index_.width != width || index_.gather.device() != device ||
      index_.gather.is_inference() != c10::InferenceMode::is_enabled()) {
    index_ = window_index(batch, height, width, window, shift, device);
  }
  return index_;
}

torch::Tensor SwinBlockImpl::forward(const torch::Tensor& x, std::int64_t height,
                                     std::int64_t width, const torch::Tensor& mask) {
  const auto b = x.size(0), l = x.size(1), c = x.size(2);
  WICO_CHECK(l == height * width, "block input has ", l, " tokens, not ", height, "x", width);
  const auto index = index_for(b, height, width, x.device());
  // pad + roll + window partition in one gather (padding slots zeroed afterwards), and window
  // reverse + roll back + crop in another: two copies instead of six.
  auto windows = norm1(x).view({b * l, c}).index_select(0, index.gather);
  if (index.padding.numel() > 0) windows.index_fill_(0, index.padding, 0.0);
  torch::Tensor attn_mask;
  if (shift > 0) {
    attn_mask = mask.defined() ? mask
                               : shifted_window_mask(index.padded_height, index.padded_width,
                                                     window, shift, x.options());
  }
  windows = attn(windows.view({-1, window * window, c}), attn_mask);
  const auto h = windows.view({-1, c}).index_select(0, index.scatter).view({b, l, c});

  auto y = x + drop_path(h, drop_path_prob, is_training());
  return y + drop_path(mlp(norm2(y)), drop_path_prob, is_training());
}

// ---- patch merging, patch embedding -------------------------------------------------------------

PatchMergingImpl::PatchMergingImpl(std::int64_t dim) {
  reduction = register_module(
      "reduction", torch::nn::Linear(torch::nn::LinearOptions(4 * dim, 2 * dim).bias(false)));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({4 * dim})));
}

torch::Tensor PatchMergingImpl::forward(const torch::Tensor& x, std::int64_t height,
                                        std::int64_t width) {
  const auto b = x.size(0), l = x.size(1), c = x.size(2);
  WICO_CHECK(l == height * width, "merging input has ", l, " tokens, not ", height, "x", width);
  auto h = x.reshape({b, height, width, c});
  if (height % 2 == 1 || width % 2 == 1) {
    h = at::constant_pad_nd(h, {0, 0, 0, width % 2, 0, height % 2});
  }
  const auto hp = h.size(1), wp = h.size(2);
  const auto x0 = h.slice(1, 0, hp, 2).slice(2, 0, wp, 2);
  const auto x1 = h.slice(1, 1, hp, 2).slice(2, 0, wp, 2);
  const auto x2 = h.slice(1, 0, hp, 2).slice(2, 1, wp, 2);
  const auto x3 = h.slice(1, 1, hp, 2).slice(2, 1, wp, 2);
  h = at::cat({x0, x1, x2, x3}, -1).view({b, -1, 4 * c});
  return reduction(norm(h));
}

PatchEmbedImpl::PatchEmbedImpl(std::int64_t patch_size_, std::int64_t in_channels,
                               std::int64_t embed_dim, bool with_norm)
    : patch_size(patch_size_) {
  proj = register_module(
      "proj", torch::nn::Conv2d(
                  torch::nn::Conv2dOptions(in_channels, embed_dim, patch_size).stride(patch_size)));
  if (with_norm) {
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({embed_dim})));
  }
}

torch::Tensor PatchEmbedImpl::forward(const torch::Tensor& images) {
  auto x = images;
  const auto h = x.size(2), w = x.size(3);
  if (w % patch_size != 0) x = at::constant_pad_nd(x, {0, patch_size - w % patch_size});
  if (h % patch_size != 0) x = at::constant_pad_nd(x, {0, 0, 0, patch_size - h % patch_size});
  // The patch projection as one matrix product over non-overlapping patches (what the
  // kernel = stride convolution computes). oneDNN's backward-weights kernel for this
  // convolution (3 input channels, kernel = stride = 4) intermittently returned NaN weight and
  // bias gradients on this machine's CPU build; the product is exact and no slower.
  const auto b = x.size(0), in = x.size(1), ph = x.size(2) / patch_size,
             pw = x.size(3) / patch_size;
  const auto patches = x.view({b, in, ph, patch_size, pw, patch_size})
                           .permute({0, 2, 4, 1, 3, 5})
                           .reshape({b, ph * pw, in * patch_size * patch_size});
  const auto& weight = proj->weight;
  auto tokens = at::linear(patches, weight.view({weight.size(0), -1}), proj->bias);  // [B, L, C]
  if (norm) tokens = norm(tokens);
  return tokens.transpose(1, 2).reshape({b, weight.size(0), ph, pw});
}

// ---- stage --------------------------------------------------------------------------------------

SwinStageImpl::SwinStageImpl(std::int64_t dim, std::int64_t depth, std::int64_t num_heads,
                             std::int64_t window_, double mlp_ratio, bool qkv_bias, double drop,
                             double attn_drop, const std::vector<double>& drop_path,
                             bool with_downsample)
    : window(window_), shift(window_ / 2) {
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < depth; ++i) {
    blocks->push_back(SwinBlock(dim, num_heads, window, i % 2 == 0 ? 0 : shift, mlp_ratio, qkv_bias,
                                drop, attn_drop, drop_path.at(i)));
  }
  if (with_downsample) downsample = register_module("downsample", PatchMerging(dim));
}

torch::Tensor SwinStageImpl::attention_mask(std::int64_t height, std::int64_t width,
                                            const torch::TensorOptions& options) {
  std::lock_guard<std::mutex> lock(mask_mutex_);
  const auto hp = (height + window - 1) / window * window;
  const auto wp = (width + window - 1) / window * window;
  // A mask made under InferenceMode (evaluation) is an inference tensor, which autograd cannot
  // save: training after an evaluation at the same size needs a fresh one.
  const bool inference = c10::InferenceMode::is_enabled();
  if (!mask_.defined() || mask_hp_ != hp || mask_wp_ != wp || mask_.device() != options.device() ||
      mask_.dtype() != options.dtype() || mask_.is_inference() != inference) {
    mask_ = shifted_window_mask(hp, wp, window, shift, options);
    mask_hp_ = hp;
    mask_wp_ = wp;
  }
  return mask_;
}

TokenMap SwinStageImpl::run_blocks(const TokenMap& x) {
  torch::Tensor mask;
  if (shift > 0 && blocks->size() > 1) {
    mask = attention_mask(x.height, x.width, x.tokens.options());
  }
  auto t = x.tokens;
  for (const auto& module : *blocks) {
    t = module->as<SwinBlockImpl>()->forward(t, x.height, x.width, mask);
  }
  return {t, x.height, x.width};
}

TokenMap SwinStageImpl::downsample_map(const TokenMap& x) {
  if (!downsample) return x;
  return {downsample(x.tokens, x.height, x.width), (x.height + 1) / 2, (x.width + 1) / 2};
}

// ---- the backbone -------------------------------------------------------------------------------

SwinTransformerImpl::SwinTransformerImpl(SwinOptions options) : options_(std::move(options)) {
  options_.validate();
  const auto& o = options_;
  patch_embed = register_module("patch_embed",
                                PatchEmbed(o.patch_size, o.in_channels, o.embed_dim, o.patch_norm));
  pos_drop = register_module("pos_drop", torch::nn::Dropout(o.drop_rate));

  std::int64_t total = 0;
  for (auto d : o.depths) total += d;
  // The original's torch.linspace(0, rate, total) (float32) turned into Python floats.
  const auto rates = torch::linspace(0.0, o.drop_path_rate, total, torch::kFloat);
  std::vector<double> dpr(total);
  for (std::int64_t i = 0; i < total; ++i) dpr[i] = rates[i].item<float>();

  layers = register_module("layers", torch::nn::ModuleList());
  std::int64_t first = 0;
  for (std::int64_t i = 0; i < o.num_stages(); ++i) {
    std::vector<double> stage_dpr(dpr.begin() + first, dpr.begin() + first + o.depths[i]);
    first += o.depths[i];
    layers->push_back(SwinStage(o.stage_dim(i), o.depths[i], o.num_heads[i], o.window_size,
                                o.mlp_ratio, o.qkv_bias, o.drop_rate, o.attn_drop_rate, stage_dpr,
                                i + 1 < o.num_stages()));
  }
  norms.assign(o.num_stages(), torch::nn::LayerNorm(nullptr));
  for (auto i : o.out_indices) {
    norms[i] = register_module("norm" + std::to_string(i),
                               torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.stage_dim(i)})));
  }
  init_weights();
}

void SwinTransformerImpl::init_weights() {
  torch::NoGradGuard no_grad;
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* linear = module->as<torch::nn::Linear>()) {
      trunc_normal_(linear->weight, 0.02);
      if (linear->bias.defined()) linear->bias.zero_();
    } else if (auto* norm = module->as<torch::nn::LayerNorm>()) {
      norm->weight.fill_(1.0);
      norm->bias.zero_();
    }
  }
}

SwinStage SwinTransformerImpl::stage(std::int64_t i) const {
  WICO_CHECK(i >= 0 && i < num_stages(), "stage ", i, " out of range");
  return SwinStage(layers->ptr<SwinStageImpl>(i));
}

TokenMap SwinTransformerImpl::embed(const torch::Tensor& images) {
  WICO_CHECK(images.dim() == 4 && images.size(1) == options_.in_channels, "Swin expects [B, ",
             options_.in_channels, ", H, W] images, got ", images.sizes());
  auto x = patch_embed(images);
  const auto h = x.size(2), w = x.size(3);
  return {pos_drop(x.flatten(2).transpose(1, 2)), h, w};
}

TokenMap SwinTransformerImpl::run_blocks(std::int64_t i, const TokenMap& x) {
  return stage(i)->run_blocks(x);
}

TokenMap SwinTransformerImpl::downsample(std::int64_t i, const TokenMap& x) {
  return stage(i)->downsample_map(x);
}

torch::Tensor SwinTransformerImpl::output(std::int64_t i, const TokenMap& x) {
  WICO_CHECK(i >= 0 && i < num_stages() && norms[i], "stage ", i, " is not an output stage");
  const auto b = x.tokens.size(0);
  return norms[i](x.tokens)
      .view({b, x.height, x.width, num_features(i)})
      .permute({0, 3, 1, 2})
      .contiguous();
}

std::vector<torch::Tensor> SwinTransformerImpl::forward(const torch::Tensor& images) {
  auto x = embed(images);
  std::vector<torch::Tensor> outs;
  for (std::int64_t i = 0; i < num_stages(); ++i) {
    x = run_blocks(i, x);
    if (norms[i]) outs.push_back(output(i, x));
    x = downsample(i, x);
  }
  return outs;
}

// Multiply-adds x 2 of the matrix products of one forward pass (norms, softmax, GELU and copies
// left out): the patch embedding; per block qkv and proj on the padded map (the windows include
// the padding), Q K^T and A V (N = window^2 keys a token), the MLP on the real tokens; per
// PatchMerging the 4C -> 2C reduction.
double swin_matmul_flops(const SwinOptions& o, std::int64_t height, std::int64_t width) {
  auto up = [](std::int64_t v, std::int64_t m) { return (v + m - 1) / m * m; };
  std::int64_t h = (height + o.patch_size - 1) / o.patch_size;
  std::int64_t w = (width + o.patch_size - 1) / o.patch_size;
  const double n = static_cast<double>(o.window_size * o.window_size);
  double flops = 2.0 * h * w * o.embed_dim * o.in_channels * o.patch_size * o.patch_size;
  for (std::int64_t i = 0; i < o.num_stages(); ++i) {
    const double c = static_cast<double>(o.stage_dim(i));
    const double l = static_cast<double>(h * w);
    const double lp = static_cast<double>(up(h, o.window_size) * up(w, o.window_size));
    const double block =
        2 * lp * c * 3 * c + 2 * lp * c * c + 4 * lp * n * c + 2 * l * c * o.mlp_ratio * c * 2;
    flops += static_cast<double>(o.depths[i]) * block;
    if (i + 1 < o.num_stages()) {
      h = (h + 1) / 2;
      w = (w + 1) / 2;
      flops += 2.0 * static_cast<double>(h * w) * 4 * c * 2 * c;
    }
  }
  return flops;
}

}  // namespace wico::backbones
