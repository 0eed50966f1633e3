// MAttNet's data extras: the attribute vocabulary (build_att_vocab's top K by refs mentioning a
// word, the union over a ref's sentences, get_attribute_weights), the lexicon file, and the
// language negatives of sample_neg_ids (another ref of the same image, same category with
// probability 0.3) through the loader into the batch.
#include "wico/data/attributes.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "data/synthetic_suite.h"
#include "test_util.h"
#include "wico/core/error.h"
#include "wico/data/dataset.h"
#include "wico/data/loader.h"
#include "wico/data/synthetic.h"
#include "wico/data/tokenizer.h"
#include "wico/data/tokenizer_config.h"

namespace wico::data {
namespace {

Ref make_ref(std::int64_t id, std::vector<std::string> raw) {
  Ref r;
  r.ref_id = id;
  for (auto& text : raw) {
    RefSentence s;
    s.raw = text;
    r.sentences.push_back(s);
  }
  return r;
}

TEST(AttributeVocabulary, TopWordsByRefsMentioningThemWithLabelsPerRef) {
  const std::vector<Ref> refs = {
      make_ref(1, {"the red ball", "Red one, on the left"}),  // "red" counts once for this ref
      make_ref(2, {"big red square"}),
      make_ref(3, {"small blue thing", "the blue one"}),
      make_ref(4, {"a big striped cat"}),
      make_ref(5, {"left"})};
  std::vector<const Ref*> pointers;
  for (const auto& r : refs) pointers.push_back(&r);
  const std::vector<std::string> lexicon = {"red", "blue", "big", "small", "striped", "green"};
  const AttributeVocabulary v = AttributeVocabulary::build(pointers, 3, lexicon);
  // red 2, big 2, blue 1, small 1, striped 1; ties alphabetical: big, red, then blue.
  EXPECT_EQ(v.words(), (std::vector<std::string>{"big", "red", "blue"}));
  EXPECT_EQ(v.counts(), (std::vector<std::int64_t>{2, 2, 1}));
  EXPECT_EQ(v.labels(refs[0]), (std::vector<std::int64_t>{1}));
  EXPECT_EQ(v.labels(refs[1]), (std::vector<std::int64_t>{0, 1}));
  EXPECT_EQ(v.labels(refs[2]), (std::vector<std::int64_t>{2}));  // "small" fell outside the top 3
  EXPECT_TRUE(v.labels(refs[4]).empty());
  // Weights: 1/sqrt(count) rescaled to [1, 10]: the rarer word weighs 10, the common ones 1.
  EXPECT_TRUE(at::allclose(v.loss_weights(), at::tensor({1.0f, 1.0f, 10.0f})));
  // Equal counts would make the original divide by zero; we give equal weights.
  EXPECT_TRUE(at::equal(attribute_loss_weights(at::tensor({3, 3}, at::kLong)), at::ones({2})));
  // The hand-computed case: counts 4, 1, 16 -> 1/sqrt: .5, 1, .25 -> (w - .25) / .75 * 9 + 1.
  EXPECT_TRUE(at::allclose(attribute_loss_weights(at::tensor({4, 1, 16}, at::kLong)),
                           at::tensor({4.0f, 10.0f, 1.0f})));
}

TEST(AttributeVocabulary, LexiconFilesAreReadOrRejectedWithTheLine) {
  test::TempDir dir;
  const auto good = dir.path() / "lexicon.txt";
  std::ofstream(good) << "# colours\nRed\n  blue  \n\nwooden # material\n";
  EXPECT_EQ(read_attribute_lexicon(good), (std::vector<std::string>{"red", "blue", "wooden"}));
  const auto bad = dir.path() / "bad.txt";
  std::ofstream(bad) << "red\nlight blue\n";
  const std::string message = test::thrown_message<Error>([&] { read_attribute_lexicon(bad); });
  EXPECT_NE(message.find("bad.txt:2"), std::string::npos) << message;
  EXPECT_NE(test::thrown_message<Error>([&] { read_attribute_lexicon(dir.path() / "none.txt"); })
                .find("none.txt"),
            std::string::npos);
  // The built-in lexicon holds the synthetic set's colour words.
  const auto& builtin = default_attribute_lexicon();
  for (const char* w : {"red", "green", "blue", "yellow", "purple", "orange", "big", "small"}) {
    EXPECT_NE(std::find(builtin.begin(), builtin.end(), w), builtin.end()) << w;
  }
}

class NegativesTest : public test_support::SyntheticSuite {};

TEST_F(NegativesTest, LanguageNegativesAreOtherRefsOfTheImageSameCategoryAtTheRatio) {
  const RefDataset train(*data_, "train", RefDataset::Mode::kTrainSample);
  std::int64_t same = 0, drawn = 0, with_same = 0, same_when_possible = 0;
  for (std::size_t i = 0; i < train.size(); ++i) {
    const Ref* ref = train.item(i, 0, 0).first;
    bool has_same = false, has_other = false;
    for (const Ref* r : data_->refs("train")) {
      if (r->image_id != ref->image_id || r->ann_id == ref->ann_id) continue;
      (r->category_id == ref->category_id ? has_same : has_other) = true;
    }
    for (std::int64_t epoch = 0; epoch < 200; ++epoch) {
      const Ref* negative = train.negative_ref(i, 3, epoch);
      ASSERT_NE(negative, nullptr);
      EXPECT_NE(negative->ann_id, ref->ann_id);
      EXPECT_EQ(negative, train.negative_ref(i, 3, epoch)) << "not deterministic";
      // Without an other-category ref on the image, a draw past the ratio falls back to any
      // ref, as the original's.
      if (has_other) EXPECT_EQ(negative->image_id, ref->image_id) << "ref " << ref->ref_id;
      if (negative->image_id == ref->image_id) EXPECT_TRUE(has_same || has_other);
      if (has_same && has_other) {
        ++with_same;
        same_when_possible += negative->category_id == ref->category_id;
      }
      if (!has_same && has_other) EXPECT_NE(negative->category_id, ref->category_id);
      ++drawn;
      same += negative->category_id == ref->category_id;
    }
  }
  ASSERT_GT(with_same, 400) << "the synthetic set should have images with same-category refs";
  EXPECT_NEAR(static_cast<double>(same_when_possible) / static_cast<double>(with_same), 0.3, 0.05);
  EXPECT_GT(drawn, 0);
}

TEST_F(NegativesTest, TrainingBatchesCarryNegativesAndAttributesEvaluationBatchesDoNot) {
  RefDataset train(*data_, "train", RefDataset::Mode::kTrainSample);
  auto vocabulary = std::make_shared<AttributeVocabulary>(AttributeVocabulary::build(
      data_->refs("train"), 50, default_attribute_lexicon()));
  ASSERT_GE(vocabulary->size(), 6u);  // the six colours at least
  train.set_attributes(vocabulary);
  LoaderOptions o;
  o.batch_size = 4;
  o.workers = 0;
  o.input_size = 32;
  Loader loader(train, *tokenizer_, o);
  loader.start_epoch(0);
  const auto b = loader.next();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->negative_token_ids.sizes(), b->token_ids.sizes());
  EXPECT_EQ(b->negative_attention_mask.sizes(), b->token_ids.sizes());
  ASSERT_EQ(b->negative_valid.numel(), 4);
  const auto A = static_cast<std::int64_t>(vocabulary->size());
  EXPECT_EQ(b->attribute_labels.sizes(), (at::IntArrayRef{4, A}));
  EXPECT_TRUE(at::equal(b->attribute_weights, vocabulary->loss_weights()));
  for (std::int64_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(b->negative_valid[i].item<bool>());
    const Sample s = train.load(static_cast<std::size_t>(i), o.seed, 0);
    const Encoding expected = tokenizer_->encode(s.negative_sentence);
    EXPECT_TRUE(at::equal(b->negative_token_ids[i], at::tensor(expected.ids, at::kLong)));
    // The labels are the ref's attribute words: the colour it is described by is among them.
    const Ref& ref = *train.item(static_cast<std::size_t>(i), o.seed, 0).first;
    const auto labels = vocabulary->labels(ref);
    EXPECT_EQ(b->attribute_labels[i].sum().item<float>(), static_cast<float>(labels.size()));
    for (auto a : labels) EXPECT_EQ(b->attribute_labels[i][a].item<float>(), 1.0f);
  }
  RefDataset eval(*data_, "val", RefDataset::Mode::kEvaluation);
  Loader eval_loader(eval, *tokenizer_, o);
  eval_loader.start_epoch(0);
  const auto e = eval_loader.next();
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->negative_token_ids.defined());
  EXPECT_FALSE(e->attribute_labels.defined());
}

}  // namespace
}  // namespace wico::data
