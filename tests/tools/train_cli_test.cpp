// `wico train`, `wico eval --checkpoint` and `wico predict` through the built tool, on tiny LAVT
// and a small synthetic set: the paths a user takes, exit codes included.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "test_util.h"
#include "wico/data/synthetic.h"
#include "wico/train/checkpoint.h"

namespace wico {
namespace {

namespace fs = std::filesystem;

class TrainCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    data::generate_synthetic({dir_->path() / "data", 30, 3, 2, false});
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  // tiny LAVT at 64x64 on the small set; runs under `runs`.
  std::string args(int iterations, const std::string& extra = "") const {
    return "--config " + std::string(WICO_SOURCE_DIR) + "/configs/tiny/lavt.yaml" +
           " --set data.root=" + (dir_->path() / "data").string() +
           " --set run.root=" + runs.path().string() +
           " --set data.input_size=64 --set data.batch_size=4 --set data.workers=1" +
           " --set train.iterations=" + std::to_string(iterations) +
           " --set train.val_every=-1 --set train.log_every=1 --set log.progress=off" + extra;
  }
  fs::path run_dir() const { return runs.path() / "tiny_lavt"; }
  static test::TempDir* dir_;
  test::TempDir runs;
};
test::TempDir* TrainCli::dir_ = nullptr;

std::int64_t lines_of(const fs::path& file) {
  std::ifstream in(file);
  std::int64_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

// Starts the tool in the background; returns its pid.
pid_t start_wico(const std::string& arguments) {
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string command = std::string("exec '") + WICO_TOOL_PATH + "' " + arguments +
                                " > /dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST_F(TrainCli, TrainsThenRefusesToOverwriteTheRun) {
  const auto r = test::run_wico("train " + args(3));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(run_dir() / "config.yaml"));
  EXPECT_TRUE(fs::exists(run_dir() / "log.txt"));
  EXPECT_EQ(lines_of(run_dir() / "metrics.jsonl"), 3);
  EXPECT_TRUE(fs::exists(run_dir() / "checkpoints" / "iter_00000003.pt"));
  const auto again = test::run_wico("train " + args(3));
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find("tiny_lavt"), std::string::npos) << again.output;
}

TEST_F(TrainCli, SigtermCheckpointsAndExits143ThenResumeFinishes) {
  const pid_t pid = start_wico("train " + args(150));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (lines_of(run_dir() / "metrics.jsonl") < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE(lines_of(run_dir() / "metrics.jsonl"), 2) << "training never started";
  kill(pid, SIGTERM);
  EXPECT_EQ(wait_exit_code(pid), 143);
  const auto saved = train::CheckpointDir(run_dir() / "checkpoints").latest();
  ASSERT_TRUE(saved.has_value());
  const std::int64_t stopped_at = train::Checkpoint::read(*saved).state().iteration;
  EXPECT_GE(stopped_at, 2);
  EXPECT_LT(stopped_at, 150);
  // Resume with a different config is refused, naming the key; the same config finishes.
  const auto wrong =
      test::run_wico("train --resume " + run_dir().string() + " --set train.lr=0.5");
  EXPECT_EQ(wrong.exit_code, 2) << wrong.output;
  EXPECT_NE(wrong.output.find("train.lr"), std::string::npos) << wrong.output;
  const auto resumed = test::run_wico("train --resume " + run_dir().string() +
                                      " --set train.iterations=" + std::to_string(stopped_at + 2));
  EXPECT_EQ(resumed.exit_code, 2) << "another iteration count is another config";
  const auto done = test::run_wico("train --resume " + run_dir().string());
  EXPECT_EQ(done.exit_code, 0) << done.output;
  EXPECT_EQ(train::Checkpoint::read(*train::CheckpointDir(run_dir() / "checkpoints").latest())
                .state()
                .iteration,
            150);
}

TEST_F(TrainCli, TwoLocalProcessesTrainOneRun) {
  const auto r = test::run_wico("train " + args(3) + " --nproc 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(lines_of(run_dir() / "metrics.jsonl"), 3);  // rank 0 alone writes
  EXPECT_TRUE(fs::exists(run_dir() / "checkpoints" / "iter_00000003.pt"));
}

TEST_F(TrainCli, EvaluatesACheckpointAndPredictsOneImage) {
  ASSERT_EQ(test::run_wico("train " + args(2)).exit_code, 0);
  const fs::path checkpoint = run_dir() / "checkpoints" / "iter_00000002.pt";
  const auto e = test::run_wico("eval --checkpoint " + checkpoint.string() +
                                " --splits val --set log.progress=off");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_NE(e.output.find("seconds per 100 samples"), std::string::npos) << e.output;
  const fs::path val = run_dir() / "eval" / "val";
  for (const char* f : {"metrics.json", "report.md", "predictions.jsonl", "iou_distribution.png"}) {
    EXPECT_TRUE(fs::exists(val / f)) << f;
  }
  const auto metrics = nlohmann::json::parse(test::read_file(val / "metrics.json"));
  EXPECT_TRUE(metrics["seconds_per_100_samples"].contains("bottom_up"));

  // One image of the set, by its file name.
  fs::path image;
  for (const auto& entry : fs::recursive_directory_iterator(dir_->path() / "data")) {
    if (entry.path().extension() == ".jpg") image = entry.path();
  }
  ASSERT_FALSE(image.empty());
  const fs::path out = runs.path() / "predict";
  const auto p = test::run_wico("predict --checkpoint " + checkpoint.string() + " --image " +
                                image.string() + " --text 'red circle on the left' --out " +
                                out.string());
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_TRUE(fs::exists(out / (image.stem().string() + "_mask.png")));
  EXPECT_TRUE(fs::exists(out / (image.stem().string() + "_overlay.png")));
  const auto missing = test::run_wico("predict --checkpoint " + checkpoint.string() +
                                      " --image /nonexistent.jpg --text x");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("/nonexistent.jpg"), std::string::npos) << missing.output;
  const auto empty = test::run_wico("predict --checkpoint " + checkpoint.string() + " --image " +
                                    image.string() + " --text '  '");
  EXPECT_EQ(empty.exit_code, 2);
  EXPECT_NE(empty.output.find("expression is empty"), std::string::npos) << empty.output;
  // A batch list, relative paths against the list's folder.
  fs::copy_file(image, runs.path() / "photo.jpg");
  std::ofstream(runs.path() / "list.json")
      << R"([{"image": "photo.jpg", "text": "the star", "name": "a"}])";
  const auto batch = test::run_wico("predict --checkpoint " + checkpoint.string() + " --batch " +
                                    (runs.path() / "list.json").string() + " --out " +
                                    out.string());
  ASSERT_EQ(batch.exit_code, 0) << batch.output;
  EXPECT_TRUE(fs::exists(out / "a_overlay.png"));
}

}  // namespace
}  // namespace wico
