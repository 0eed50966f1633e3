#include "wico/wico/cfi.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace wico::model {
namespace {

using torch::indexing::Slice;

CfiOptions small() {
  CfiOptions o;
  o.instance_dim = 6;
  o.pixel_dim = 4;
  o.dim = 8;
  o.layers = 2;
  o.heads = 2;
  o.ffn_dim = 16;
  return o;
}

struct Inputs {
  torch::Tensor e, s, valid, masks, ep;
};

Inputs inputs() {
  torch::manual_seed(0);
  Inputs in;
  in.e = torch::randn({2, 3, 6});
  in.s = torch::tensor({{0.2f, 0.5f, 0.3f}, {0.9f, 0.1f, 0.0f}});
  in.valid = torch::tensor({{true, true, true}, {true, true, false}});
  in.masks = torch::zeros({2, 3, 8, 8});
  in.masks.index_put_({Slice(), 0, Slice(0, 4), Slice(0, 4)}, 1.0);
  in.masks.index_put_({Slice(), 1, Slice(2, 8), Slice(2, 8)}, 1.0);  // overlaps instance 0
  in.masks.index_put_({Slice(), 2, Slice(6, 8), Slice(0, 2)}, 1.0);
  in.ep = torch::randn({2, 4, 4, 4});
  return in;
}

TEST(Cfi, StartsAsTheIdentityOnPixelEmbeddings) {
  ComplementaryFeatureInteraction cfi(small());
  const Inputs in = inputs();
  const CfiOutput out = cfi->forward(in.e, in.s, in.valid, in.masks, in.ep);
  EXPECT_TRUE(torch::equal(out.pixel_embeddings, in.ep));  // DESIGN decision 1: P_bu_hat == P_bu
  EXPECT_TRUE(torch::allclose(out.scores, in.s, 1e-5, 1e-7));  // and S_hat == S
  EXPECT_EQ(out.embeddings.sizes(), (torch::IntArrayRef{2, 3, 8}));
  EXPECT_TRUE(torch::allclose(out.scores.sum(1), torch::ones({2})));
  EXPECT_EQ(out.scores[1][2].item<float>(), 0.0f);
}

TEST(Cfi, EachPixelSumsTheEmbeddingsOfTheInstancesCoveringIt) {
  ComplementaryFeatureInteraction cfi(small());
  torch::NoGradGuard no_grad;
  // fuse = [0 | I]: E_p_hat - E_p is then A of Eq. 3 (after the projection to E_p's width).
  auto params = cfi->named_parameters();
  params["fuse_weight"].narrow(1, 4, 4).copy_(torch::eye(4));
  const Inputs in = inputs();
  const CfiOutput out = cfi->forward(in.e, in.s, in.valid, in.masks, in.ep);
  const auto assigned = torch::linear(out.embeddings, params["assign_proj.weight"], params["assign_proj.bias"]);
  const auto a = out.pixel_embeddings - in.ep;  // [2, 4, 4, 4], masks pooled 8 -> 4
  // Pixel (0, 0): instance 0 only; (1, 1): instances 0 and 1; (3, 0): instance 2 (padding in
  // sample 1); (0, 3): none.
  EXPECT_TRUE(torch::allclose(a.index({0, Slice(), 0, 0}), assigned[0][0], 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(a.index({0, Slice(), 1, 1}), assigned[0][0] + assigned[0][1], 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(a.index({0, Slice(), 3, 0}), assigned[0][2], 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(a.index({1, Slice(), 3, 0}), torch::zeros({4}), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(a.index({0, Slice(), 0, 3}), torch::zeros({4}), 1e-6, 1e-6));
}

TEST(Cfi, PaddingInstancesDoNotChangeTheValidOnes) {
  ComplementaryFeatureInteraction cfi(small());
  Inputs in = inputs();
  const CfiOutput a = cfi->forward(in.e, in.s, in.valid, in.masks, in.ep);
  in.e.index_put_({1, 2}, torch::randn({6}) * 10);
  in.masks.index_put_({1, 2}, 1.0);
  const CfiOutput b = cfi->forward(in.e, in.s, in.valid, in.masks, in.ep);
  EXPECT_TRUE(torch::allclose(a.embeddings.index({1, Slice(0, 2)}), b.embeddings.index({1, Slice(0, 2)}), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(a.scores, b.scores, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(a.pixel_embeddings, b.pixel_embeddings));
}

TEST(Cfi, ScoresModulateTheQueriesAndGradientsReachEveryParameter) {
  ComplementaryFeatureInteraction cfi(small());
  Inputs in = inputs();
  in.s.requires_grad_(true);
  in.ep.requires_grad_(true);
  const CfiOutput out = cfi->forward(in.e, in.s, in.valid, in.masks, in.ep);
  (out.scores.pow(2).sum() + out.pixel_embeddings.pow(2).sum()).backward();
  EXPECT_GT(in.s.grad().abs().sum().item<float>(), 0.0f);  // Eq. 5's modulation
  EXPECT_GT(in.ep.grad().abs().sum().item<float>(), 0.0f);
  for (const auto& p : cfi->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
  }
  // The zero-initialised fuse layer gets a gradient, so it leaves zero in the first step.
  EXPECT_GT(cfi->named_parameters()["fuse_weight"].grad().abs().sum().item<float>(), 0.0f);
}

}  // namespace
}  // namespace wico::model
