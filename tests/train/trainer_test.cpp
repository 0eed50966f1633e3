#include "wico/train/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tiny_model.h"
#include "wico/core/error.h"
#include "wico/data/synthetic.h"
#include "wico/train/launcher.h"

namespace wico::train {
namespace {

namespace fs = std::filesystem;

class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_dir = new test::TempDir();
    data::generate_synthetic({data_dir->path(), 30, 3, 2, false});
    test::register_tiny_test_model();
  }
  static void TearDownTestSuite() {
    delete data_dir;
    data_dir = nullptr;
  }
  void SetUp() override {
    test::TinyRisModel::nan_loss_at_step = 0;
    test::TinyRisModel::dropout_p = 0.2;
  }

  // A tiny run: 48x48 inputs, batch 8 (about 11 steps per epoch), word tokenizer, no validation unless asked.
  Config config(std::vector<std::string> extra = {}) const {
    std::vector<std::string> o = {"model.kind=test_tiny",
                                  "data.root=" + data_dir->path().string(),
                                  "data.input_size=48",
                                  "data.batch_size=8",
                                  "data.workers=1",
                                  "runtime.device=cpu",
                                  "train.iterations=12",
                                  "train.lr=0.01",
                                  "train.val_every=-1",
                                  "train.log_every=2"};
    o.insert(o.end(), extra.begin(), extra.end());
    return Config::defaults(o);
  }
  fs::path run(const std::string& name) const { return runs.path() / name; }

  static std::map<std::string, at::Tensor> final_weights(const fs::path& run_dir) {
    return Checkpoint::read(*CheckpointDir(run_dir / "checkpoints").latest()).model();
  }

  static inline test::TempDir* data_dir = nullptr;
  test::TempDir runs;
};

void expect_identical(const std::map<std::string, at::Tensor>& a,
                      const std::map<std::string, at::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
}

TEST_F(TrainerTest, StopAndResumeGivesBitIdenticalParametersToAStraightRun) {
  torch::manual_seed(0);
  Trainer straight(config({"train.iterations=20"}), run("straight"), false);
  const TrainResult s = straight.run();
  EXPECT_EQ(s.state.iteration, 20);
  EXPECT_EQ(s.stopped_by_signal, 0);

  // Same config, interrupted after step 16 (in the second epoch of 14 steps) (a stop request, as SIGTERM gives) then resumed.
  torch::manual_seed(0);
  Trainer first(config({"train.iterations=20"}), run("resumed"), false);
  first.on_step([](std::int64_t it) {
    if (it == 16) std::raise(SIGTERM);
  });
  const TrainResult r1 = first.run();
  EXPECT_EQ(r1.stopped_by_signal, SIGTERM);
  EXPECT_EQ(r1.state.iteration, 16);
  EXPECT_EQ(r1.state.epoch, 1);
  EXPECT_EQ(r1.state.batch_in_epoch, 2);
  torch::manual_seed(123);  // resume must not depend on the process's generator
  Trainer second(config({"train.iterations=20"}), run("resumed"), true);
  const TrainResult r2 = second.run();
  EXPECT_EQ(r2.state.iteration, 20);
  expect_identical(final_weights(run("straight")), final_weights(run("resumed")));
}

TEST_F(TrainerTest, ResumeWithAnotherConfigNamesTheKeys) {
  Trainer t(config({"train.iterations=2"}), run("a"), false);
  t.run();
  Trainer other(config({"train.iterations=2", "train.lr=0.5"}), run("a"), true);
  const std::string m = test::thrown_message<ConfigError>([&] { other.run(); });
  EXPECT_NE(m.find("train.lr: 0.01 -> 0.5"), std::string::npos) << m;
  Trainer none(config(), run("empty"), true);
  EXPECT_NE(test::thrown_message<Error>([&] { none.run(); }).find("has no checkpoint"),
            std::string::npos);
}

TEST_F(TrainerTest, NonFiniteLossStopsNamingStepAndPartOrIsSkipped) {
  test::TinyRisModel::nan_loss_at_step = 3;
  Trainer t(config({"train.checkpoint_every=1"}), run("nan"), false);
  const std::string m = test::thrown_message<Error>([&] { t.run(); });
  EXPECT_NE(m.find("non-finite values at step 3"), std::string::npos) << m;
  EXPECT_NE(m.find("seg=nan"), std::string::npos) << m;
  // Steps 1 and 2 were checkpointed; nothing from step 3 was.
  const auto saved = CheckpointDir(run("nan") / "checkpoints").list();
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved.back().filename(), "iter_00000002.pt");

  test::TinyRisModel::nan_loss_at_step = 3;
  Trainer skip(config({"train.skip_nonfinite=true", "train.iterations=4"}), run("skip"), false);
  EXPECT_EQ(skip.run().state.iteration, 4);
  std::ifstream log(run("skip") / "metrics.jsonl");
  bool reported = false;
  for (std::string line; std::getline(log, line);) {
    reported |= nlohmann::json::parse(line).value("skipped_steps", 0) == 1;
  }
  EXPECT_TRUE(reported);
}

TEST_F(TrainerTest, LogsMetricsAndKeepsTheBestCheckpointByValidation) {
  Trainer t(config({"train.iterations=6", "train.val_every=3", "train.val_split=val",
                    "train.keep_last=1", "train.checkpoint_every=2"}),
            run("val"), false);
  const TrainResult r = t.run();
  EXPECT_TRUE(fs::exists(run("val") / "checkpoints" / "best.pt"));
  EXPECT_EQ(CheckpointDir(run("val") / "checkpoints").list().size(), 1u);
  int steps = 0, validations = 0;
  std::ifstream log(run("val") / "metrics.jsonl");
  for (std::string line; std::getline(log, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("val")) {
      ++validations;
      EXPECT_GE(j["val"]["bottom_up"]["oiou"].get<double>(), 0.0);
    } else {
      ++steps;
      EXPECT_TRUE(j.contains("lr") && j.contains("samples_per_s") && j.contains("rss_mb"));
      EXPECT_TRUE(j["losses"].contains("seg"));
    }
  }
  EXPECT_EQ(steps, 3);        // every 2 of 6 steps
  EXPECT_EQ(validations, 2);  // at step 3 and at the end
  const Checkpoint best = Checkpoint::read(run("val") / "checkpoints" / "best.pt");
  EXPECT_DOUBLE_EQ(best.state().best_metric, r.best_metric);
}

TEST_F(TrainerTest, InitialWeightsAndFrozenPartsStayPut) {
  Trainer a(config({"train.iterations=2"}), run("source"), false);
  a.run();
  const auto source = final_weights(run("source"));
  const std::string init = "train.init=['" + (run("source") / "checkpoints" / "iter_00000002.pt").string() + "']";
  // lr 0: the trained model is exactly the initial checkpoint (BN statistics aside).
  Trainer b(config({"train.iterations=2", "train.lr=0", init, "train.batch_norm=frozen"}),
            run("zero_lr"), false);
  b.run();
  expect_identical(source, final_weights(run("zero_lr")));
  // Frozen body: its weights unchanged, the head trained.
  Trainer c(config({"train.iterations=2", init, "train.freeze=['^body\\.']"}), run("frozen"),
            false);
  c.run();
  const auto frozen = final_weights(run("frozen"));
  EXPECT_TRUE(torch::equal(frozen.at("body.0.weight"), source.at("body.0.weight")));
  EXPECT_FALSE(torch::equal(frozen.at("head.weight"), source.at("head.weight")));
  // A part taken from a whole-model checkpoint of the same kind (the top-down protocol's stage
  // 2): the entries under the part's name, prefix stripped; the rest keeps its own init.
  const std::string part_init = "train.init=['body=" +
                                (run("source") / "checkpoints" / "iter_00000002.pt").string() + "']";
  Trainer d(config({"train.iterations=1", "train.lr=0", part_init, "train.batch_norm=frozen"}),
            run("part"), false);
  d.run();
  const auto part = final_weights(run("part"));
  EXPECT_TRUE(torch::equal(part.at("body.0.weight"), source.at("body.0.weight")));
  EXPECT_FALSE(torch::equal(part.at("head.weight"), source.at("head.weight")));
}

TEST_F(TrainerTest, AccumulatingTwoBatchesOfTwoEqualsOneBatchOfFour) {
  test::TinyRisModel::dropout_p = 0.0;
  const std::vector<std::string> common = {"train.iterations=3", "train.batch_norm=frozen",
                                           "train.optimizer=adam", "train.lr=0.001",
                                           "data.train_sentences=all"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.end(), common.begin(), common.end());
    return config(extra);
  };
  torch::manual_seed(0);
  Trainer four(with({"data.batch_size=4"}), run("b4"), false);
  four.run();
  torch::manual_seed(0);
  Trainer two(with({"data.batch_size=2", "train.accumulate=2"}), run("b2x2"), false);
  two.run();
  const auto a = final_weights(run("b4"));
  const auto b = final_weights(run("b2x2"));
  for (const auto& [name, t] : a) {
    EXPECT_TRUE(torch::allclose(t, b.at(name), 1e-4, 1e-5)) << name;
  }
}

TEST_F(TrainerTest, BadRunLengthsAreConfigErrors) {
  Trainer both(config({"train.epochs=1"}), run("x"), false);
  EXPECT_NE(test::thrown_message<ConfigError>([&] { both.run(); }).find("exactly one of"),
            std::string::npos);
  Trainer big(config({"data.batch_size=60000"}), run("y"), false);
  EXPECT_NE(test::thrown_message<ConfigError>([&] { big.run(); }).find("not one step"),
            std::string::npos);
  Trainer fp16(config({"train.amp=fp16"}), run("z"), false);
  EXPECT_THROW(fp16.run(), ConfigError);
}

TEST_F(TrainerTest, TwoRanksWithBatchBEqualOneRankWithBatchTwoB) {
  // Separate processes over loopback (Gloo); batch norm frozen and no dropout, so the mean of the
  // two ranks' mean losses is the mean loss of the whole batch.
  const std::string data = data_dir->path().string();
  ASSERT_EQ(train::launch_local_workers(
                1, {WICO_TRAIN_WORKER_PATH, data, run("one").string(), "8", "4"}),
            0);
  ASSERT_EQ(train::launch_local_workers(
                2, {WICO_TRAIN_WORKER_PATH, data, run("two").string(), "4", "4"}),
            0);
  const auto one = Checkpoint::read(run("one") / "rank0.pt").model();
  const auto rank0 = Checkpoint::read(run("two") / "rank0.pt").model();
  const auto rank1 = Checkpoint::read(run("two") / "rank1.pt").model();
  expect_identical(rank0, rank1);
  for (const auto& [name, t] : one) {
    EXPECT_TRUE(torch::allclose(t, rank0.at(name), 1e-4, 1e-5))
        << name << " differs by up to " << (t - rank0.at(name)).abs().max().item<double>();
  }
  // Rank 0 alone wrote the run's files.
  EXPECT_TRUE(fs::exists(run("two") / "metrics.jsonl"));
  EXPECT_EQ(CheckpointDir(run("two") / "checkpoints").list().size(), 1u);
}

TEST_F(TrainerTest, SynchronisedBatchNormOnTwoRanksEqualsOneRankWithTheWholeBatch) {
  // Batch norm in training mode: with local statistics two ranks would differ from one rank with
  // the whole batch; with train.batch_norm sync they must not (parameters and running stats).
  const std::string data = data_dir->path().string();
  ASSERT_EQ(train::launch_local_workers(
                1, {WICO_TRAIN_WORKER_PATH, data, run("one").string(), "8", "3", "local"}),
            0);
  ASSERT_EQ(train::launch_local_workers(
                2, {WICO_TRAIN_WORKER_PATH, data, run("sync").string(), "4", "3", "sync"}),
            0);
  ASSERT_EQ(train::launch_local_workers(
                2, {WICO_TRAIN_WORKER_PATH, data, run("local").string(), "4", "3", "local"}),
            0);
  const auto one = Checkpoint::read(run("one") / "rank0.pt").model();
  const auto sync = Checkpoint::read(run("sync") / "rank0.pt").model();
  const auto local = Checkpoint::read(run("local") / "rank0.pt").model();
  expect_identical(sync, Checkpoint::read(run("sync") / "rank1.pt").model());
  bool local_differs = false;
  for (const auto& [name, t] : one) {
    if (!t.is_floating_point()) continue;
    EXPECT_TRUE(torch::allclose(t, sync.at(name), 1e-4, 1e-5))
        << name << " differs by up to " << (t - sync.at(name)).abs().max().item<double>();
    local_differs |= !torch::allclose(t, local.at(name), 1e-4, 1e-5);
  }
  EXPECT_TRUE(local_differs) << "local statistics should not match the whole batch";
}

TEST_F(TrainerTest, Bf16AutocastOnCpuTrainsAndKeepsFloatWeights) {
  Trainer t(config({"train.amp=bf16", "train.iterations=3"}), run("bf16"), false);
  EXPECT_EQ(t.run().state.iteration, 3);
  const auto weights = final_weights(run("bf16"));
  EXPECT_EQ(weights.at("head.weight").scalar_type(), torch::kFloat);
  std::ifstream log(run("bf16") / "metrics.jsonl");
  std::string line;
  std::getline(log, line);
  EXPECT_TRUE(std::isfinite(nlohmann::json::parse(line)["loss"].get<double>()));
}

}  // namespace
}  // namespace wico::train
