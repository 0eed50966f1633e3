// Runs the built `wico` tool as a user would and checks exit codes and messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_util.h"

namespace wico {
namespace {

using ::testing::HasSubstr;
using test::run_wico;
using test::TempDir;

TEST(Cli, HelpListsSubcommandsAndExitsZero) {
  const auto r = run_wico("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("config"));
  EXPECT_THAT(r.output, HasSubstr("bench"));
  const auto sub = run_wico("config --help");
  EXPECT_EQ(sub.exit_code, 0);
  EXPECT_THAT(sub.output, HasSubstr("--set"));
  EXPECT_THAT(sub.output, HasSubstr("--schema"));
}

TEST(Cli, UsageErrorsExitTwo) {
  EXPECT_EQ(run_wico("").exit_code, 2);
  EXPECT_EQ(run_wico("frobnicate").exit_code, 2);
  EXPECT_EQ(run_wico("config --no-such-flag").exit_code, 2);
}

TEST(Cli, ConfigPrintsTheResolvedConfig) {
  TempDir dir;
  dir.write("base.yaml", "runtime:\n  threads: 2\n");
  dir.write("run.yaml", "_base_: base.yaml\nlog:\n  level: debug\n");
  const auto r = run_wico("config --config run.yaml --set run.seed=7", dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("threads: 2"));
  EXPECT_THAT(r.output, HasSubstr("level: \"debug\""));
  EXPECT_THAT(r.output, HasSubstr("seed: 7"));
  const auto origins = run_wico("config --config run.yaml --origins", dir.path());
  EXPECT_THAT(origins.output, HasSubstr("runtime.threads = 2    # base.yaml:2"));
}

TEST(Cli, SchemaDocumentsEveryKey) {
  const auto r = run_wico("config --schema");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("runtime.threads"));
  EXPECT_THAT(r.output, HasSubstr("0: all cores"));
}

TEST(Cli, BadConfigExitsTwoWithFileLineAndSuggestion) {
  TempDir dir;
  dir.write("bad.yaml", "runtime:\n  threds: 2\n");
  const auto r = run_wico("config --config bad.yaml", dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("bad.yaml:2: unknown key 'runtime.threds' (did you mean "
                                  "'runtime.threads'?)"));
  const auto set = run_wico("config --set runtime.threads=lots");
  EXPECT_EQ(set.exit_code, 2);
  EXPECT_THAT(set.output, HasSubstr("expects an integer, got 'lots'"));
}

TEST(Cli, BenchListsBenchmarksAndRejectsUnknownOnes) {
  const auto list = run_wico("bench --list");
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_THAT(list.output, HasSubstr("gemm"));
  const auto unknown = run_wico("bench nothing");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.output, HasSubstr("unknown benchmark 'nothing'"));
}

TEST(Cli, GemmBenchmarkReportsRatesAsJson) {
  TempDir dir;
  const auto r = run_wico("bench gemm --quick --repeats 1 --warmup 0 --python /nonexistent "
                          "--set runtime.threads=1 --set log.level=warn --json out.json",
                          dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string json = test::read_file(dir.path() / "out.json");
  EXPECT_THAT(json, HasSubstr("\"wico_gflops\""));
  EXPECT_THAT(json, HasSubstr("\"python_gflops\": null"));  // no interpreter: no made-up figure
}

}  // namespace
}  // namespace wico

namespace wico {
namespace {

TEST(CliSynth, WritesADataSetAndRefusesToOverwriteIt) {
  test::TempDir dir;
  const auto r = test::run_wico("synth --out ds --images 4 --seed 1 --set log.progress=plain",
                                dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ::testing::HasSubstr("synth: wrote 4 images"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "ds" / "refcoco" / "refs(unc).p"));
  const auto again = test::run_wico("synth --out ds --images 4", dir.path());
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_THAT(again.output, ::testing::HasSubstr("already holds a data set"));

  const auto stats = test::run_wico(
      "data stats --set data.root=ds --sheet sheet.png --samples 2", dir.path());
  ASSERT_EQ(stats.exit_code, 0) << stats.output;
  EXPECT_THAT(stats.output, ::testing::HasSubstr("refcoco (unc): 4 images"));
  EXPECT_THAT(stats.output, ::testing::HasSubstr("tokenizer: wordpiece, vocabulary 30522"));
  EXPECT_GT(std::filesystem::file_size(dir.path() / "sheet.png"), 1000u);
  const auto missing = test::run_wico("data stats --set data.root=nowhere", dir.path());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.output, ::testing::HasSubstr("data root 'nowhere' does not exist"));
}

}  // namespace
}  // namespace wico

namespace wico {
namespace {

TEST(CliBench, EvalBenchmarkScoresAtCocoSizesAndReportsJson) {
  test::TempDir dir;
  const auto r = test::run_wico("bench eval --quick --repeats 1 --warmup 0 --python /nonexistent "
                                "--set log.level=warn --json out.json",
                                dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ::testing::HasSubstr("all paths counted the same intersections"));
  const std::string json = test::read_file(dir.path() / "out.json");
  EXPECT_THAT(json, ::testing::HasSubstr("\"score_samples_per_s\""));
  EXPECT_THAT(json, ::testing::HasSubstr("\"numpy_samples_per_s\": null"));
}

}  // namespace
}  // namespace wico
