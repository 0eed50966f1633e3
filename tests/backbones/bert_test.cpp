// BERT encoder: the forward pass against the formulas written out with basic tensor ops from the
// module's own weights, padding invariance, HuggingFace names, parameter counts, LAVT's freezing.
#include "wico/backbones/bert.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "backbones/tensor_fixture.h"
#include "wico/core/error.h"

namespace wico::backbones {
namespace {

using test::max_abs_diff;

std::int64_t count(const std::vector<torch::Tensor>& params) {
  std::int64_t n = 0;
  for (const auto& p : params) n += p.numel();
  return n;
}

// Every parameter random and of order one (LayerNorm affines away from 1 / 0).
void randomise(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters()) {
    auto& p = item.value();
    if (item.key().find("LayerNorm.weight") != std::string::npos) {
      p.copy_(1.0 + 0.3 * torch::randn_like(p));
    } else if (p.dim() == 1) {
      p.normal_(0.0, 0.2);
    } else {
      p.normal_(0.0, 1.0 / std::sqrt(static_cast<double>(p.size(1))));
    }
  }
}

// ---- the formulas, written out ------------------------------------------------------------------

using Params = torch::OrderedDict<std::string, torch::Tensor>;

torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& gamma,
                         const torch::Tensor& beta) {
  const auto mean = x.mean(-1, true);
  const auto var = (x - mean).pow(2).mean(-1, true);  // biased, as LayerNorm
  return (x - mean) / (var + 1e-12).sqrt() * gamma + beta;
}

torch::Tensor linear(const torch::Tensor& x, const Params& p, const std::string& name) {
  return at::matmul(x, p[name + ".weight"].to(torch::kDouble).t()) +
         p[name + ".bias"].to(torch::kDouble);
}

torch::Tensor softmax(const torch::Tensor& x) {
  const auto e = (x - std::get<0>(x.max(-1, true))).exp();
  return e / e.sum(-1, true);
}

// The whole encoder in double precision from the named parameters: ids [B, L], mask [B, L].
torch::Tensor hand_bert(const Params& params, const BertOptions& o, const torch::Tensor& ids,
                        const torch::Tensor& mask) {
  auto p = [&](const std::string& name) { return params[name].to(torch::kDouble); };
  const auto b = ids.size(0), l = ids.size(1), heads = o.num_heads, d = o.hidden_size / heads;
  auto h = p("embeddings.word_embeddings.weight").index_select(0, ids.flatten()).view({b, l, -1}) +
           p("embeddings.position_embeddings.weight").slice(0, 0, l).unsqueeze(0) +
           p("embeddings.token_type_embeddings.weight")[0];
  h = layer_norm(h, p("embeddings.LayerNorm.weight"), p("embeddings.LayerNorm.bias"));
  const auto additive = (1.0 - mask.to(torch::kDouble)) * -10000.0;  // [B, L] over keys
  for (std::int64_t i = 0; i < o.num_layers; ++i) {
    const std::string pre = "encoder.layer." + std::to_string(i) + ".";
    const auto q = linear(h, params, pre + "attention.self.query");
    const auto k = linear(h, params, pre + "attention.self.key");
    const auto v = linear(h, params, pre + "attention.self.value");
    auto context = torch::zeros_like(h);
    for (std::int64_t head = 0; head < heads; ++head) {
      const auto qh = q.slice(2, head * d, (head + 1) * d);
      const auto kh = k.slice(2, head * d, (head + 1) * d);
      const auto vh = v.slice(2, head * d, (head + 1) * d);
      const auto scores = at::matmul(qh, kh.transpose(1, 2)) / std::sqrt(double(d)) +
                          additive.unsqueeze(1);  // softmax(QK^T / sqrt(d) + mask)
      context.slice(2, head * d, (head + 1) * d).copy_(at::matmul(softmax(scores), vh));
    }
    const auto a = layer_norm(linear(context, params, pre + "attention.output.dense") + h,
                              p(pre + "attention.output.LayerNorm.weight"),
                              p(pre + "attention.output.LayerNorm.bias"));
    const auto inter = linear(a, params, pre + "intermediate.dense");
    const auto gelu = 0.5 * inter * (1.0 + (inter / std::sqrt(2.0)).erf());
    h = layer_norm(linear(gelu, params, pre + "output.dense") + a,
                   p(pre + "output.LayerNorm.weight"), p(pre + "output.LayerNorm.bias"));
  }
  return h;
}

TEST(Bert, MatchesTheFormulasWrittenOut) {
  torch::manual_seed(11);
  const auto options = BertOptions::tiny();
  BertModel bert(options);
  randomise(*bert);
  bert->eval();
  const auto ids = torch::randint(1, options.vocab_size, {3, 9}, torch::kLong);
  auto mask = torch::ones({3, 9}, torch::kLong);
  mask[1].slice(0, 6).zero_();  // 3 padding positions
  mask[2].slice(0, 2).zero_();  // 7 padding positions
  torch::NoGradGuard no_grad;
  const auto ours = bert(ids, mask);
  ASSERT_EQ(ours.sizes(), (std::vector<std::int64_t>{3, 9, 32}));
  const auto expected = hand_bert(bert->named_parameters(), options, ids, mask);
  EXPECT_LE(max_abs_diff(ours, expected), 1e-5);
  // One layer alone (the embedding output through layer 0).
  const auto embedded = bert->embeddings(ids);
  auto one_layer = options;
  one_layer.num_layers = 1;
  const auto expected_one = hand_bert(bert->named_parameters(), one_layer, ids, mask);
  EXPECT_LE(
      max_abs_diff(bert->layer(0)(embedded, BertModelImpl::additive_mask(mask)), expected_one),
      1e-5);
  // The mask does matter for the padded rows' real tokens.
  EXPECT_GT(max_abs_diff(bert(ids, torch::ones_like(mask)), ours), 1e-3);
}

TEST(Bert, TokenTypesAndPooler) {
  torch::manual_seed(12);
  BertModel bert(BertOptions::tiny());
  randomise(*bert);
  bert->eval();
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(1, 128, {2, 5}, torch::kLong);
  const auto zeros = torch::zeros({2, 5}, torch::kLong);
  EXPECT_TRUE(bert(ids, torch::Tensor(), zeros).allclose(bert(ids), 0, 1e-6));
  EXPECT_GT(max_abs_diff(bert(ids, torch::Tensor(), torch::ones({2, 5}, torch::kLong)), bert(ids)),
            1e-3);
  const auto hidden = bert(ids);
  const auto params = bert->named_parameters();
  const auto expected = (at::matmul(hidden.select(1, 0), params["pooler.dense.weight"].t()) +
                         params["pooler.dense.bias"])
                            .tanh();
  EXPECT_LE(max_abs_diff(bert->pool(hidden), expected), 1e-6);
}

TEST(Bert, PaddedPositionsDoNotReachRealOnes) {
  torch::manual_seed(13);
  BertModel bert(BertOptions::tiny());
  randomise(*bert);
  bert->eval();
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(1, 128, {2, 12}, torch::kLong);
  auto mask = torch::ones({2, 12}, torch::kInt);
  mask[0].slice(0, 7).zero_();
  mask[1].slice(0, 10).zero_();
  auto other = ids.clone();
  other[0].slice(0, 7).random_(1, 128);
  other[1].slice(0, 10).random_(1, 128);
  ASSERT_FALSE(other.equal(ids));
  const auto a = bert(ids, mask), b = bert(other, mask);
  EXPECT_LE(max_abs_diff(a[0].slice(0, 0, 7), b[0].slice(0, 0, 7)), 1e-6);
  EXPECT_LE(max_abs_diff(a[1].slice(0, 0, 10), b[1].slice(0, 0, 10)), 1e-6);
  // Boolean and float masks mean the same.
  EXPECT_TRUE(bert(ids, mask.to(torch::kBool)).equal(a));
  EXPECT_TRUE(bert(ids, mask.to(torch::kFloat)).equal(a));
  // Without the mask the changed tokens do reach the real positions.
  EXPECT_GT(max_abs_diff(bert(ids)[0].slice(0, 0, 7), bert(other)[0].slice(0, 0, 7)), 1e-3);
}

TEST(Bert, HuggingFaceNames) {
  BertModel bert(BertOptions::tiny());
  const auto params = bert->named_parameters();
  const std::vector<std::pair<std::string, std::vector<std::int64_t>>> expected{
      {"embeddings.word_embeddings.weight", {128, 32}},
      {"embeddings.position_embeddings.weight", {32, 32}},
      {"embeddings.token_type_embeddings.weight", {2, 32}},
      {"embeddings.LayerNorm.weight", {32}},
      {"embeddings.LayerNorm.bias", {32}},
      {"encoder.layer.0.attention.self.query.weight", {32, 32}},
      {"encoder.layer.0.attention.self.key.bias", {32}},
      {"encoder.layer.0.attention.self.value.weight", {32, 32}},
      {"encoder.layer.0.attention.output.dense.weight", {32, 32}},
      {"encoder.layer.0.attention.output.LayerNorm.weight", {32}},
      {"encoder.layer.1.intermediate.dense.weight", {64, 32}},
      {"encoder.layer.1.output.dense.weight", {32, 64}},
      {"encoder.layer.1.output.LayerNorm.bias", {32}},
      {"pooler.dense.weight", {32, 32}},
  };
  for (const auto& [name, shape] : expected) {
    const auto* p = params.find(name);
    ASSERT_NE(p, nullptr) << name;
    EXPECT_EQ(p->sizes(), shape) << name;
  }
  EXPECT_EQ(params.size(), 5u + 2u * 16u + 2u);  // embeddings, 16 a layer, pooler
}

TEST(Bert, BaseParameterCounts) {
  // bert-base-uncased (H 768, 12 layers, intermediate 3072, vocab 30522, 512 positions):
  //   embeddings: (30522 + 512 + 2) x 768 + LayerNorm 2 x 768 = 23,837,184
  //   a layer: 4 x (768^2 + 768) (Q, K, V, attention output) + 2 x 768 (LayerNorm)
  //            + (768 x 3072 + 3072) + (3072 x 768 + 768) + 2 x 768 = 7,087,872; 12 of them
  //            85,054,464
  //   without the pooler: 23,837,184 + 85,054,464 = 108,891,648
  //   pooler: 768^2 + 768 = 590,592 -> 109,482,240
  EXPECT_EQ((30522 + 512 + 2) * 768 + 2 * 768, 23'837'184);
  EXPECT_EQ(4 * (768 * 768 + 768) + 2 * 768 + (768 * 3072 + 3072) + (3072 * 768 + 768) + 2 * 768,
            7'087'872);
  BertModel with_pooler(BertOptions::base());
  EXPECT_EQ(count(with_pooler->parameters()), 109'482'240);
  EXPECT_EQ(count(with_pooler->layer(3)->parameters()), 7'087'872);
  auto options = BertOptions::base();
  options.with_pooler = false;
  BertModel without(options);
  EXPECT_EQ(count(without->parameters()), 108'891'648);
  EXPECT_EQ(without->named_parameters().find("pooler.dense.weight"), nullptr);
}

TEST(Bert, LavtTrainsLayersZeroToNine) {
  auto options = BertOptions::tiny();
  options.num_layers = 12;
  BertModel bert(options);
  const auto frozen = bert->frozen_parameter_names(10);
  std::set<std::string> prefixes;
  for (const auto& name : frozen) {
    prefixes.insert(name.rfind("encoder.layer.", 0) == 0 ? name.substr(0, 16)
                                                         : name.substr(0, name.find('.')));
  }
  EXPECT_EQ(prefixes, (std::set<std::string>{"embeddings", "encoder.layer.10", "encoder.layer.11",
                                             "pooler"}));
  bert->freeze_except_layers(10);
  std::vector<torch::Tensor> trainable;
  for (const auto& item : bert->named_parameters()) {
    if (item.value().requires_grad()) {
      trainable.push_back(item.value());
      EXPECT_EQ(item.key().rfind("encoder.layer.", 0), 0u) << item.key();
    }
  }
  const auto groups = bert->layer_parameters(0, 10);
  EXPECT_EQ(groups.size(), 10u * 16u);
  EXPECT_EQ(count(trainable), count(groups));
  EXPECT_EQ(count(groups), 10 * count(bert->layer(0)->parameters()));
  // Only the trainable ones get gradients.
  const auto ids = torch::randint(1, 128, {2, 4}, torch::kLong);
  bert->forward(ids).sum().backward();
  EXPECT_FALSE(bert->embeddings->word_embeddings->weight.grad().defined());
  EXPECT_TRUE(bert->layer(0)->query->weight.grad().defined());
  EXPECT_FALSE(bert->layer(11)->query->weight.grad().defined());
}

TEST(Bert, DropoutOnlyInTraining) {
  torch::manual_seed(14);
  BertModel bert(BertOptions::tiny());
  const auto ids = torch::randint(1, 128, {2, 6}, torch::kLong);
  torch::NoGradGuard no_grad;
  bert->eval();
  EXPECT_TRUE(bert(ids).equal(bert(ids)));
  bert->train();
  EXPECT_GT(max_abs_diff(bert(ids), bert(ids)), 1e-3);
}

TEST(Bert, InitAndOptions) {
  BertModel bert(BertOptions::tiny());
  const auto params = bert->named_parameters();
  EXPECT_NEAR(params["encoder.layer.0.intermediate.dense.weight"].std().item<double>(), 0.02,
              0.004);
  EXPECT_TRUE(params["embeddings.word_embeddings.weight"][0].eq(0).all().item<bool>());
  EXPECT_TRUE(params["embeddings.LayerNorm.weight"].eq(1).all().item<bool>());
  auto bad = BertOptions::tiny();
  bad.num_heads = 5;
  EXPECT_THROW(BertModel{bad}, ConfigError);
  EXPECT_THROW(BertOptions::preset("large"), ConfigError);
  const auto too_long = torch::ones({1, 33}, torch::kLong);
  EXPECT_THROW(bert(too_long), Error);
}

}  // namespace
}  // namespace wico::backbones
