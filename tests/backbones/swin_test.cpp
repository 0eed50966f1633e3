// Swin Transformer: parity with torchvision 0.14's pieces (fixtures of
// scripts/make_swin_fixtures.py) where torchvision and the original agree, hand-derived
// expectations where they differ (window larger than the map, patch-embedding padding), the
// locality guarantees of padding and the shift mask, parameter counts and the stage API.
#include "wico/backbones/swin.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>
#include <torch/utils.h>

#include <cmath>
#include <set>
#include <string>

#include "backbones/tensor_fixture.h"
#include "test_util.h"
#include "wico/core/error.h"

namespace wico::backbones {
namespace {

using test::max_abs_diff;
using test::TensorFixture;

constexpr double kTolerance = 1e-5;

const TensorFixture& fixture() {
  static const TensorFixture f(std::filesystem::path(WICO_TEST_DATA_DIR) / "swin" / "swin");
  return f;
}

// Random values for every parameter (LayerNorm affines away from 1 / 0, a large bias table), so
// no parameter is an identity that would hide a mistake.
void randomise(torch::nn::Module& module, double table_std = 1.0) {
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters()) {
    auto& p = item.value();
    const auto& name = item.key();
    if (name.find("relative_position_bias_table") != std::string::npos) {
      p.normal_(0.0, table_std);
    } else if (name.find("norm") != std::string::npos && name.find("weight") != std::string::npos) {
      p.copy_(1.0 + 0.2 * torch::randn_like(p));
    } else if (p.dim() == 1) {
      p.normal_(0.0, 0.1);
    } else {
      p.normal_(0.0, 1.0 / std::sqrt(static_cast<double>(p[0].numel())));
    }
  }
}

std::int64_t count_parameters(const torch::nn::Module& module) {
  std::int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

// ---- parity with torchvision --------------------------------------------------------------------

// Each parity check runs twice: without autograd (window attention takes its window-by-window
// path) and with autograd recording (the batched path training uses).
const std::vector<bool> kGradModes{false, true};

TEST(SwinParity, WindowAttentionWithRelativePositionBias) {
  WindowAttention attn(16, 3, 4);
  attn->eval();
  EXPECT_TRUE(fixture().load_into(*attn, "attn.", {"input", "output"}).empty());
  const auto x = fixture().get("attn.input");  // [2, 6, 6, 16]
  for (bool grad : kGradModes) {
    torch::AutoGradMode mode(grad);
    const auto y = window_reverse(attn(window_partition(x, 3)), 3, 6, 6);
    EXPECT_EQ(y.requires_grad(), grad);
    EXPECT_LE(max_abs_diff(y.detach(), fixture().get("attn.output")), kTolerance) << grad;
  }
}

void check_block(const std::string& label, std::int64_t shift) {
  SwinBlock block(32, 2, 4, shift);
  block->eval();
  EXPECT_TRUE(fixture().load_into(*block, label + ".", {"input", "output"}).empty());
  const auto x = fixture().get(label + ".input");  // [2, 8, 8, 32]
  for (bool grad : kGradModes) {
    torch::AutoGradMode mode(grad);
    const auto y = block(x.reshape({2, 64, 32}), 8, 8).view({2, 8, 8, 32}).detach();
    EXPECT_LE(max_abs_diff(y, fixture().get(label + ".output")), kTolerance) << label << grad;
  }
}

TEST(SwinParity, PlainBlock) { check_block("block_plain", 0); }
TEST(SwinParity, ShiftedBlock) { check_block("block_shifted", 2); }

TEST(SwinParity, ShiftedBlockNeedsTheMask) {
  // The same block with an all-zero mask (shift without masking) is far from torchvision's
  // output: the parity above does check the mask.
  SwinBlock block(32, 2, 4, 2);
  block->eval();
  fixture().load_into(*block, "block_shifted.", {"input", "output"});
  torch::NoGradGuard no_grad;
  const auto x = fixture().get("block_shifted.input").reshape({2, 64, 32});
  const auto y = block(x, 8, 8, torch::zeros({4, 16, 16})).view({2, 8, 8, 32});
  EXPECT_GT(max_abs_diff(y, fixture().get("block_shifted.output")), 1e-2);
}

TEST(SwinParity, PatchMerging) {
  PatchMerging merge(8);
  EXPECT_TRUE(
      fixture()
          .load_into(*merge, "merge.", {"even.input", "even.output", "odd.input", "odd.output"})
          .empty());
  torch::NoGradGuard no_grad;
  for (const std::string label : {"even", "odd"}) {
    const auto x = fixture().get("merge." + label + ".input");          // [2, H, W, 8]
    const auto expected = fixture().get("merge." + label + ".output");  // [2, H', W', 16]
    const auto y = merge(x.reshape({2, -1, 8}), x.size(1), x.size(2));
    EXPECT_LE(max_abs_diff(y, expected.reshape({2, -1, 16})), kTolerance) << label;
  }
}

SwinOptions fixture_model_options() {
  SwinOptions o;
  o.embed_dim = 6;
  o.depths = {2, 2, 2, 2};
  o.num_heads = {1, 2, 3, 6};
  o.window_size = 3;
  o.drop_path_rate = 0.0;
  return o;
}

TEST(SwinParity, WholeModelStageByStage) {
  // embed 6, window 3, a 120 x 136 image: maps 30x34, 15x17, 8x9, 4x5, all padded to the window
  // and all larger than it (where torchvision and the original agree).
  SwinTransformer swin(fixture_model_options());
  swin->eval();
  const auto unset = fixture().load_into(
      *swin, "model.", {"input", "stage0", "stage1", "stage2", "stage3", "output3"});
  // torchvision has one final norm (-> norm3); norm0..2 are the original's extra output norms.
  EXPECT_EQ(unset, (std::set<std::string>{"norm0.weight", "norm0.bias", "norm1.weight",
                                          "norm1.bias", "norm2.weight", "norm2.bias"}));
  for (bool grad : kGradModes) {
    torch::AutoGradMode mode(grad);
    auto x = swin->embed(fixture().get("model.input"));
    EXPECT_EQ(x.height, 30);
    EXPECT_EQ(x.width, 34);
    for (std::int64_t i = 0; i < 4; ++i) {
      x = swin->run_blocks(i, x);
      const auto expected = fixture().get("model.stage" + std::to_string(i));  // [1, H, W, C]
      ASSERT_EQ(x.height, expected.size(1));
      ASSERT_EQ(x.width, expected.size(2));
      EXPECT_LE(max_abs_diff(x.tokens.detach(), expected.reshape({1, -1, expected.size(3)})),
                kTolerance)
          << "stage " << i << " grad " << grad;
      if (i == 3) {
        EXPECT_LE(max_abs_diff(swin->output(3, x).detach(),
                               fixture().get("model.output3").permute({0, 3, 1, 2})),
                  kTolerance);
      }
      x = swin->downsample(i, x);
    }
  }

  torch::NoGradGuard no_grad;

  // forward(): the four stages through their own norms (here LayerNorm written out).
  randomise(*swin->norms[0]);
  randomise(*swin->norms[1]);
  const auto outs = swin->forward(fixture().get("model.input"));
  ASSERT_EQ(outs.size(), 4u);
  for (std::int64_t i = 0; i < 4; ++i) {
    const auto stage = fixture().get("model.stage" + std::to_string(i)).to(torch::kDouble);
    const auto mean = stage.mean(-1, true);
    const auto var = (stage - mean).pow(2).mean(-1, true);
    const auto& norm = swin->norms[i];
    const auto expected = ((stage - mean) / (var + 1e-5).sqrt() * norm->weight.to(torch::kDouble) +
                           norm->bias.to(torch::kDouble))
                              .permute({0, 3, 1, 2});
    EXPECT_LE(max_abs_diff(outs[i], expected), kTolerance) << "output " << i;
  }
}

// ---- where the original and torchvision differ: hand-derived expectations ----------------------

TEST(SwinOriginal, WindowAsLargeAsTheMapStillShifts) {
  // A 4 x 4 map, window 4, shift 2. torchvision drops the shift here (window >= padded map); the
  // original rolls by 2 and masks, so each token attends only within its 2 x 2 quadrant of the
  // unrolled map, with the relative position bias of the unrolled offsets.
  torch::manual_seed(3);
  const std::int64_t dim = 8, heads = 2, hd = dim / heads, w = 4;
  SwinBlock block(dim, heads, w, 2);
  randomise(*block);
  block->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 16, dim});
  const auto y = block(x, 4, 4);

  // Expected, written out token by token.
  const auto& a = block->attn;
  const auto n = block->norm1(x)[0];                                  // [16, dim]
  const auto qkv = at::matmul(n, a->qkv->weight.t()) + a->qkv->bias;  // [16, 3 dim]
  const auto table = a->relative_position_bias_table;                 // [49, heads]
  auto attended = torch::zeros({16, dim});
  for (std::int64_t i = 0; i < 16; ++i) {
    const auto yi = i / 4, xi = i % 4;
    for (std::int64_t h = 0; h < heads; ++h) {
      const auto q = qkv[i].slice(0, h * hd, (h + 1) * hd) * std::pow(double(hd), -0.5);
      std::vector<std::int64_t> keys;
      std::vector<double> logits;
      for (std::int64_t j = 0; j < 16; ++j) {
        const auto yj = j / 4, xj = j % 4;
        if ((yi < 2) != (yj < 2) || (xi < 2) != (xj < 2)) continue;  // another quadrant
        const auto k = qkv[j].slice(0, dim + h * hd, dim + (h + 1) * hd);
        const auto bias = table[(yi - yj + w - 1) * (2 * w - 1) + (xi - xj + w - 1)][h];
        keys.push_back(j);
        logits.push_back((q * k).sum().item<double>() + bias.item<double>());
      }
      double top = -1e300, total = 0;
      for (double l : logits) top = std::max(top, l);
      for (double l : logits) total += std::exp(l - top);
      for (std::size_t m = 0; m < keys.size(); ++m) {
        const auto v = qkv[keys[m]].slice(0, 2 * dim + h * hd, 2 * dim + (h + 1) * hd);
        attended[i].slice(0, h * hd, (h + 1) * hd) += v * (std::exp(logits[m] - top) / total);
      }
    }
  }
  auto expected = x[0] + at::matmul(attended, a->proj->weight.t()) + a->proj->bias;
  expected = expected + block->mlp(block->norm2(expected));
  EXPECT_LE(max_abs_diff(y[0], expected), kTolerance);

  // torchvision's behaviour (no shift: one full 4 x 4 window) is a different result.
  SwinBlock unshifted(dim, heads, w, 0);
  unshifted->eval();
  auto source = block->named_parameters();
  for (auto& item : unshifted->named_parameters()) item.value().copy_(source[item.key()]);
  EXPECT_GT(max_abs_diff(unshifted(x, 4, 4), y), 1e-2);
}

TEST(SwinOriginal, PatchEmbeddingPadsRightAndBottom) {
  // 30 x 26 is padded with zeros to 32 x 28 (torchvision would drop the remainder: 7 x 6 patches).
  torch::manual_seed(4);
  PatchEmbed embed(4, 3, 8, true);
  randomise(*embed);
  torch::NoGradGuard no_grad;
  const auto image = torch::randn({2, 3, 30, 26});
  const auto y = embed(image);
  ASSERT_EQ(y.sizes(), (std::vector<std::int64_t>{2, 8, 8, 7}));
  auto padded = torch::zeros({2, 3, 32, 28});
  padded.slice(2, 0, 30).slice(3, 0, 26).copy_(image);
  // Conv by hand: each patch flattened against the kernel, then LayerNorm over channels.
  const auto patches =
      padded.view({2, 3, 8, 4, 7, 4}).permute({0, 2, 4, 1, 3, 5}).reshape({2, 8, 7, 48});
  auto conv = at::matmul(patches, embed->proj->weight.view({8, 48}).t()) + embed->proj->bias;
  const auto mean = conv.mean(-1, true);
  const auto var = (conv - mean).pow(2).mean(-1, true);
  const auto expected =
      ((conv - mean) / (var + 1e-5).sqrt() * embed->norm->weight + embed->norm->bias)
          .permute({0, 3, 1, 2});
  EXPECT_LE(max_abs_diff(y, expected), kTolerance);
}

// Which output tokens change when input token (ty, tx) changes.
std::set<std::int64_t> changed_outputs(SwinBlock& block, std::int64_t h, std::int64_t w,
                                       std::int64_t ty, std::int64_t tx) {
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, h * w, 8});
  auto x2 = x.clone();
  x2[0][ty * w + tx] += torch::randn({8});
  const auto diff = (block(x, h, w) - block(x2, h, w)).abs().amax(-1)[0];
  std::set<std::int64_t> out;
  for (std::int64_t i = 0; i < h * w; ++i) {
    if (diff[i].item<double>() > 1e-6) out.insert(i);
  }
  return out;
}

TEST(SwinOriginal, PaddedWindowsDoNotLeakAcrossWindows) {
  // A 5 x 6 map, window 4: padded to 8 x 8. Token (4, 5) lies in window (1, 1), whose real tokens
  // are (4, 4) and (4, 5): nothing else may change.
  torch::manual_seed(5);
  SwinBlock block(8, 2, 4, 0);
  randomise(*block);
  block->eval();
  EXPECT_EQ(changed_outputs(block, 5, 6, 4, 5), (std::set<std::int64_t>{4 * 6 + 4, 4 * 6 + 5}));
  // Token (0, 0): window (0, 0) = rows 0-3, cols 0-3.
  std::set<std::int64_t> window00;
  for (std::int64_t y = 0; y < 4; ++y) {
    for (std::int64_t x = 0; x < 4; ++x) window00.insert(y * 6 + x);
  }
  EXPECT_EQ(changed_outputs(block, 5, 6, 0, 0), window00);
}

TEST(SwinOriginal, ShiftMaskKeepsWrappedTokensApart) {
  // A 6 x 6 map, window 4, shift 2 (padded to 8 x 8): after the roll, token (0, 0) shares a window
  // with rows/cols 6, 7 (padding) but the mask confines it to rows and cols {0, 1}.
  torch::manual_seed(6);
  SwinBlock block(8, 2, 4, 2);
  randomise(*block);
  block->eval();
  EXPECT_EQ(changed_outputs(block, 6, 6, 0, 0), (std::set<std::int64_t>{0, 1, 6, 7}));
  // Without the mask the wrapped tokens would mix: (5, 5) sits in the window of rows/cols 2-5.
  std::set<std::int64_t> middle;
  for (std::int64_t y = 2; y < 6; ++y) {
    for (std::int64_t x = 2; x < 6; ++x) middle.insert(y * 6 + x);
  }
  EXPECT_EQ(changed_outputs(block, 6, 6, 5, 5), middle);
}

TEST(SwinOriginal, PaddedTokensTakePartAsZeroFeatures) {
  // The padded positions hold zeros after norm1 and are attended to (not masked): the block on a
  // 5 x 6 map equals its pieces applied to the normed map zero-padded to 8 x 8 by hand.
  torch::manual_seed(7);
  SwinBlock block(8, 2, 4, 0);
  randomise(*block);
  block->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 30, 8});
  auto padded = torch::zeros({1, 8, 8, 8});
  padded.slice(1, 0, 5).slice(2, 0, 6).copy_(block->norm1(x).view({1, 5, 6, 8}));
  const auto attended = window_reverse(block->attn(window_partition(padded, 4)), 4, 8, 8)
                            .slice(1, 0, 5)
                            .slice(2, 0, 6)
                            .reshape({1, 30, 8});
  auto expected = x + attended;
  expected = expected + block->mlp(block->norm2(expected));
  EXPECT_LE(max_abs_diff(block(x, 5, 6), expected), kTolerance);
}

// ---- helpers ------------------------------------------------------------------------------------

TEST(SwinHelpers, ShiftMaskOfOneWindow) {
  // Hp = Wp = window = 4, shift 2: one window, tokens grouped by quadrant of the rolled map.
  const auto mask = shifted_window_mask(4, 4, 4, 2);
  ASSERT_EQ(mask.sizes(), (std::vector<std::int64_t>{1, 16, 16}));
  for (std::int64_t i = 0; i < 16; ++i) {
    for (std::int64_t j = 0; j < 16; ++j) {
      const bool same = (i / 4 < 2) == (j / 4 < 2) && (i % 4 < 2) == (j % 4 < 2);
      EXPECT_EQ(mask[0][i][j].item<float>(), same ? 0.0f : -100.0f) << i << "," << j;
    }
  }
}

TEST(SwinHelpers, RelativePositionIndex) {
  const auto index = relative_position_index(3);                        // 9 x 9 into a 5 x 5 table
  EXPECT_EQ(index[0][0].item<std::int64_t>(), 12);                      // offset (0, 0) -> centre
  EXPECT_EQ(index[0][8].item<std::int64_t>(), 0);                       // (0,0) - (2,2) = (-2, -2)
  EXPECT_EQ(index[8][0].item<std::int64_t>(), 24);                      // (+2, +2)
  EXPECT_EQ(index[1][3].item<std::int64_t>(), (-1 + 2) * 5 + (1 + 2));  // (0,1) - (1,0)
}

TEST(SwinHelpers, WindowIndexIsPadRollPartition) {
  // The gather / scatter of window_index against the original's steps written out.
  struct Case {
    std::int64_t b, h, w, window, shift;
  };
  for (const auto& k :
       {Case{2, 5, 7, 3, 1}, Case{1, 6, 6, 3, 0}, Case{1, 4, 4, 4, 2}, Case{2, 9, 4, 4, 2}}) {
    const auto c = 5;
    const auto x = torch::randn({k.b, k.h, k.w, c});
    const auto hp = (k.h + k.window - 1) / k.window * k.window;
    const auto wp = (k.w + k.window - 1) / k.window * k.window;
    auto expected = at::constant_pad_nd(x, {0, 0, 0, wp - k.w, 0, hp - k.h});
    if (k.shift > 0) expected = at::roll(expected, {-k.shift, -k.shift}, {1, 2});
    expected = window_partition(expected, k.window);

    const auto index = window_index(k.b, k.h, k.w, k.window, k.shift);
    EXPECT_EQ(index.padded_height, hp);
    EXPECT_EQ(index.padded_width, wp);
    auto windows = x.reshape({-1, c}).index_select(0, index.gather);
    if (index.padding.numel() > 0) windows.index_fill_(0, index.padding, 0.0);
    EXPECT_TRUE(windows.view_as(expected).equal(expected)) << k.h << "x" << k.w;

    auto back = window_reverse(expected, k.window, hp, wp);
    if (k.shift > 0) back = at::roll(back, {k.shift, k.shift}, {1, 2});
    back = back.slice(1, 0, k.h).slice(2, 0, k.w);
    EXPECT_TRUE(back.equal(x));
    EXPECT_TRUE(expected.reshape({-1, c}).index_select(0, index.scatter).view_as(x).equal(x));
  }
}

TEST(SwinHelpers, WindowwiseAttentionEqualsBatched) {
  // Two images of 3 x 2 windows with the shift mask: forward_windowwise (no autograd) against
  // the batched path (autograd on).
  torch::manual_seed(10);
  WindowAttention attn(24, 4, 3);
  randomise(*attn);
  attn->eval();
  const auto x = torch::randn({12, 16, 24});
  const auto mask = shifted_window_mask(12, 8, 4, 2);
  const auto batched = attn(x, mask);
  ASSERT_TRUE(batched.requires_grad());
  torch::NoGradGuard no_grad;
  EXPECT_LE(max_abs_diff(attn->forward_windowwise(x, mask), batched.detach()), kTolerance);
  EXPECT_LE(max_abs_diff(attn->forward_windowwise(x), attn(x)), kTolerance);
  EXPECT_GT(max_abs_diff(attn->forward_windowwise(x), batched.detach()), 1e-2);  // mask matters
}

// True when the autograd graph behind `t` holds a node whose name contains `name`.
bool graph_has_node(const torch::Tensor& t, const std::string& name) {
  std::vector<std::shared_ptr<torch::autograd::Node>> todo = {t.grad_fn()};
  for (std::size_t seen = 0; !todo.empty() && seen < 64; ++seen) {
    const auto node = todo.back();
    todo.pop_back();
    if (!node) continue;
    if (node->name().find(name) != std::string::npos) return true;
    for (const auto& edge : node->next_edges()) todo.push_back(edge.function);
  }
  return false;
}

TEST(SwinHelpers, WindowAttentionKernelGradientsMatchTheBatchedPathInDouble) {
  const test::IntraOpThreads threads(2);
  // Training on the CPU in float runs the window-by-window kernel with its own backward; the
  // same module in double runs the generic batched path (the original's op sequence). Outputs
  // and the gradients of the input, both projections and the bias table must agree.
  torch::manual_seed(12);
  WindowAttention attn(24, 4, 3), reference(24, 4, 3);
  randomise(*attn);
  {
    torch::NoGradGuard no_grad;
    const auto from = attn->named_parameters();
    for (auto& p : reference->named_parameters()) p.value().copy_(from[p.key()]);
  }
  reference->to(torch::kDouble);
  const auto mask = shifted_window_mask(12, 8, 4, 2);
  const auto x = torch::randn({12, 16, 24}), r = torch::randn({12, 16, 24});
  const auto xf = x.clone().requires_grad_(true);
  const auto y = attn(xf, mask);
  EXPECT_TRUE(graph_has_node(y, "WindowAttentionFunction"));
  (y * r).sum().backward();
  const auto xd = x.to(torch::kDouble).requires_grad_(true);
  const auto yd = reference(xd, mask.to(torch::kDouble));
  EXPECT_FALSE(graph_has_node(yd, "WindowAttentionFunction"));
  (yd * r.to(torch::kDouble)).sum().backward();
  auto close = [](const torch::Tensor& a, const torch::Tensor& b) {
    return max_abs_diff(a.to(torch::kDouble), b) / b.abs().max().item<double>();
  };
  EXPECT_LE(close(y.detach(), yd.detach()), 1e-5);
  EXPECT_LE(close(xf.grad(), xd.grad()), 1e-5);
  for (const std::string name :
       {"qkv.weight", "qkv.bias", "proj.weight", "relative_position_bias_table"}) {
    const auto* ours = attn->named_parameters().find(name);
    const auto* theirs = reference->named_parameters().find(name);
    ASSERT_TRUE(ours && theirs && ours->grad().defined()) << name;
    EXPECT_LE(close(ours->grad(), theirs->grad()), 1e-5) << name;
  }
}

TEST(SwinHelpers, BlockGradientMatchesFiniteDifferences) {
  // Double precision, a padded shifted block: d sum(r * block(x)) / dx against central
  // differences at a few inputs.
  torch::manual_seed(11);
  SwinBlock block(8, 2, 4, 2);
  randomise(*block);
  block->to(torch::kDouble);
  block->eval();
  const auto x = torch::randn({1, 30, 8}, torch::kDouble).requires_grad_(true);
  const auto r = torch::randn({1, 30, 8}, torch::kDouble);
  (block(x, 5, 6) * r).sum().backward();
  const auto grad = x.grad();
  torch::NoGradGuard no_grad;
  for (const auto& [t, ch] : std::vector<std::pair<int, int>>{{0, 0}, {7, 3}, {29, 7}, {17, 5}}) {
    const double eps = 1e-6;
    auto plus = x.detach().clone(), minus = x.detach().clone();
    plus[0][t][ch] += eps;
    minus[0][t][ch] -= eps;
    const double numeric =
        ((block(plus, 5, 6) * r).sum() - (block(minus, 5, 6) * r).sum()).item<double>() / (2 * eps);
    EXPECT_NEAR(grad[0][t][ch].item<double>(), numeric, 1e-6) << t << "," << ch;
  }
}

TEST(SwinHelpers, WindowPartitionRoundTrip) {
  const auto x = torch::arange(2 * 6 * 9 * 3, torch::kFloat).view({2, 6, 9, 3});
  const auto windows = window_partition(x, 3);
  ASSERT_EQ(windows.sizes(), (std::vector<std::int64_t>{12, 9, 3}));
  // Window 1 of image 0 = rows 0-2, cols 3-5; its token 4 is (1, 4).
  EXPECT_TRUE(windows[1][4].equal(x[0][1][4]));
  EXPECT_TRUE(window_reverse(windows, 3, 6, 9).equal(x));
}

// ---- the backbone -------------------------------------------------------------------------------

// Parameter count of the original backbone by formula: patch embedding conv + norm; per block
// 12 C^2 + 13 C + (2w-1)^2 heads (norm1 2C, qkv 3C^2+3C, proj C^2+C, table, norm2 2C, fc1 4C^2+4C,
// fc2 4C^2+C); per PatchMerging 8 C^2 + 8 C; per output norm 2 C.
std::int64_t formula_count(const SwinOptions& o) {
  std::int64_t n =
      o.in_channels * o.patch_size * o.patch_size * o.embed_dim + o.embed_dim + 2 * o.embed_dim;
  const auto table = (2 * o.window_size - 1) * (2 * o.window_size - 1);
  for (std::int64_t i = 0; i < o.num_stages(); ++i) {
    const auto c = o.stage_dim(i);
    n += o.depths[i] * (12 * c * c + 13 * c + table * o.num_heads[i]);
    if (i + 1 < o.num_stages()) n += 8 * c * c + 8 * c;
  }
  for (auto i : o.out_indices) n += 2 * o.stage_dim(i);
  return n;
}

TEST(SwinModel, SwinBaseWindow12ParameterCount) {
  // Swin-B, window 12 (LAVT's), no head: 86,880,376 by the formula above. Cross-check with
  // torchvision: its SwinTransformer(128, [2,2,18,2], [4,8,16,32], window [12,12]) has
  // 86,878,584 parameters without its head (stored by make_swin_fixtures.py); it has one final
  // norm (2 x 1024) where the original has four (2 x (128 + 256 + 512 + 1024) = 3840).
  const auto options = SwinOptions::base(12);
  EXPECT_EQ(formula_count(options), 86'880'376);
  const auto torchvision =
      fixture().meta().at("swin_b_window12_torchvision_without_head").get<std::int64_t>();
  EXPECT_EQ(torchvision, 86'878'584);
  SwinTransformer swin(options);
  EXPECT_EQ(count_parameters(*swin), 86'880'376);
  EXPECT_EQ(count_parameters(*swin), torchvision - 2 * 1024 + 3840);
  EXPECT_EQ(count_parameters(*SwinTransformer(SwinOptions::tiny())),
            formula_count(SwinOptions::tiny()));
}

TEST(SwinModel, OriginalParameterNames) {
  SwinTransformer swin(SwinOptions::nano());
  const auto params = swin->named_parameters();
  const std::vector<std::pair<std::string, std::vector<std::int64_t>>> expected{
      {"patch_embed.proj.weight", {16, 3, 4, 4}},
      {"patch_embed.proj.bias", {16}},
      {"patch_embed.norm.weight", {16}},
      {"layers.0.blocks.0.norm1.weight", {16}},
      {"layers.0.blocks.1.attn.relative_position_bias_table", {49, 1}},
      {"layers.0.blocks.1.attn.qkv.weight", {48, 16}},
      {"layers.0.blocks.1.attn.proj.bias", {16}},
      {"layers.0.blocks.1.mlp.fc1.weight", {64, 16}},
      {"layers.0.blocks.1.mlp.fc2.weight", {16, 64}},
      {"layers.0.downsample.norm.weight", {64}},
      {"layers.0.downsample.reduction.weight", {32, 64}},
      {"layers.3.blocks.1.attn.relative_position_bias_table", {49, 8}},
      {"norm0.weight", {16}},
      {"norm3.bias", {128}},
  };
  for (const auto& [name, shape] : expected) {
    const auto* p = params.find(name);
    ASSERT_NE(p, nullptr) << name;
    EXPECT_EQ(p->sizes(), shape) << name;
  }
  EXPECT_EQ(params.find("layers.3.downsample.reduction.weight"), nullptr);
  const auto buffers = swin->named_buffers();
  ASSERT_NE(buffers.find("layers.0.blocks.0.attn.relative_position_index"), nullptr);
  EXPECT_EQ(buffers["layers.0.blocks.0.attn.relative_position_index"].sizes(),
            (std::vector<std::int64_t>{16, 16}));
}

TEST(SwinModel, OutputShapesRoundUp) {
  SwinTransformer swin(SwinOptions::nano());
  swin->eval();
  torch::NoGradGuard no_grad;
  const auto outs = swin->forward(torch::randn({2, 3, 62, 50}));  // 16x13, 8x7, 4x4, 2x2
  ASSERT_EQ(outs.size(), 4u);
  EXPECT_EQ(outs[0].sizes(), (std::vector<std::int64_t>{2, 16, 16, 13}));
  EXPECT_EQ(outs[1].sizes(), (std::vector<std::int64_t>{2, 32, 8, 7}));
  EXPECT_EQ(outs[2].sizes(), (std::vector<std::int64_t>{2, 64, 4, 4}));
  EXPECT_EQ(outs[3].sizes(), (std::vector<std::int64_t>{2, 128, 2, 2}));
  for (const auto& o : outs) EXPECT_TRUE(o.isfinite().all().item<bool>());
}

TEST(SwinModel, OutIndicesSelectStages) {
  auto options = SwinOptions::nano();
  options.out_indices = {1, 3};
  SwinTransformer swin(options);
  swin->eval();
  EXPECT_EQ(swin->named_parameters().find("norm0.weight"), nullptr);
  torch::NoGradGuard no_grad;
  const auto outs = swin->forward(torch::randn({1, 3, 64, 64}));
  ASSERT_EQ(outs.size(), 2u);
  EXPECT_EQ(outs[0].size(1), 32);
  EXPECT_EQ(outs[1].size(1), 128);
}

TEST(SwinModel, StageApiAsLavtUsesIt) {
  // LAVT: blocks, then a fusion changes x before downsampling, and the output is a different
  // tensor (its PWAM residual) through norm_i. Extra modules registered on a stage keep the
  // original names (layers.i.fusion...).
  torch::manual_seed(8);
  SwinTransformer swin(SwinOptions::nano());
  swin->eval();
  auto fusion = swin->stage(0)->register_module("fusion", torch::nn::Linear(16, 16));
  EXPECT_NE(swin->named_parameters().find("layers.0.fusion.weight"), nullptr);

  torch::NoGradGuard no_grad;
  const auto images = torch::randn({1, 3, 64, 64});
  // With no fusion, the stage API reproduces forward().
  const auto reference = swin->forward(images);
  auto x = swin->embed(images);
  for (std::int64_t i = 0; i < swin->num_stages(); ++i) {
    x = swin->run_blocks(i, x);
    EXPECT_TRUE(swin->output(i, x).equal(reference[i])) << i;
    x = swin->downsample(i, x);
  }
  // Changing x after stage 0's blocks changes what stage 1 sees (fused x goes downstream).
  x = swin->run_blocks(0, swin->embed(images));
  const auto residual = fusion->forward(x.tokens);
  const TokenMap fused{x.tokens + residual, x.height, x.width};
  const auto out1 = swin->output(1, swin->run_blocks(1, swin->downsample(0, fused)));
  EXPECT_GT(max_abs_diff(out1, reference[1]), 1e-3);
}

TEST(SwinModel, StochasticDepthRisesLinearlyAndIsIdentityInEval) {
  auto options = SwinOptions::nano();
  options.drop_path_rate = 0.35;  // 8 blocks: 0, 0.05, ..., 0.35
  SwinTransformer swin(options);
  std::int64_t k = 0;
  for (std::int64_t s = 0; s < 4; ++s) {
    for (const auto& m : *swin->stage(s)->blocks) {
      EXPECT_NEAR(m->as<SwinBlockImpl>()->drop_path_prob, 0.05 * static_cast<double>(k++), 1e-6);
    }
  }
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({4, 3, 32, 32});
  swin->eval();
  const auto a = swin->forward(images)[3];
  EXPECT_TRUE(a.equal(swin->forward(images)[3]));
  auto no_drop = SwinOptions::nano();
  no_drop.drop_path_rate = 0.0;
  SwinTransformer plain(no_drop);
  auto source = swin->named_parameters();
  for (auto& item : plain->named_parameters()) item.value().copy_(source[item.key()]);
  plain->eval();
  EXPECT_TRUE(a.equal(plain->forward(images)[3]));
  swin->train();
  EXPECT_GT(max_abs_diff(swin->forward(images)[3], a), 1e-4);
}

TEST(SwinModel, DropPathDropsWholeSamples) {
  torch::manual_seed(9);
  const auto x = torch::ones({2000, 3, 5});
  const auto y = drop_path(x, 0.25, true);
  // Each sample is all 0 or all 1/0.75; about a quarter are 0.
  const auto per_sample = y.view({2000, -1});
  EXPECT_TRUE((per_sample.amax(1) == per_sample.amin(1)).all().item<bool>());
  const double dropped = (per_sample.amax(1) == 0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(dropped, 0.25, 0.04);
  EXPECT_NEAR(per_sample.amax().item<double>(), 1.0 / 0.75, 1e-6);
  EXPECT_TRUE(drop_path(x, 0.25, false).equal(x));
}

TEST(SwinModel, InitMatchesTheOriginal) {
  SwinTransformer swin(SwinOptions::nano());
  const auto params = swin->named_parameters();
  const auto& qkv = params["layers.2.blocks.0.attn.qkv.weight"];
  EXPECT_NEAR(qkv.std().item<double>(), 0.02, 0.002);
  EXPECT_LE(qkv.abs().max().item<double>(), 2.0);
  EXPECT_TRUE(params["layers.2.blocks.0.attn.qkv.bias"].eq(0).all().item<bool>());
  EXPECT_TRUE(params["norm2.weight"].eq(1).all().item<bool>());
  EXPECT_NEAR(params["layers.2.blocks.0.attn.relative_position_bias_table"].std().item<double>(),
              0.02, 0.004);
}

TEST(SwinModel, RejectsBadOptions) {
  auto options = SwinOptions::nano();
  options.num_heads = {3, 2, 4, 8};  // 16 channels, 3 heads
  EXPECT_THROW(SwinTransformer{options}, ConfigError);
  EXPECT_THROW(SwinOptions::preset("huge"), ConfigError);
  EXPECT_EQ(SwinOptions::preset("base", 12).window_size, 12);
  EXPECT_EQ(SwinOptions::preset("small").depths[2], 18);
}

}  // namespace
}  // namespace wico::backbones
