// Training under faults, with the real tool on tiny LAVT: SIGKILL at 20 scripted moments (half of
// them while a checkpoint is being written) followed by `wico train --resume`, and a full disk
// (a file-size limit) while a checkpoint is written. Label "faults" (scripts/fault_tests.sh runs
// these alone).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "wico/train/checkpoint.h"

namespace wico {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using train::CheckpointDir;

// A started `wico` process whose output goes to a file.
class Tool {
 public:
  // `file_size_limit` > 0 sets RLIMIT_FSIZE in the child (writes past it fail with EFBIG: a
  // full disk without needing a mounted file system).
  Tool(const std::vector<std::string>& args, const fs::path& log, long file_size_limit = 0) {
    std::vector<std::string> argv = {WICO_TOOL_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      if (file_size_limit > 0) {
        ::signal(SIGXFSZ, SIG_IGN);
        const rlimit limit{static_cast<rlim_t>(file_size_limit),
                           static_cast<rlim_t>(file_size_limit)};
        ::setrlimit(RLIMIT_FSIZE, &limit);
      }
      std::vector<char*> c_argv;
      for (auto& a : argv) c_argv.push_back(a.data());
      c_argv.push_back(nullptr);
      ::execv(c_argv[0], c_argv.data());
      ::_exit(127);
    }
  }
  ~Tool() {
    if (!done_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  // The exit code once it has exited, else nullopt.
  std::optional<int> poll() {
    if (done_) return status_;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) finish(status);
    return done_ ? std::optional<int>(status_) : std::nullopt;
  }
  int wait() {
    if (done_) return status_;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    finish(status);
    return status_;
  }
  void kill9() { ::kill(pid_, SIGKILL); }

 private:
  void finish(int status) {
    done_ = true;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  pid_t pid_ = -1;
  bool done_ = false;
  int status_ = -1;
};

bool has_temporary(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  }
  return false;
}

std::vector<nlohmann::json> records(const fs::path& metrics) {
  std::vector<nlohmann::json> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

class Faults : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new test::TempDir();
    const auto r = test::run_wico("synth --out '" + (data_->path() / "data").string() +
                                  "' --images 60 --seed 0");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() {
    delete data_;
    data_ = nullptr;
  }

  // Tiny LAVT, one thread and a fixed thread count (bit-identical reruns), a checkpoint every 3
  // steps; the loader's two workers stay on.
  std::vector<std::string> train_args(const std::string& name, int iterations) const {
    std::vector<std::string> a = {"train", "--config",
                                  std::string(WICO_SOURCE_DIR) + "/configs/tiny/lavt.yaml"};
    for (const std::string& s :
         {"data.root=" + (data_->path() / "data").string(), "run.root=" + runs_.path().string(),
          "run.name=" + name, "train.iterations=" + std::to_string(iterations),
          std::string("train.checkpoint_every=3"), std::string("train.log_every=3"),
          std::string("train.val_every=-1"), std::string("train.keep_last=2"),
          std::string("runtime.threads=1"), std::string("runtime.share_cores=false"),
          std::string("log.progress=off")}) {
      a.push_back("--set");
      a.push_back(s);
    }
    return a;
  }
  fs::path run(const std::string& name) const { return runs_.path() / name; }

  static inline test::TempDir* data_ = nullptr;
  test::TempDir runs_;
};

TEST_F(Faults, KilledTwentyTimesAndResumedEqualsAStraightRun) {
  constexpr int kIterations = 90;
  Tool straight(train_args("straight", kIterations), runs_.path() / "straight.log");
  ASSERT_EQ(straight.wait(), 0) << test::read_file(runs_.path() / "straight.log");

  const fs::path dir = run("killed") / "checkpoints";
  const fs::path log = runs_.path() / "killed.log";
  std::mt19937 rng(7);  // the moments are scripted: the same on every run of the test
  std::uniform_int_distribution<int> delay_ms(300, 2500);
  int kills = 0, during_write = 0;
  bool finished = false;
  for (bool first = true; kills < 20 && !finished; first = false) {
    Tool tool(first ? train_args("killed", kIterations)
                    : std::vector<std::string>{"train", "--resume", run("killed").string()},
              log);
    // The first start is killed only once it has a checkpoint to resume from.
    while (first && (!fs::is_directory(dir) || CheckpointDir(dir).list().empty())) {
      ASSERT_FALSE(tool.poll()) << test::read_file(log);
      std::this_thread::sleep_for(5ms);
    }
    const bool at_write = kills % 2 == 1;
    const auto deadline = std::chrono::steady_clock::now() +
                          (at_write ? std::chrono::milliseconds(8000)
                                    : std::chrono::milliseconds(delay_ms(rng)));
    bool seen_write = false;
    while (std::chrono::steady_clock::now() < deadline) {
      if (tool.poll()) break;
      if (at_write && has_temporary(dir)) {
        seen_write = true;
        break;
      }
      std::this_thread::sleep_for(at_write ? 200us : 2ms);
    }
    if (const auto code = tool.poll()) {
      ASSERT_EQ(*code, 0) << test::read_file(log);
      finished = true;
      break;
    }
    tool.kill9();
    EXPECT_EQ(tool.wait(), 128 + SIGKILL);
    ++kills;
    during_write += seen_write;
    // Whatever the moment, every checkpoint there is complete.
    for (const auto& path : CheckpointDir(dir).list()) {
      EXPECT_NO_THROW(train::Checkpoint::read(path)) << path << " after kill " << kills;
    }
  }
  EXPECT_EQ(kills, 20) << "the run finished before 20 kills; raise kIterations";
  EXPECT_GE(during_write, 6) << "too few kills landed inside a checkpoint write";
  if (!finished) {
    Tool rest({"train", "--resume", run("killed").string()}, log);
    ASSERT_EQ(rest.wait(), 0) << test::read_file(log);
  }
  EXPECT_FALSE(has_temporary(dir)) << "a killed write's temporary file was left";

  const auto a = train::Checkpoint::read(*CheckpointDir(run("straight") / "checkpoints").latest());
  const auto b = train::Checkpoint::read(*CheckpointDir(dir).latest());
  EXPECT_EQ(b.state().iteration, kIterations);
  ASSERT_EQ(a.model().size(), b.model().size());
  for (const auto& [name, t] : a.model()) {
    EXPECT_TRUE(torch::equal(t, b.model().at(name))) << name << " differs after " << kills
                                                     << " kills";
  }
  // metrics.jsonl reads as one run: the same records (iterations, losses, learning rates).
  const auto straight_records = records(run("straight") / "metrics.jsonl");
  const auto killed_records = records(run("killed") / "metrics.jsonl");
  ASSERT_EQ(straight_records.size(), killed_records.size());
  for (std::size_t i = 0; i < straight_records.size(); ++i) {
    for (const char* key : {"iteration", "epoch", "loss", "lr"}) {
      EXPECT_EQ(straight_records[i].at(key), killed_records[i].at(key)) << key << " of record " << i;
    }
  }
}

TEST_F(Faults, FullDiskWhileCheckpointingKeepsThePreviousCheckpoint) {
  const fs::path dir = run("full") / "checkpoints";
  const fs::path first_log = runs_.path() / "full.log";
  {
    // Interrupted once it has a checkpoint, so that its continuation writes the next one.
    Tool first(train_args("full", 30), first_log);
    while (!fs::is_directory(dir) || CheckpointDir(dir).list().empty()) {
      ASSERT_FALSE(first.poll()) << test::read_file(first_log);
      std::this_thread::sleep_for(5ms);
    }
    first.kill9();
    first.wait();
  }
  const auto before = CheckpointDir(dir).list();
  ASSERT_FALSE(before.empty());
  std::map<fs::path, std::string> bytes;
  for (const auto& p : before) bytes[p] = test::read_file(p);
  const std::int64_t next = train::Checkpoint::read(before.back()).state().iteration + 3;

  // The continuation may write files of 64 KB at most: its log and metrics fit, a checkpoint not.
  const fs::path log = runs_.path() / "full_resume.log";
  Tool resumed({"train", "--resume", run("full").string()}, log, 64 * 1024);
  EXPECT_EQ(resumed.wait(), 1);
  const std::string output = test::read_file(log);
  EXPECT_THAT(output, HasSubstr("cannot write '" + CheckpointDir(dir).path_for(next).string() +
                                "' (disk full?); the previous file is kept"));
  // What was there is intact, and no partial file is left.
  EXPECT_EQ(CheckpointDir(dir).list(), before);
  for (const auto& [path, content] : bytes) EXPECT_EQ(test::read_file(path), content) << path;
  EXPECT_FALSE(has_temporary(dir));
  EXPECT_NO_THROW(train::Checkpoint::read(before.back()));
}

}  // namespace
}  // namespace wico
