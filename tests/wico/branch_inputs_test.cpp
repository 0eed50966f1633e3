// A pair's branches read one frame but their own text and pixel statistics: the top-down branch
// (WordPiece, ImageNet) inside the CRIS pair (CLIP BPE, CLIP statistics) gets the same ids as its
// own loader would give and images equal to its own normalisation of the same pixels.
#include "wico/wico/branch_inputs.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "test_util.h"
#include "topdown/toy_batch.h"
#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/data/loader.h"
#include "wico/data/tokenizer.h"
#include "wico/data/tokenizer_config.h"
#include "wico/data/transforms.h"
#include "wico/wico/wico_model.h"

namespace wico::model {
namespace {

const std::string kTopDown = WICO_SOURCE_DIR "/configs/tiny/topdown.yaml";
const std::string kCris = WICO_SOURCE_DIR "/configs/tiny/cris.yaml";
const std::string kLavt = WICO_SOURCE_DIR "/configs/tiny/lavt.yaml";
const std::string kCrisPair = WICO_SOURCE_DIR "/configs/tiny/wico_cris_mattnet.yaml";

// Two 64x64 images with their sentences and MAttNet negatives, in the pair's CLIP encoding.
data::Batch clip_batch(const data::Normalization& norm) {
  torch::manual_seed(3);
  data::Batch b = test::toy_instance_batch();
  const std::vector<std::string> sentences = {"the red ball on the left", "man in a blue shirt"};
  const std::vector<std::string> negatives = {"green cube", ""};  // the second has none
  const at::Tensor pixels = torch::rand({2, 3, 64, 64});  // RGB on [0, 1]
  b.images = (pixels - torch::tensor({norm.mean[0], norm.mean[1], norm.mean[2]}).view({1, 3, 1, 1})) /
             torch::tensor({norm.std[0], norm.std[1], norm.std[2]}).view({1, 3, 1, 1});
  const auto clip = data::make_tokenizer_from_config(Config::load(kCris));
  b.token_ids = torch::empty({2, clip->max_length()}, torch::kLong);
  b.attention_mask = torch::empty({2, clip->max_length()}, torch::kLong);
  for (int i = 0; i < 2; ++i) {
    b.info[i].sentence = sentences[i];
    b.info[i].negative_sentence = negatives[i];
    const data::Encoding e = clip->encode(sentences[i]);
    b.token_ids[i] = torch::tensor(e.ids);
    b.attention_mask[i] = torch::tensor(e.attention_mask);
  }
  b.negative_token_ids = b.token_ids.clone();
  b.negative_attention_mask = b.attention_mask.clone();
  b.negative_valid = torch::tensor({true, false});
  return b;
}

TEST(BranchInputs, OwnTokenizerAndStatisticsInsideThePair) {
  const Config pair = Config::load(kCrisPair);
  const Config top_down = Config::load(kTopDown);
  const BranchInputs inputs(top_down, pair, "top-down");
  EXPECT_TRUE(inputs.retokenises());
  EXPECT_TRUE(inputs.renormalises());
  const data::Batch batch = clip_batch(data::normalization("clip"));
  const data::Batch own = inputs.adapt(batch);

  // The same pixels normalised with ImageNet's statistics.
  const data::Normalization clip = data::normalization("clip"), imagenet = data::normalization("imagenet");
  const auto stats = [](const data::Normalization& n) {
    return std::make_pair(torch::tensor({n.mean[0], n.mean[1], n.mean[2]}).view({1, 3, 1, 1}),
                          torch::tensor({n.std[0], n.std[1], n.std[2]}).view({1, 3, 1, 1}));
  };
  const auto [clip_mean, clip_std] = stats(clip);
  const auto [net_mean, net_std] = stats(imagenet);
  const at::Tensor pixels = batch.images * clip_std + clip_mean;
  EXPECT_LT((own.images - (pixels - net_mean) / net_std).abs().max().item<double>(), 1e-5);

  // WordPiece ids of the sentences, and of the negatives (a sample without one repeats its own
  // sentence, as the loader does).
  const auto wordpiece = data::make_tokenizer_from_config(top_down);
  for (int i = 0; i < 2; ++i) {
    const data::Encoding e = wordpiece->encode(batch.info[i].sentence);
    EXPECT_TRUE(torch::equal(own.token_ids[i], torch::tensor(e.ids))) << i;
    EXPECT_TRUE(torch::equal(own.attention_mask[i], torch::tensor(e.attention_mask))) << i;
  }
  EXPECT_TRUE(torch::equal(own.negative_token_ids[0], torch::tensor(wordpiece->encode("green cube").ids)));
  EXPECT_TRUE(torch::equal(own.negative_token_ids[1], own.token_ids[1]));
  EXPECT_EQ(own.token_ids.size(1), wordpiece->max_length());
  // Everything else is the pair's.
  EXPECT_TRUE(own.targets.is_same(batch.targets));
  EXPECT_TRUE(own.candidate_masks.is_same(batch.candidate_masks));

  // CRIS in its own pair reads the batch as it is.
  const BranchInputs cris(Config::load(kCris), pair, "cris");
  EXPECT_TRUE(cris.identity());
  EXPECT_TRUE(cris.adapt(batch).images.is_same(batch.images));
}

TEST(BranchInputs, GeometryMustAgreeAndWordVocabulariesMustBeSaved) {
  const Config pair = Config::load(kCrisPair);
  const auto size = test::thrown_message<ConfigError>(
      [&] { BranchInputs b(Config::load(kTopDown, {"data.input_size=96"}), pair, "wico.branches[0] (td)"); });
  EXPECT_NE(size.find("wico.branches[0] (td) sets data.input_size unlike the pair"), std::string::npos) << size;
  const auto resize = test::thrown_message<ConfigError>(
      [&] { BranchInputs b(Config::load(kCris, {"data.resize=letterbox"}), pair, "cris"); });
  EXPECT_NE(resize.find("sets data.resize unlike the pair"), std::string::npos) << resize;
  const auto word = test::thrown_message<ConfigError>(
      [&] { BranchInputs b(Config::load(kTopDown, {"text.tokenizer=word"}), pair, "td"); });
  EXPECT_NE(word.find("needs the saved list (text.vocab)"), std::string::npos) << word;
}

// The tiny CRIS pair end to end at 64x64: CFI reads CRIS's 16-channel Z_v, GSI both branches,
// the CRIS branch answers at its own threshold (0.35), and every loss is finite.
TEST(BranchInputs, CrisPairRunsWithCfiAndGsi) {
  torch::manual_seed(0);
  const Config config = Config::load(
      kCrisPair,
      {"wico.branches=[" + kTopDown + ", " + kCris + "]",
       "wico.branch_set=[data.input_size=64, mask2former.encoder_layers=1, "
       "mask2former.decoder_layers=2, mask2former.queries=6, mask2former.points=256, "
       "top_down.top_k=4, cris.width=8, cris.word_dim=32, cris.text_width=32, 'cris.fpn_out=[16, 32, 64]', "
       "cris.decoder_ffn=32]",
       "data.input_size=64", "wico.cfi_dim=16", "wico.cfi_layers=1", "wico.cfi_heads=2",
       "wico.cfi_ffn=32", "wico.score_hidden=16", "train.init=[]"});
  WicoModel model(config);
  const data::Batch batch = clip_batch(data::normalization("clip"));
  const nn::RisOutput out = model.forward(batch, true);
  for (const char* name : {"top_down", "bottom_up", "fused"}) {
    ASSERT_TRUE(out.probabilities.count(name)) << name;
    EXPECT_EQ(out.probabilities.at(name).sizes(), (torch::IntArrayRef{2, 1, 64, 64})) << name;
  }
  for (const auto& [name, loss] : out.losses) EXPECT_TRUE(std::isfinite(loss.item<double>())) << name;
  EXPECT_EQ(out.losses.count("bottom_up.seg"), 1u);
  EXPECT_EQ(out.losses.count("cfi_ce"), 1u);
  EXPECT_DOUBLE_EQ(model.threshold("bottom_up"), 0.35);
  EXPECT_DOUBLE_EQ(model.threshold("top_down"), 0.5);
}

}  // namespace
}  // namespace wico::model
