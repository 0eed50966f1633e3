#include "wico/bottomup/lavt/lavt.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_util.h"
#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/data/loader.h"
#include "wico/nn/ris_model.h"

namespace wico::bottomup {
namespace {

LavtOptions nano() {
  LavtOptions o = LavtOptions::from_config(Config::defaults(
      {"text.tokenizer=wordpiece", "lavt.swin=nano", "lavt.window=4", "lavt.bert=tiny",
       "lavt.bert_train_layers=-1", "lavt.drop_path=0"}));
  return o;
}

data::Batch random_batch(std::int64_t B, std::int64_t S, std::int64_t L) {
  data::Batch b;
  b.images = torch::randn({B, 3, S, S});
  b.targets = (torch::rand({B, 1, S, S}) > 0.7).to(torch::kFloat);
  b.token_ids = torch::randint(1000, 2000, {B, L}, torch::kLong);
  b.attention_mask = torch::ones({B, L}, torch::kLong);
  b.attention_mask.narrow(1, L - 3, 3).zero_();
  return b;
}

std::int64_t count(const torch::nn::Module& m, const std::string& prefix = "") {
  std::int64_t n = 0;
  for (const auto& p : m.named_parameters()) {
    if (p.key().rfind(prefix, 0) == 0) n += p.value().numel();
  }
  return n;
}

TEST(Lavt, ShapesOfEmbeddingsAndLogits) {
  torch::manual_seed(0);
  LavtBackend lavt(nano());
  const auto out = lavt.forward(random_batch(2, 64, 8));
  // Nano: embed 16, so c4 = 128 and the decoder's hidden width (E_p's C) is 64, at 1/4.
  EXPECT_EQ(out.pixel_embeddings.sizes(), (std::vector<std::int64_t>{2, 64, 16, 16}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<std::int64_t>{2, 1, 16, 16}));
  EXPECT_EQ(lavt.embedding_dim(), 64);
  // decode() is the 1x1 classifier: foreground logit l1 - l0.
  const auto two = torch::conv2d(out.pixel_embeddings,
                                 lavt.named_parameters()["classifier.conv1_1.weight"],
                                 lavt.named_parameters()["classifier.conv1_1.bias"]);
  EXPECT_TRUE(torch::allclose(out.logits, two.narrow(1, 1, 1) - two.narrow(1, 0, 1), 1e-5, 1e-6));
}

TEST(Lavt, LossIsTheOriginalsWeightedTwoClassCrossEntropy) {
  LavtBackend lavt(nano());
  torch::manual_seed(3);
  const auto two = torch::randn({2, 2, 5, 7});
  const auto target = torch::randint(0, 2, {2, 5, 7}, torch::kLong);
  const auto weight = torch::tensor({0.9, 1.1}, torch::kFloat);
  const auto expected = torch::nll_loss2d(two.log_softmax(1), target, weight);
  const auto ours = lavt.loss(two.narrow(1, 1, 1) - two.narrow(1, 0, 1),
                              target.unsqueeze(1).to(torch::kFloat));
  EXPECT_NEAR(ours.item<double>(), expected.item<double>(), 1e-6);
}

TEST(Lavt, PaddedWordsDoNotReachThePixels) {
  torch::manual_seed(1);
  PixelWordAttention att(8, 6, 8, 8, 2);
  const auto x = torch::randn({1, 10, 8});
  auto words = torch::randn({1, 6, 5});
  const auto mask = torch::tensor({1, 1, 1, 0, 0}, torch::kFloat).view({1, 5, 1});
  const auto a = att->forward(x, words, mask);
  words.narrow(2, 3, 2).normal_();
  EXPECT_TRUE(torch::allclose(a, att->forward(x, words, mask), 1e-5, 1e-6));
}

TEST(Lavt, PixelWordAttentionEqualsTheOriginalsConvolutionForm) {
  // The original: Conv1d(k=1) on [B, C, N], InstanceNorm1d, keys/values masked, per-head scaled
  // dot product with -10000 on padded words, softmax, W = Conv1d + InstanceNorm1d.
  torch::manual_seed(2);
  PixelWordAttention att(8, 6, 8, 8, 2);
  for (auto& p : att->parameters()) p.data().normal_(0, 0.5);
  const auto x = torch::randn({2, 10, 8});
  const auto words = torch::randn({2, 6, 5});
  const auto mask = torch::tensor({1, 1, 1, 0, 0, 1, 1, 1, 1, 0}, torch::kFloat).view({2, 5, 1});
  auto w = att->named_parameters();
  auto conv = [&](const std::string& name, const torch::Tensor& in) {
    return torch::conv1d(in, w[name + ".0.weight"], w[name + ".0.bias"]);
  };
  auto inorm = [](const torch::Tensor& t) {
    return torch::instance_norm(t, {}, {}, {}, {}, true, 0.1, 1e-5, false);
  };
  const auto lm = mask.permute({0, 2, 1});                            // [B, 1, L]
  auto query = inorm(conv("f_query", x.permute({0, 2, 1}))).permute({0, 2, 1});
  query = query.reshape({2, 10, 2, 4}).permute({0, 2, 1, 3});
  const auto key = (conv("f_key", words) * lm).reshape({2, 2, 4, 5});
  const auto value = (conv("f_value", words) * lm).reshape({2, 2, 4, 5});
  auto sim = torch::matmul(query, key) * std::pow(8.0, -0.5) + (lm.unsqueeze(1) * 1e4 - 1e4);
  auto out = torch::matmul(sim.softmax(-1), value.permute({0, 1, 3, 2}));
  out = out.permute({0, 2, 1, 3}).reshape({2, 10, 8}).permute({0, 2, 1});
  const auto expected = inorm(conv("W", out)).permute({0, 2, 1});
  EXPECT_TRUE(torch::allclose(att->forward(x, words, mask), expected, 1e-4, 1e-5));
}

TEST(Lavt, PaperSizeParameterCountsAndOneForward) {
  const Config c = Config::defaults({"text.tokenizer=wordpiece"});  // the defaults are paper size
  LavtBackend lavt(LavtOptions::from_config(c));
  // Per part, against the published architectures (formulas in the comments).
  std::int64_t pwam = 0;
  for (std::int64_t d : {128, 256, 512, 1024}) {
    // vis_project, f_query, W, project_mm: d*d + d each; f_key, f_value: 768*d + d each;
    // res_gate: two d*d without bias.
    pwam += 4 * (d * d + d) + 2 * (768 * d + d) + 2 * d * d;
  }
  std::int64_t fusion_and_gates = 0;
  for (const auto& p : lavt.named_parameters()) {
    if (p.key().find(".fusion.") != std::string::npos ||
        p.key().find(".res_gate.") != std::string::npos) {
      fusion_and_gates += p.value().numel();
    }
  }
  EXPECT_EQ(fusion_and_gates, pwam);
  // Swin-B without its classifier head: 86.7M in the blocks plus the four output norms.
  const std::int64_t swin = count(lavt, "backbone.") - fusion_and_gates;
  EXPECT_NEAR(static_cast<double>(swin) / 1e6, 86.9, 0.3);
  // BERT-base without the pooler: 108,891,648.
  EXPECT_EQ(count(lavt, "text_encoder."), 108891648);
  // Decoder: conv3x3 (1024+512 -> 512), (512 -> 512) x5 with (512+256), (512+128) inputs, six
  // BN(512), 1x1 (512 -> 2).
  const std::int64_t h = 512;
  const std::int64_t decoder = 9 * h * (1536 + h + (h + 256) + h + (h + 128) + h) + 6 * 2 * h +
                               (2 * h + 2);
  EXPECT_EQ(count(lavt, "classifier."), decoder);
  // BERT layers 10 and 11 and the embeddings are not trained (the original's optimiser).
  for (const auto& p : lavt.named_parameters()) {
    const bool frozen = p.key().rfind("text_encoder.embeddings", 0) == 0 ||
                        p.key().rfind("text_encoder.encoder.layer.10.", 0) == 0 ||
                        p.key().rfind("text_encoder.encoder.layer.11.", 0) == 0;
    EXPECT_EQ(p.value().requires_grad(), !frozen) << p.key();
  }
  lavt.eval();
  torch::NoGradGuard no_grad;
  const auto out = lavt.forward(random_batch(1, 480, 20));
  EXPECT_EQ(out.logits.sizes(), (std::vector<std::int64_t>{1, 1, 120, 120}));
  EXPECT_TRUE(out.logits.isfinite().all().item<bool>());
}

TEST(Lavt, ConfigChecks) {
  EXPECT_NE(test::thrown_message<ConfigError>([] {
              LavtOptions::from_config(Config::defaults({"text.tokenizer=word"}));
            }).find("text.tokenizer: wordpiece"),
            std::string::npos);
  EXPECT_THROW(LavtOptions::from_config(Config::defaults(
                   {"text.tokenizer=wordpiece", "lavt.fusion_heads=[1, 1]"})),
               ConfigError);
}

TEST(BottomUpModel, TrainsLavtThroughTheSeam) {
  torch::manual_seed(0);
  const Config c = Config::defaults(
      {"model.kind=bottom_up", "text.tokenizer=wordpiece", "lavt.swin=nano", "lavt.window=4",
       "lavt.bert=tiny", "lavt.bert_train_layers=-1", "lavt.drop_path=0"});
  auto model = nn::build_model(c);
  auto batch = random_batch(2, 64, 8);
  batch.targets.zero_();
  batch.targets.narrow(2, 16, 24).narrow(3, 8, 30).fill_(1);  // a learnable region
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(3e-3));
  double first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    auto out = model->forward(batch, true);
    const auto loss = out.losses.at("seg");
    (step == 0 ? first : last) = loss.item<double>();
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  EXPECT_LT(last, first * 0.7);
  const auto out = model->forward(batch, false);
  EXPECT_EQ(out.probabilities.at("bottom_up").sizes(), (std::vector<std::int64_t>{2, 1, 64, 64}));
  EXPECT_TRUE(out.losses.empty());
  EXPECT_GT(out.seconds.at("bottom_up"), 0.0);
}

}  // namespace
}  // namespace wico::bottomup
