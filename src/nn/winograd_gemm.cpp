// Winograd F(4x4, 3x3) written as 36 matrix products (Lavin & Gray 2016, "Fast Algorithms for
// Convolutional Neural Networks"): the input cut into overlapping 6x6 tiles at stride 4 and each
// tile transformed (V = B^T d B), the weights transformed (U = G g G^T), one [O x C] x [C x tiles]
// product per transformed point (M = U V), and every 6x6 result folded back into a 4x4 output
// tile (Y = A^T M A). The products run through the BLAS at its full rate on any CPU; they do 4x
// fewer multiply-adds than the direct 3x3 convolution (36 instead of 144 per 4x4 tile and channel
// pair). The backward pass is the adjoint of the same chain: dM = A dY A^T, dV = U^T dM and
// dU = dM V^T (two more sets of 36 products), dx = B dV B^T scattered back over the overlapping
// tiles, dg = G^T dU G. The transforms are plain loops over one channel plane at a time, in
// parallel over planes, so every sum is taken in a fixed order: the same thread count gives the
// same bits.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/autograd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <vector>

#include "wico/core/error.h"
#include "wico/nn/winograd_conv.h"
#include "winograd_internal.h"

namespace wico::nn {

namespace {

constexpr int kTile = 6;                  // input tile side (m + r - 1)
constexpr int kOut = 4;                   // output tile side (m)
constexpr int kPoints = kTile * kTile;    // transformed points: one matrix product each

// The transforms run on kLanes tiles at once (consecutive tiles of one tile row, one channel
// plane): every value below is a vector of kLanes floats, one per tile (GCC/Clang vector
// extensions; without AVX the compiler splits them into SSE operations).
constexpr int kLanes = 8;
using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));

// The 1-D transforms on one line of a tile. Their matrices, with interpolation points 0, +-1,
// +-2 and infinity:
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
// Each function reads `in[k * is]` and writes `out[k * os]`; the adjoints (B, G^T, A) serve the
// backward pass.
inline void apply_bt(const Vec* in, int is, Vec* out, int os) {  // 6 -> 6, B^T z
  const Vec z0 = in[0], z1 = in[is], z2 = in[2 * is], z3 = in[3 * is], z4 = in[4 * is],
            z5 = in[5 * is];
  out[0] = 4.0f * z0 - 5.0f * z2 + z4;
  out[os] = -4.0f * (z1 + z2) + z3 + z4;
  out[2 * os] = 4.0f * (z1 - z2) - z3 + z4;
  out[3 * os] = 2.0f * (z3 - z1) - z2 + z4;
  out[4 * os] = 2.0f * (z1 - z3) - z2 + z4;
  out[5 * os] = 4.0f * z1 - 5.0f * z3 + z5;
}

inline void apply_b(const Vec* in, int is, Vec* out, int os) {  // 6 -> 6, B z
  const Vec z0 = in[0], z1 = in[is], z2 = in[2 * is], z3 = in[3 * is], z4 = in[4 * is],
            z5 = in[5 * is];
  out[0] = 4.0f * z0;
  out[os] = -4.0f * z1 + 4.0f * z2 - 2.0f * z3 + 2.0f * z4 + 4.0f * z5;
  out[2 * os] = -5.0f * z0 - 4.0f * z1 - 4.0f * z2 - z3 - z4;
  out[3 * os] = z1 - z2 + 2.0f * z3 - 2.0f * z4 - 5.0f * z5;
  out[4 * os] = z0 + z1 + z2 + z3 + z4;
  out[5 * os] = z5;
}

// Multiplications by the reciprocals, not divisions: a division costs several multiplications'
// time, and the transforms are otherwise a few adds per value.
constexpr float kSixth = 1.0f / 6, kTwelfth = 1.0f / 12, kTwentyFourth = 1.0f / 24;

inline void apply_g(const Vec* in, int is, Vec* out, int os) {  // 3 -> 6, G y
  const Vec y0 = in[0], y1 = in[is], y2 = in[2 * is];
  out[0] = 0.25f * y0;
  out[os] = -kSixth * (y0 + y1 + y2);
  out[2 * os] = -kSixth * (y0 - y1 + y2);
  out[3 * os] = kTwentyFourth * y0 + kTwelfth * y1 + kSixth * y2;
  out[4 * os] = kTwentyFourth * y0 - kTwelfth * y1 + kSixth * y2;
  out[5 * os] = y2;
}

inline void apply_gt(const Vec* in, int is, Vec* out, int os) {  // 6 -> 3, G^T z
  const Vec z0 = in[0], z1 = in[is], z2 = in[2 * is], z3 = in[3 * is], z4 = in[4 * is],
            z5 = in[5 * is];
  out[0] = 0.25f * z0 - kSixth * (z1 + z2) + kTwentyFourth * (z3 + z4);
  out[os] = kSixth * (z2 - z1) + kTwelfth * (z3 - z4);
  out[2 * os] = kSixth * (z3 + z4 - z1 - z2) + z5;
}

inline void apply_at(const Vec* in, int is, Vec* out, int os) {  // 6 -> 4, A^T z
  const Vec z0 = in[0], z1 = in[is], z2 = in[2 * is], z3 = in[3 * is], z4 = in[4 * is],
            z5 = in[5 * is];
  out[0] = z0 + z1 + z2 + z3 + z4;
  out[os] = z1 - z2 + 2.0f * (z3 - z4);
  out[2 * os] = z1 + z2 + 4.0f * (z3 + z4);
  out[3 * os] = z1 - z2 + 8.0f * (z3 - z4) + z5;
}

inline void apply_a(const Vec* in, int is, Vec* out, int os) {  // 4 -> 6, A u
  const Vec u0 = in[0], u1 = in[is], u2 = in[2 * is], u3 = in[3 * is];
  out[0] = u0;
  out[os] = u0 + u1 + u2 + u3;
  out[2 * os] = u0 - u1 + u2 - u3;
  out[3 * os] = u0 + 2.0f * u1 + 4.0f * u2 + 8.0f * u3;
  out[4 * os] = u0 - 2.0f * u1 + 4.0f * u2 - 8.0f * u3;
  out[5 * os] = u3;
}

// Sizes of one convolution: input [N, C, H, W], weight [O, C, 3, 3], zero padding p on every
// side, output [N, O, Ho, Wo] covered by th x tw tiles of 4x4 per image.
struct Geometry {
  std::int64_t n = 0, c = 0, o = 0, h = 0, w = 0, p = 0, ho = 0, wo = 0, th = 0, tw = 0;
  Geometry(std::int64_t n_, std::int64_t c_, std::int64_t o_, std::int64_t h_, std::int64_t w_,
           std::int64_t p_)
      : n(n_), c(c_), o(o_), h(h_), w(w_), p(p_), ho(h_ + 2 * p_ - 2), wo(w_ + 2 * p_ - 2),
        th((ho + kOut - 1) / kOut), tw((wo + kOut - 1) / kOut) {}
  std::int64_t tiles() const { return n * th * tw; }
  // Width of a zero-padded row buffer holding every tile of a tile row, lanes rounded up.
  std::int64_t buffer_width() const {
    return ((tw + kLanes - 1) / kLanes) * kLanes * kOut + (kTile - kOut);
  }
};

// Copies `lanes` values of v (one per tile) to dst[0..lanes).
inline void store_lanes(const Vec& v, float* dst, int lanes) {
  if (lanes == kLanes) {
    std::memcpy(dst, &v, sizeof(Vec));
  } else {
    for (int l = 0; l < lanes; ++l) dst[l] = v[l];
  }
}

// v[0..lanes) = src[0..lanes), the other lanes zero.
inline void load_lanes(const float* src, int lanes, Vec& v) {
  if (lanes == kLanes) {
    std::memcpy(&v, src, sizeof(Vec));
  } else {
    v = Vec{};
    for (int l = 0; l < lanes; ++l) v[l] = src[l];
  }
}

// rows[a][x] = the plane's row (row0 + a), column (x - p), zero outside the image: the 6 input
// rows one tile row reads, padded so every tile's 6x6 window is in the buffer.
void load_rows(const float* plane, const Geometry& g, std::int64_t row0, float* rows) {
  const std::int64_t width = g.buffer_width();
  for (int a = 0; a < kTile; ++a) {
    float* dst = rows + a * width;
    const std::int64_t row = row0 + a;
    std::fill(dst, dst + width, 0.0f);
    if (row < 0 || row >= g.h) continue;
    const std::int64_t copy = std::min(g.w, width - g.p);
    std::memcpy(dst + g.p, plane + row * g.w, static_cast<std::size_t>(copy) * sizeof(float));
  }
}

// V [36, C, tiles] = B^T d B for every 6x6 input tile d (zero outside the image).
void transform_input(const at::Tensor& x, const Geometry& g, at::Tensor& v) {
  const float* xp = x.data_ptr<float>();
  float* vp = v.data_ptr<float>();
  const std::int64_t point_stride = g.c * g.tiles(), width = g.buffer_width();
  at::parallel_for(0, g.n * g.c, 1, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> rows(static_cast<std::size_t>(kTile * width));
    Vec d[kPoints], t[kPoints], r[kPoints];
    for (std::int64_t plane = begin; plane < end; ++plane) {
      const std::int64_t n = plane / g.c, c = plane % g.c;
      float* dst = vp + c * g.tiles() + n * g.th * g.tw;
      for (std::int64_t i = 0; i < g.th; ++i) {
        load_rows(xp + plane * g.h * g.w, g, i * kOut - g.p, rows.data());
        for (std::int64_t j0 = 0; j0 < g.tw; j0 += kLanes) {
          const int lanes = static_cast<int>(std::min<std::int64_t>(kLanes, g.tw - j0));
          for (int a = 0; a < kTile; ++a) {
            const float* row = rows.data() + a * width + j0 * kOut;
            for (int b = 0; b < kTile; ++b) {
              for (int l = 0; l < kLanes; ++l) d[a * kTile + b][l] = row[l * kOut + b];
            }
          }
          for (int b = 0; b < kTile; ++b) apply_bt(&d[b], kTile, &t[b], kTile);  // columns
          for (int a = 0; a < kTile; ++a) apply_bt(&t[a * kTile], 1, &r[a * kTile], 1);  // rows
          float* out = dst + i * g.tw + j0;
          for (int k = 0; k < kPoints; ++k) store_lanes(r[k], out + k * point_stride, lanes);
        }
      }
    }
  });
}

// U [36, O, C] = G g G^T for every 3x3 kernel g, kLanes kernels at a time.
void transform_weight(const at::Tensor& weight, const Geometry& g, at::Tensor& u) {
  const float* wp = weight.data_ptr<float>();
  float* up = u.data_ptr<float>();
  const std::int64_t kernels = g.o * g.c, point_stride = kernels;
  const std::int64_t groups = (kernels + kLanes - 1) / kLanes;
  at::parallel_for(0, groups, 16, [&](std::int64_t begin, std::int64_t end) {
    Vec k[9], t[18], r[kPoints];
    for (std::int64_t group = begin; group < end; ++group) {
      const std::int64_t first = group * kLanes;
      const int lanes = static_cast<int>(std::min<std::int64_t>(kLanes, kernels - first));
      for (int q = 0; q < 9; ++q) {
        k[q] = Vec{};
        for (int l = 0; l < lanes; ++l) k[q][l] = wp[(first + l) * 9 + q];
      }
      for (int b = 0; b < 3; ++b) apply_g(&k[b], 3, &t[b], 3);                  // [6, 3]
      for (int a = 0; a < kTile; ++a) apply_g(&t[a * 3], 1, &r[a * kTile], 1);  // [6, 6]
      for (int q = 0; q < kPoints; ++q) store_lanes(r[q], up + q * point_stride + first, lanes);
    }
  });
}

// Y [N, O, Ho, Wo] = A^T M A for every tile of M [36, O, tiles], plus the bias when given.
at::Tensor transform_output(const at::Tensor& m, const Geometry& g, const at::Tensor& bias) {
  auto y = at::empty({g.n, g.o, g.ho, g.wo}, m.options());
  const float* mp = m.data_ptr<float>();
  const float* bp = bias.defined() ? bias.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const std::int64_t point_stride = g.o * g.tiles();
  at::parallel_for(0, g.n * g.o, 1, [&](std::int64_t begin, std::int64_t end) {
    Vec s[kPoints], t[kOut * kTile], r[kOut * kOut];
    for (std::int64_t plane = begin; plane < end; ++plane) {
      const std::int64_t n = plane / g.o, o = plane % g.o;
      const float shift = bp ? bp[o] : 0.0f;
      const float* src = mp + o * g.tiles() + n * g.th * g.tw;
      float* dst = yp + plane * g.ho * g.wo;
      for (std::int64_t i = 0; i < g.th; ++i) {
        for (std::int64_t j0 = 0; j0 < g.tw; j0 += kLanes) {
          const int lanes = static_cast<int>(std::min<std::int64_t>(kLanes, g.tw - j0));
          const float* in = src + i * g.tw + j0;
          for (int k = 0; k < kPoints; ++k) load_lanes(in + k * point_stride, lanes, s[k]);
          for (int b = 0; b < kTile; ++b) apply_at(&s[b], kTile, &t[b], kTile);  // [4, 6]
          for (int a = 0; a < kOut; ++a) apply_at(&t[a * kTile], 1, &r[a * kOut], 1);  // [4, 4]
          for (int a = 0; a < kOut; ++a) {
            const std::int64_t row = i * kOut + a;
            if (row >= g.ho) break;
            float* out = dst + row * g.wo + j0 * kOut;
            const std::int64_t columns = std::min<std::int64_t>(lanes * kOut, g.wo - j0 * kOut);
            for (std::int64_t x = 0; x < columns; ++x) {
              out[x] = r[a * kOut + x % kOut][x / kOut] + shift;
            }
          }
        }
      }
    }
  });
  return y;
}

// dM [36, O, tiles] = A dY A^T for every 4x4 tile of the output gradient (zero past the edge).
void transform_output_grad(const at::Tensor& grad, const Geometry& g, at::Tensor& dm) {
  const float* gp = grad.data_ptr<float>();
  float* dp = dm.data_ptr<float>();
  const std::int64_t point_stride = g.o * g.tiles();
  at::parallel_for(0, g.n * g.o, 1, [&](std::int64_t begin, std::int64_t end) {
    Vec u[kOut * kOut], t[kTile * kOut], r[kPoints];
    for (std::int64_t plane = begin; plane < end; ++plane) {
      const std::int64_t n = plane / g.o, o = plane % g.o;
      const float* src = gp + plane * g.ho * g.wo;
      float* dst = dp + o * g.tiles() + n * g.th * g.tw;
      for (std::int64_t i = 0; i < g.th; ++i) {
        for (std::int64_t j0 = 0; j0 < g.tw; j0 += kLanes) {
          const int lanes = static_cast<int>(std::min<std::int64_t>(kLanes, g.tw - j0));
          for (auto& value : u) value = Vec{};
          for (int a = 0; a < kOut; ++a) {
            const std::int64_t row = i * kOut + a;
            if (row >= g.ho) break;
            const float* in = src + row * g.wo + j0 * kOut;
            const std::int64_t columns = std::min<std::int64_t>(lanes * kOut, g.wo - j0 * kOut);
            for (std::int64_t x = 0; x < columns; ++x) u[a * kOut + x % kOut][x / kOut] = in[x];
          }
          for (int b = 0; b < kOut; ++b) apply_a(&u[b], kOut, &t[b], kOut);           // [6, 4]
          for (int a = 0; a < kTile; ++a) apply_a(&t[a * kOut], 1, &r[a * kTile], 1);  // [6, 6]
          float* out = dst + i * g.tw + j0;
          for (int k = 0; k < kPoints; ++k) store_lanes(r[k], out + k * point_stride, lanes);
        }
      }
    }
  });
}

// dx [N, C, H, W]: B dV B^T of every tile of dV [36, C, tiles], added over the overlapping tiles
// in a fixed order (tile rows top to bottom, tiles left to right).
at::Tensor transform_input_grad(const at::Tensor& dv, const Geometry& g) {
  auto dx = at::zeros({g.n, g.c, g.h, g.w}, dv.options());
  const float* vp = dv.data_ptr<float>();
  float* xp = dx.data_ptr<float>();
  const std::int64_t point_stride = g.c * g.tiles(), width = g.buffer_width();
  at::parallel_for(0, g.n * g.c, 1, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> rows(static_cast<std::size_t>(kTile * width));
    Vec s[kPoints], t[kPoints], r[kPoints];
    for (std::int64_t plane = begin; plane < end; ++plane) {
      const std::int64_t n = plane / g.c, c = plane % g.c;
      const float* src = vp + c * g.tiles() + n * g.th * g.tw;
      float* dst = xp + plane * g.h * g.w;
      for (std::int64_t i = 0; i < g.th; ++i) {
        std::fill(rows.begin(), rows.end(), 0.0f);
        for (std::int64_t j0 = 0; j0 < g.tw; j0 += kLanes) {
          const int lanes = static_cast<int>(std::min<std::int64_t>(kLanes, g.tw - j0));
          const float* in = src + i * g.tw + j0;
          for (int k = 0; k < kPoints; ++k) load_lanes(in + k * point_stride, lanes, s[k]);
          for (int b = 0; b < kTile; ++b) apply_b(&s[b], kTile, &t[b], kTile);
          for (int a = 0; a < kTile; ++a) apply_b(&t[a * kTile], 1, &r[a * kTile], 1);
          for (int a = 0; a < kTile; ++a) {
            float* row = rows.data() + a * width + j0 * kOut;
            for (int l = 0; l < lanes; ++l) {
              for (int b = 0; b < kTile; ++b) row[l * kOut + b] += r[a * kTile + b][l];
            }
          }
        }
        // The buffer's column x is the image's column x - p.
        const std::int64_t row0 = i * kOut - g.p;
        for (int a = 0; a < kTile; ++a) {
          const std::int64_t row = row0 + a;
          if (row < 0 || row >= g.h) continue;
          const float* from = rows.data() + a * width + g.p;
          float* to = dst + row * g.w;
          const std::int64_t columns = std::min(g.w, width - g.p);
          for (std::int64_t x = 0; x < columns; ++x) to[x] += from[x];
        }
      }
    }
  });
  return dx;
}

// dg [O, C, 3, 3] = G^T dU G for every transformed kernel of dU [36, O, C].
at::Tensor transform_weight_grad(const at::Tensor& du, const Geometry& g) {
  auto dw = at::empty({g.o, g.c, 3, 3}, du.options());
  const float* up = du.data_ptr<float>();
  float* wp = dw.data_ptr<float>();
  const std::int64_t kernels = g.o * g.c, point_stride = kernels;
  const std::int64_t groups = (kernels + kLanes - 1) / kLanes;
  at::parallel_for(0, groups, 16, [&](std::int64_t begin, std::int64_t end) {
    Vec s[kPoints], t[18], k[9];
    for (std::int64_t group = begin; group < end; ++group) {
      const std::int64_t first = group * kLanes;
      const int lanes = static_cast<int>(std::min<std::int64_t>(kLanes, kernels - first));
      for (int q = 0; q < kPoints; ++q) load_lanes(up + q * point_stride + first, lanes, s[q]);
      for (int b = 0; b < kTile; ++b) apply_gt(&s[b], kTile, &t[b], kTile);  // [3, 6]
      for (int a = 0; a < 3; ++a) apply_gt(&t[a * kTile], 1, &k[a * 3], 1);   // [3, 3]
      for (int l = 0; l < lanes; ++l) {
        for (int q = 0; q < 9; ++q) wp[(first + l) * 9 + q] = k[q][l];
      }
    }
  });
  return dw;
}

// Float buffers for the temporaries that die inside one call (the products' operands and
// results no one keeps), reused across calls: a fresh buffer of tens of MB is fresh pages from
// the kernel, and faulting them in cost as much as the transform that fills them (measured: the
// input transform of LAVT's 640-channel 120x120 convolution, 75 ms into fresh memory, 38 ms into
// reused memory). The pool keeps at most kScratchKeepBytes between calls.
class Scratch {
 public:
  Scratch(at::IntArrayRef sizes, const at::TensorOptions& options) {
    const std::int64_t numel = c10::multiply_integers(sizes);
    buffer_ = take(numel, options);
    tensor_ = buffer_.narrow(0, 0, numel).view(sizes);
  }
  ~Scratch() {
    tensor_ = at::Tensor();
    give(std::move(buffer_));
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  at::Tensor& tensor() { return tensor_; }

 private:
  static constexpr std::int64_t kScratchKeepBytes = std::int64_t{512} << 20;
  struct Pool {
    std::mutex mutex;
    std::vector<at::Tensor> free;  // flat float buffers
  };
  static Pool& pool() {
    static Pool* p = new Pool();  // never destroyed: no tensor freed after LibTorch's teardown
    return *p;
  }
  static at::Tensor take(std::int64_t numel, const at::TensorOptions& options) {
    Pool& p = pool();
    {
      const std::lock_guard<std::mutex> lock(p.mutex);
      auto best = p.free.end();
      for (auto it = p.free.begin(); it != p.free.end(); ++it) {
        if (it->numel() >= numel && (best == p.free.end() || it->numel() < best->numel())) best = it;
      }
      if (best != p.free.end()) {
        at::Tensor found = std::move(*best);
        p.free.erase(best);
        return found;
      }
    }
    // A normal tensor even under InferenceMode: the next call may come from a training step,
    // which may not write into an inference tensor.
    const c10::InferenceMode not_inference(false);
    return at::empty({numel}, options);
  }
  static void give(at::Tensor buffer) {
    Pool& p = pool();
    const std::lock_guard<std::mutex> lock(p.mutex);
    std::int64_t kept = buffer.numel() * static_cast<std::int64_t>(sizeof(float));
    for (const auto& b : p.free) kept += b.numel() * static_cast<std::int64_t>(sizeof(float));
    if (kept > kScratchKeepBytes) p.free.clear();  // a rare very large call: start afresh
    p.free.push_back(std::move(buffer));
  }
  at::Tensor buffer_, tensor_;
};

// The forward without autograd (inference, or nothing needs a gradient): every temporary from
// the scratch pool.
at::Tensor forward_only(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                        const Geometry& g) {
  Scratch v({kPoints, g.c, g.tiles()}, x.options());
  Scratch u({kPoints, g.o, g.c}, x.options());
  Scratch m({kPoints, g.o, g.tiles()}, x.options());
  transform_input(x, g, v.tensor());
  transform_weight(w, g, u.tensor());
  at::bmm_out(m.tensor(), u.tensor(), v.tensor());
  ++detail::winograd_counter();
  return transform_output(m.tensor(), g, bias);
}

struct WinogradGemmFunction : torch::autograd::Function<WinogradGemmFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            const at::Tensor& weight, const at::Tensor& bias,
                            std::int64_t padding) {
    const auto x = input.contiguous(), w = weight.contiguous();
    const Geometry g(x.size(0), x.size(1), w.size(0), x.size(2), x.size(3), padding);
    // The transformed input and weights are what the backward products take: kept, not scratch.
    auto v = at::empty({kPoints, g.c, g.tiles()}, x.options());
    auto u = at::empty({kPoints, g.o, g.c}, x.options());
    transform_input(x, g, v);
    transform_weight(w, g, u);
    Scratch m({kPoints, g.o, g.tiles()}, x.options());
    at::bmm_out(m.tensor(), u, v);
    ++detail::winograd_counter();
    ctx->save_for_backward({v, u});
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["height"] = g.h;
    ctx->saved_data["width"] = g.w;
    ctx->saved_data["batch"] = g.n;
    ctx->saved_data["has_bias"] = bias.numel() > 0;
    return transform_output(m.tensor(), g, bias.numel() > 0 ? bias.contiguous() : at::Tensor());
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& v = saved[0];
    const auto& u = saved[1];  // [36, O, C]
    const Geometry g(ctx->saved_data["batch"].toInt(), u.size(2), u.size(1),
                     ctx->saved_data["height"].toInt(), ctx->saved_data["width"].toInt(),
                     ctx->saved_data["padding"].toInt());
    const auto grad = grads[0].contiguous();
    Scratch dm({kPoints, g.o, g.tiles()}, grad.options());
    transform_output_grad(grad, g, dm.tensor());
    at::Tensor grad_input, grad_weight, grad_bias;
    if (ctx->needs_input_grad(0)) {
      Scratch dv({kPoints, g.c, g.tiles()}, grad.options());
      at::bmm_out(dv.tensor(), u.transpose(1, 2), dm.tensor());
      grad_input = transform_input_grad(dv.tensor(), g);
    }
    if (ctx->needs_input_grad(1)) {
      Scratch du({kPoints, g.o, g.c}, grad.options());
      at::bmm_out(du.tensor(), dm.tensor(), v.transpose(1, 2));
      grad_weight = transform_weight_grad(du.tensor(), g);
    }
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) {
      grad_bias = grad.sum({0, 2, 3});
    }
    return {grad_input, grad_weight, grad_bias, at::Tensor()};
  }
};

}  // namespace

torch::Tensor winograd_conv3x3(const torch::Tensor& input, const torch::Tensor& weight,
                               const torch::Tensor& bias, std::int64_t padding) {
  detail::check_conv3x3_arguments("winograd_conv3x3", input, weight, bias, padding);
  const bool recording = at::GradMode::is_enabled() &&
                         (input.requires_grad() || weight.requires_grad() ||
                          (bias.defined() && bias.requires_grad()));
  if (!recording) {
    const auto x = input.contiguous();
    const Geometry g(x.size(0), x.size(1), weight.size(0), x.size(2), x.size(3), padding);
    return forward_only(x, weight.contiguous(), bias.defined() ? bias.contiguous() : bias, g);
  }
  // Autograd functions take no undefined tensors: an empty one stands for "no bias".
  const auto no_bias = at::empty({0}, input.options());
  return WinogradGemmFunction::apply(input, weight, bias.defined() ? bias : no_bias, padding);
}

}  // namespace wico::nn
