#include "wico/data/loader.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "data/synthetic_suite.h"
#include "test_util.h"
#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/data/synthetic.h"
#include "wico/data/tokenizer.h"
#include "wico/data/tokenizer_config.h"

namespace fs = std::filesystem;

namespace wico::data {
namespace {

// One small synthetic set shared by the tests of this file.
class LoaderTest : public test_support::SyntheticSuite {
 protected:
  static LoaderOptions options(int workers, bool shuffle) {
    LoaderOptions o;
    o.batch_size = 4;
    o.workers = workers;
    o.prefetch = 2;
    o.shuffle = shuffle;
    o.seed = 9;
    o.input_size = 64;
    return o;
  }
  static std::vector<std::int64_t> sent_ids(Loader& loader, std::int64_t epoch) {
    loader.start_epoch(epoch);
    std::vector<std::int64_t> ids;
    while (auto b = loader.next()) {
      for (const auto& i : b->info) ids.push_back(i.sent_id);
    }
    return ids;
  }
};

// VLT's input (data.resize paste, data.normalize vlt): pixels / 255 inside the pasted image and
// exactly 0.5 around it (a byte could only give 127/255 or 128/255), the target pasted on zeros.
TEST(Collate, PasteLetterboxBorderIsExactlyHalf) {
  Sample s;
  s.sentence = "the man";
  s.image = cv::Mat3b(20, 40, cv::Vec3b(10, 20, 200));  // BGR
  s.target = cv::Mat1b(20, 40, std::uint8_t{1});
  LoaderOptions o;
  o.input_size = 32;
  o.paste = true;
  o.norm = normalization("vlt");
  TokenizerOptions t;
  t.vocab_path = (fs::path(WICO_TEST_DATA_DIR) / "glove" / "tiny.txt").string();
  const auto tokenizer = make_tokenizer("glove", t);
  std::vector<Sample> samples{s};
  const Batch b = collate(std::move(samples), *tokenizer, o);
  // 40x20 -> 32x16 at rows 8..23.
  ASSERT_EQ(b.images.sizes(), (at::IntArrayRef{1, 3, 32, 32}));
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(b.images[0][c][0][0].item<float>(), 0.5f);
    EXPECT_EQ(b.images[0][c][31][31].item<float>(), 0.5f);
  }
  EXPECT_NEAR(b.images[0][0][16][16].item<float>(), 200.0f / 255.0f, 1e-6);  // R
  EXPECT_NEAR(b.images[0][2][8][0].item<float>(), 10.0f / 255.0f, 1e-6);     // B
  EXPECT_EQ(b.targets[0][0][7].sum().item<float>(), 0.0f);
  EXPECT_EQ(b.targets[0][0][8].sum().item<float>(), 32.0f);
  EXPECT_EQ(b.token_ids[0][0].item<std::int64_t>(), 1);  // "the"
}

TEST(LoaderOptions, ReadsResizeFilterAndMaskRule) {
  const LoaderOptions defaults = LoaderOptions::from_config(Config::defaults());
  EXPECT_EQ(defaults.resize_filter, ResizeFilter::kOpenCv);
  EXPECT_EQ(defaults.mask_rule, MaskRule::kUnion);
  const LoaderOptions lavt = LoaderOptions::from_config(
      Config::defaults({"data.resize_filter=pil", "data.mask_rule=lavt"}));
  EXPECT_EQ(lavt.resize_filter, ResizeFilter::kPil);
  EXPECT_EQ(lavt.mask_rule, MaskRule::kLavt);
  EXPECT_THROW(LoaderOptions::from_config(
                   Config::defaults({"data.resize_filter=pil", "data.resize=letterbox"})),
               ConfigError);
  EXPECT_THROW(Config::defaults({"data.mask_rule=sum"}), ConfigError);
  EXPECT_THROW(Config::defaults({"data.resize_filter=cubic"}), ConfigError);
}

TEST_F(LoaderTest, PilFilterAndLavtRuleReachTheBatch) {
  // Both options travel from LoaderOptions to the batch: the image and target are Pillow's
  // resizes of the sample the dataset builds with the lavt rule.
  RefDataset eval(*data_, "train", RefDataset::Mode::kEvaluation);
  LoaderOptions o = options(0, false);
  o.resize_filter = ResizeFilter::kPil;
  o.mask_rule = MaskRule::kLavt;
  Loader loader(eval, *tokenizer_, o);
  loader.start_epoch(0);
  const auto b = loader.next();
  ASSERT_TRUE(b);
  const Sample s = eval.load(0, o.seed, 0, MaskRule::kLavt);
  EXPECT_EQ(b->info[0].plan.filter, ResizeFilter::kPil);
  const cv::Mat3b expected = pil_resize_bilinear(s.image, cv::Size(64, 64));
  EXPECT_TRUE(at::allclose(b->images[0], image_to_tensor(expected, o.norm), 1e-5, 1e-5));
  const ResizePlan opencv = plan_resize(s.image.cols, s.image.rows, 64, false);
  EXPECT_GT(cv::norm(resize_image(s.image, opencv, o.norm), expected, cv::NORM_INF), 0.0);
  const cv::Mat1b target = pil_resize_nearest(s.target, cv::Size(64, 64));
  EXPECT_TRUE(at::equal(b->targets[0][0], mask_to_tensor(target)));
}

TEST_F(LoaderTest, EvaluationHasOneSamplePerSentence) {
  RefDataset eval(*data_, "train", RefDataset::Mode::kEvaluation);
  std::size_t sentences = 0;
  for (const Ref* r : data_->refs("train")) sentences += r->sentences.size();
  EXPECT_EQ(eval.size(), sentences);
  RefDataset train(*data_, "train", RefDataset::Mode::kTrainSample);
  EXPECT_EQ(train.size(), data_->refs("train").size());
}

TEST_F(LoaderTest, TrainingDrawsOneSentencePerRefPerEpochDeterministically) {
  RefDataset train(*data_, "train", RefDataset::Mode::kTrainSample);
  std::set<std::size_t> drawn;
  for (std::int64_t epoch = 0; epoch < 20; ++epoch) {
    for (std::size_t i = 0; i < train.size(); ++i) {
      EXPECT_EQ(train.item(i, 1, epoch), train.item(i, 1, epoch));
    }
    drawn.insert(train.item(0, 1, epoch).second);
  }
  if (train.item(0, 1, 0).first->sentences.size() > 1) {
    EXPECT_GT(drawn.size(), 1u);
  }
}

// Stage 1 of the top-down protocol trains the extractor on images, not refs: one sample per image
// of instances.json that has annotations, the val/test images left out unless asked for.
TEST_F(LoaderTest, InstanceImagesAreOneSamplePerTrainingImage) {
  const RefDataset kept(*data_, "", RefDataset::Mode::kInstanceImages, true);
  const RefDataset all(*data_, "", RefDataset::Mode::kInstanceImages, false);
  EXPECT_EQ(all.size(), data_->num_images());
  EXPECT_EQ(kept.size(), data_->image_ids({"train"}).size());
  EXPECT_LT(kept.size(), all.size());
  std::set<std::int64_t> seen;
  for (std::size_t i = 0; i < kept.size(); ++i) {
    const Sample s = kept.load(i, 0, 0);
    EXPECT_TRUE(s.sentence.empty());
    EXPECT_TRUE(s.negative_sentence.empty());
    EXPECT_EQ(s.candidates.size(), data_->annotations_of_image(s.image_id).size());
    EXPECT_EQ(s.candidates[static_cast<std::size_t>(s.target_index)].ann_id, s.ann_id);
    seen.insert(s.image_id);
  }
  EXPECT_EQ(seen.size(), kept.size());
  const auto train_images = data_->image_ids({"train"});
  EXPECT_EQ(std::vector<std::int64_t>(seen.begin(), seen.end()), train_images);
  // A batch of them is a normal batch (empty sentences tokenise to the special tokens).
  Loader loader(kept, *tokenizer_, options(0, true));
  loader.start_epoch(0);
  const auto b = loader.next();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->size(), 4);
  EXPECT_FALSE(b->negative_token_ids.defined());
}

// Mask2Former's LSJ on instance images: S x S batches padded with 128, boxes from the jittered
// masks, draws deterministic in (seed, epoch, index); refused on referring samples.
TEST_F(LoaderTest, LsjJittersInstanceImagesDeterministically) {
  RefDataset images(*data_, "", RefDataset::Mode::kInstanceImages, true);
  images.set_lsj(0.1, 2.0);
  RefDataset refs(*data_, "train", RefDataset::Mode::kTrainSample);
  EXPECT_NE(test::thrown_message<ConfigError>([&] { refs.set_lsj(0.1, 2.0); }).find("instance_images"),
            std::string::npos);
  LoaderOptions o = options(0, false);
  Loader loader(images, *tokenizer_, o);
  loader.start_epoch(0);
  const auto a = loader.next();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->images.sizes(), (at::IntArrayRef{4, 3, 64, 64}));
  loader.start_epoch(0);
  const auto again = loader.next();
  EXPECT_TRUE(at::equal(a->images, again->images));
  loader.start_epoch(1);
  EXPECT_FALSE(at::equal(a->images, loader.next()->images));
  std::set<bool> flips;
  bool padded = false;
  const auto norm = normalization("imagenet");
  for (std::int64_t i = 0; i < 4; ++i) {
    const auto& plan = a->info[i].plan;
    EXPECT_EQ(plan.kind, ResizeKind::kLsj);
    flips.insert(plan.flip);
    if (plan.resized_height < 64) {
      // Below the resized image: FixedSizeCrop's pad value 128, normalised.
      const float r = (128.0f / 255.0f - norm.mean[0]) / norm.std[0];
      EXPECT_NEAR(a->images[i][0][63][0].item<float>(), r, 1e-5);
      padded = true;
    }
    for (std::int64_t n = 0; n < a->candidate_valid.size(1); ++n) {
      if (!a->candidate_valid[i][n].item<bool>()) continue;
      const at::Tensor m = a->candidate_masks[i][n];
      ASSERT_GT(m.sum().item<std::int64_t>(), 0) << "an empty instance was kept";
      const at::Tensor ys = m.any(1).nonzero(), xs = m.any(0).nonzero();
      EXPECT_EQ(a->candidate_boxes[i][n][0].item<float>(), xs.min().item<std::int64_t>());
      EXPECT_EQ(a->candidate_boxes[i][n][3].item<float>(), ys.max().item<std::int64_t>() + 1);
    }
  }
  EXPECT_TRUE(padded || flips.size() == 2);  // something jittered visibly
}

// shortest_edge: not square, the canvas padded to the divisibility, 0 outside the image after
// normalising, and predictions map back from the canvas.
TEST_F(LoaderTest, ShortestEdgeBatchesArePaddedCanvases) {
  RefDataset eval(*data_, "val", RefDataset::Mode::kEvaluation);
  LoaderOptions o = options(0, false);
  o.shortest_edge = true;
  o.min_size = 50;
  o.max_size = 90;
  o.size_divisibility = 32;
  o.resize_filter = ResizeFilter::kPil;
  Loader loader(eval, *tokenizer_, o);
  loader.start_epoch(0);
  const auto b = loader.next();
  ASSERT_TRUE(b);
  const auto& plan = b->info[0].plan;
  EXPECT_EQ(b->images.size(2), plan.input_height());
  EXPECT_EQ(b->images.size(3), plan.input_width());
  EXPECT_EQ(plan.input_height() % 32, 0);
  EXPECT_EQ(plan.input_width() % 32, 0);
  EXPECT_EQ(std::min(plan.resized_width, plan.resized_height), 50);
  if (plan.resized_width < plan.input_width()) {
    EXPECT_EQ(b->images[0].narrow(2, plan.resized_width, plan.input_width() - plan.resized_width)
                  .abs().sum().item<float>(), 0.0f);
  }
  EXPECT_EQ(b->candidate_masks.size(2), plan.input_height());
  const cv::Mat1f back = map_back(cv::Mat1f(plan.input_height(), plan.input_width(), 1.0f), plan);
  EXPECT_EQ(back.rows, plan.height);
  EXPECT_EQ(back.cols, plan.width);
}

TEST_F(LoaderTest, BatchesHaveTheDocumentedShapes) {
  RefDataset eval(*data_, "train", RefDataset::Mode::kEvaluation);
  Loader loader(eval, *tokenizer_, options(2, false));
  loader.start_epoch(0);
  auto b = loader.next();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->images.sizes(), (at::IntArrayRef{4, 3, 64, 64}));
  EXPECT_EQ(b->targets.sizes(), (at::IntArrayRef{4, 1, 64, 64}));
  EXPECT_EQ(b->token_ids.sizes(), (at::IntArrayRef{4, 20}));
  EXPECT_EQ(b->attention_mask.sizes(), (at::IntArrayRef{4, 20}));
  EXPECT_EQ(b->token_ids[0][0].item<std::int64_t>(), 101);  // [CLS]
  EXPECT_EQ(b->candidate_masks.scalar_type(), at::kByte);
  // The image tensor is the same as the reference conversion of the same resized image.
  {
    RefDataset again(*data_, "train", RefDataset::Mode::kEvaluation);
    const Sample s = again.load(0, 0, 0);
    const auto expected = image_to_tensor(
        resize_image(s.image, b->info[0].plan, normalization("imagenet")), normalization("imagenet"));
    EXPECT_TRUE(at::allclose(b->images[0], expected, 1e-5, 1e-5));
  }
  const auto N = b->candidate_masks.size(1);
  EXPECT_EQ(b->candidate_masks.sizes(), (at::IntArrayRef{4, N, 64, 64}));
  EXPECT_EQ(b->candidate_boxes.sizes(), (at::IntArrayRef{4, N, 4}));
  for (std::int64_t i = 0; i < 4; ++i) {
    // The referred candidate's mask is the target mask.
    const auto t = b->target_index[i].item<std::int64_t>();
    EXPECT_TRUE(b->candidate_valid[i][t].item<bool>());
    EXPECT_TRUE(at::equal(b->candidate_masks[i][t].to(at::kFloat), b->targets[i][0]));
    EXPECT_GT(b->targets[i].sum().item<float>(), 0.0f);
    EXPECT_EQ(b->info[i].target.rows, b->info[i].plan.height);
    // Classes are contiguous indices, not category ids (the synthetic ids 1..6 -> 0..5).
    const std::int64_t category = data_->annotation(b->info[i].ann_id).category_id;
    EXPECT_EQ(b->candidate_classes[i][t].item<std::int64_t>(), data_->class_index(category));
    EXPECT_EQ(data_->class_index(category), category - 1);
  }
}

TEST_F(LoaderTest, OrderDependsOnTheSeedNotOnTheWorkerCount) {
  RefDataset train(*data_, "train", RefDataset::Mode::kTrainSample);
  Loader inline_loader(train, *tokenizer_, options(0, true));
  Loader one(train, *tokenizer_, options(1, true));
  Loader three(train, *tokenizer_, options(3, true));
  const auto a = sent_ids(inline_loader, 2);
  EXPECT_EQ(a, sent_ids(one, 2));
  EXPECT_EQ(a, sent_ids(three, 2));
  EXPECT_EQ(a.size(), train.size());
  EXPECT_NE(a, sent_ids(three, 3));  // another epoch, another order
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end());  // each ref once
}

TEST_F(LoaderTest, StopsCleanlyMidEpochAndRestarts) {
  RefDataset eval(*data_, "train", RefDataset::Mode::kEvaluation);
  {
    Loader loader(eval, *tokenizer_, options(3, false));
    loader.start_epoch(0);
    ASSERT_TRUE(loader.next());
    loader.start_epoch(1);  // drop the rest, start over
    std::int64_t batches = 0;
    while (loader.next()) ++batches;
    EXPECT_EQ(batches, loader.batches_per_epoch());
    loader.start_epoch(2);
    ASSERT_TRUE(loader.next());
  }  // destroyed with work in flight: must join without hanging
  SUCCEED();
}

TEST_F(LoaderTest, BadImagesStopWithTheFileOrAreSkippedAndCounted) {
  test::TempDir copy;
  fs::copy(dir_->path(), copy.path(), fs::copy_options::recursive);
  const ReferDataset data = ReferDataset::load(copy.path(), "refcoco", "unc");
  RefDataset eval(data, "train", RefDataset::Mode::kEvaluation);
  const auto [ref, sentence] = eval.item(0, 0, 0);
  const auto bad = data.image_path(data.image(ref->image_id));
  copy.write(fs::relative(bad, copy.path()).string(), "this is not a JPEG");
  {
    Loader loader(eval, *tokenizer_, options(2, false));
    loader.start_epoch(0);
    try {
      while (loader.next()) {
      }
      FAIL() << "a corrupt image went unnoticed";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr(bad.filename().string()));
      EXPECT_THAT(e.what(), ::testing::HasSubstr("corrupt"));
    }
  }
  auto o = options(2, false);
  o.skip_bad_samples = true;
  Loader loader(eval, *tokenizer_, o);
  loader.start_epoch(0);
  std::int64_t samples = 0;
  while (auto b = loader.next()) samples += b->size();
  EXPECT_GT(loader.skipped(), 0);
  EXPECT_EQ(samples + loader.skipped(), static_cast<std::int64_t>(eval.size()));
}

TEST_F(LoaderTest, RanksShareOneShuffleAndSeeEachSampleOncePerEpoch) {
  const RefDataset d(*data_, "val", RefDataset::Mode::kEvaluation);
  LoaderOptions whole = options(0, true);
  whole.batch_size = 1;
  Loader one(d, *tokenizer_, whole);
  const auto all = sent_ids(one, 3);
  for (int world : {2, 3}) {
    std::vector<std::vector<std::int64_t>> per_rank;
    for (int rank = 0; rank < world; ++rank) {
      LoaderOptions o = whole;
      o.rank = rank;
      o.world_size = world;
      Loader l(d, *tokenizer_, o);
      EXPECT_EQ(l.samples_per_epoch(), static_cast<std::int64_t>((d.size() + world - 1) / world));
      per_rank.push_back(sent_ids(l, 3));
      ASSERT_EQ(per_rank.back().size(), per_rank[0].size());
    }
    // Interleaved, the ranks' samples are the single-process order, wrapped at the end.
    for (std::size_t i = 0; i < per_rank[0].size() * world; ++i) {
      EXPECT_EQ(per_rank[i % world][i / world], all[i % all.size()]) << "world " << world;
    }
  }
}

TEST_F(LoaderTest, StartsAnEpochAtAGivenBatchWithoutLoadingTheOnesBefore) {
  const RefDataset d(*data_, "train", RefDataset::Mode::kTrainSample);
  Loader l(d, *tokenizer_, options(1, true));
  const auto all = sent_ids(l, 2);
  l.start_epoch(2, 2);
  std::vector<std::int64_t> rest;
  while (auto b = l.next()) {
    for (const auto& i : b->info) rest.push_back(i.sent_id);
  }
  EXPECT_EQ(rest, std::vector<std::int64_t>(all.begin() + 8, all.end()));
  EXPECT_THROW(l.start_epoch(2, l.batches_per_epoch() + 1), Error);
}

}  // namespace
}  // namespace wico::data
