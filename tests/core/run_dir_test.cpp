#include "wico/core/run_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "wico/core/config.h"
#include "wico/core/error.h"

namespace fs = std::filesystem;

namespace wico {
namespace {

using ::testing::HasSubstr;
using test::read_file;
using test::TempDir;

TEST(RunDir, CreatesTheStandardLayout) {
  TempDir dir;
  RunDir run(dir.path(), "exp1", RunDir::Mode::kCreate);
  EXPECT_EQ(run.path(), dir.path() / "exp1");
  EXPECT_TRUE(fs::is_directory(run.checkpoints()));
  EXPECT_TRUE(fs::is_directory(run.eval()));
  EXPECT_EQ(run.metrics_file().filename(), "metrics.jsonl");
  EXPECT_EQ(run.log_file().filename(), "log.txt");
}

TEST(RunDir, WritesTheResolvedConfigThatLoadsBack) {
  TempDir dir;
  RunDir run(dir.path(), "exp1", RunDir::Mode::kCreate);
  const Config config = Config::defaults({"runtime.threads=3", "run.name=exp1"});
  run.write_config(config);
  const Config reloaded = Config::load(run.config_file());
  EXPECT_EQ(reloaded.integer("runtime.threads"), 3);
  EXPECT_EQ(config.hash(), reloaded.hash());
}

TEST(RunDir, NeverTakesOverAnExistingRun) {
  TempDir dir;
  {
    RunDir run(dir.path(), "exp1", RunDir::Mode::kCreate);
    run.write_config(Config::defaults());
    test::TempDir unused;
    std::ofstream(run.checkpoints() / "last.pt") << "weights";
  }
  try {
    RunDir again(dir.path(), "exp1", RunDir::Mode::kCreate);
    FAIL() << "an existing run was reused";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("already holds a run"));
    EXPECT_THAT(e.what(), HasSubstr("--resume"));
  }
  EXPECT_EQ(read_file(dir.path() / "exp1" / "checkpoints" / "last.pt"), "weights");
  EXPECT_NO_THROW(RunDir(dir.path(), "exp1", RunDir::Mode::kResume));
}

TEST(RunDir, ResumeNeedsAnExistingRunAndNamesArePlain) {
  TempDir dir;
  EXPECT_THROW(RunDir(dir.path(), "nothing", RunDir::Mode::kResume), ConfigError);
  EXPECT_THROW(RunDir(dir.path(), "../escape", RunDir::Mode::kCreate), ConfigError);
  EXPECT_THROW(RunDir(dir.path(), "", RunDir::Mode::kCreate), ConfigError);
}

TEST(RunDir, RunNameDefaultsToTheConfigFileStem) {
  TempDir dir;
  const auto file = dir.write("configs/tiny_lavt.yaml", "runtime:\n  threads: 1\n");
  EXPECT_EQ(run_name_for(Config::load(file)), "tiny_lavt");
  EXPECT_EQ(run_name_for(Config::load(file, {"run.name=mine"})), "mine");
}

TEST(AtomicWrite, ReplacesTheFileAndLeavesNoTemporary) {
  TempDir dir;
  const auto file = dir.path() / "a.txt";
  atomic_write(file, "first");
  atomic_write(file, "second");
  EXPECT_EQ(read_file(file), "second");
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST(AtomicWrite, FailureKeepsThePreviousFile) {
  TempDir dir;
  const auto file = dir.path() / "a.txt";
  atomic_write(file, "good");
  // The temporary cannot be created inside a missing directory: the target must survive.
  EXPECT_THROW(atomic_write(dir.path() / "missing" / "a.txt", "x"), Error);
  // A rename over a non-empty directory fails after the temporary was written: it must not stay.
  dir.write("occupied/inside.txt", "keep");
  EXPECT_THROW(atomic_write(dir.path() / "occupied", "x"), Error);
  EXPECT_EQ(read_file(dir.path() / "occupied" / "inside.txt"), "keep");
  EXPECT_EQ(read_file(file), "good");
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 2);  // a.txt and occupied/: no temporary left behind
}

TEST(MetricsLog, AppendsOneJsonObjectPerLine) {
  TempDir dir;
  const auto file = dir.path() / "metrics.jsonl";
  {
    MetricsLog log(file);
    log.write({{"step", 1}, {"loss", 0.5}});
  }
  {
    MetricsLog log(file);  // a resumed run appends
    log.write({{"step", 2}, {"loss", 0.25}});
  }
  EXPECT_EQ(read_file(file), "{\"loss\":0.5,\"step\":1}\n{\"loss\":0.25,\"step\":2}\n");
}

}  // namespace
}  // namespace wico
