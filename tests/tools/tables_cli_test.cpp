// `wico tables` through the built tool on a small synthetic set with two-step runs: every run a
// table needs is trained and evaluated, a second call reuses them, missing backends are listed.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "test_util.h"
#include "wico/data/synthetic.h"

namespace wico {
namespace {

namespace fs = std::filesystem;

class TablesCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    data::generate_synthetic({dir_->path() / "data", 30, 3, 2, false});
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string args(int table, const std::string& extra = "") {
    const std::string small =
        "data.input_size=64, mask2former.points=64, top_down.train_candidates=predicted";
    return "tables --table " + std::to_string(table) + " --root " + (dir_->path() / "data").string() +
           " --runs " + (dir_->path() / "runs").string() + " --configs " WICO_SOURCE_DIR
           "/configs/tiny --paper " WICO_SOURCE_DIR "/configs/paper_results.yaml" +
           " --set data.input_size=64 --set mask2former.points=64 --set data.batch_size=4"
           " --set data.workers=1 --set train.iterations=2 --set train.val_every=0"
           " --set train.warmup_iterations=0 --set log.progress=off"
           " --set 'wico.branch_set=[" + small + "]'" + extra;
  }
  static test::TempDir* dir_;
};
test::TempDir* TablesCli::dir_ = nullptr;

TEST_F(TablesCli, Table2TrainsEvaluatesAndThenReuses) {
  // The 30-image set has no testA images: Table 2 on val alone (--splits).
  const auto first = test::run_wico(args(2, " --splits val"));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  for (const char* row : {"| INTERSECTION | - |", "| UNION | - |", "| AVERAGE | - |", "| SI | - |",
                          "| GSI | - |", "| SI | CFI |", "| GSI | CFI |"}) {
    EXPECT_NE(first.output.find(row), std::string::npos) << row << "\n" << first.output;
  }
  // The paper's own pair: VLT + MAttNet.
  EXPECT_NE(first.output.find("ours: VLT (alpha, bottom-up) + MAttNet"), std::string::npos);
  // Rows without CFI keep the branches as their runs left them (frozen weights and batch-norm
  // statistics): their IoU_alpha and IoU_beta are the composed pair's.
  auto branch_cells = [&](const std::string& row) {
    const auto at = first.output.find(row);
    if (at == std::string::npos) return std::string("missing ") + row;
    std::string line = first.output.substr(at, first.output.find('\n', at) - at);
    std::vector<std::string> cells;
    for (std::size_t p = 0, q; (q = line.find('|', p + 1)) != std::string::npos; p = q) cells.push_back(line.substr(p + 1, q - p - 1));
    return cells.size() > 4 ? cells[2] + "|" + cells[3] : line;
  };
  EXPECT_EQ(branch_cells("| SI | - |"), branch_cells("| AVERAGE | - |"));
  EXPECT_EQ(branch_cells("| GSI | - |"), branch_cells("| AVERAGE | - |"));
  EXPECT_NE(first.output.find("eval --compose"), std::string::npos);  // the fixed rules
  EXPECT_TRUE(fs::exists(dir_->path() / "runs" / "table2.md"));
  EXPECT_TRUE(fs::exists(dir_->path() / "runs" / "td_refcoco_s0" / "checkpoints" / "best.pt"));
  // Everything is there now: nothing is trained or evaluated again, the table is the same.
  const auto second = test::run_wico(args(2, " --splits val"));
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(second.output.find("$ "), std::string::npos) << second.output;
  EXPECT_EQ(first.output.substr(first.output.find("## Table 2")), second.output.substr(second.output.find("## Table 2")));
}

TEST_F(TablesCli, Table3ListsMissingBackendsAndDryRunsRunNothing) {
  const auto out = test::run_wico(args(3, " --dry-run"));
  ASSERT_EQ(out.exit_code, 0) << out.output;
  EXPECT_NE(out.output.find("| VLT + CRIS | BU+BU | (dry run)"), std::string::npos) << out.output;
  EXPECT_NE(out.output.find("| CAC + MAttNet | TD+TD | missing: CAC not in this build"), std::string::npos);
  EXPECT_NE(out.output.find("$ "), std::string::npos);  // the commands it would run
  EXPECT_FALSE(fs::exists(dir_->path() / "runs" / "table3.md"));
}

TEST_F(TablesCli, Table3RunsToTheEndForTheBranchesThatExist) {
  const auto out = test::run_wico(args(3));
  ASSERT_EQ(out.exit_code, 0) << out.output;
  // A mixed pair and the two pairs of one kind (a second run of each branch with seed 1), each
  // with its IoUs, MER and seconds per part; the paper's rows without a backend stay missing.
  // CRIS's rows pair it with branches of other text and statistics (WordPiece and ImageNet).
  for (const char* row : {"| LAVT + MAttNet | BU+TD | ", "| LAVT + LAVT (seeds 0, 1) | BU+BU | ",
                          "| MAttNet + MAttNet (seeds 0, 1) | TD+TD | ", "| CRIS + LAVT | BU+BU | ",
                          "| CRIS + MAttNet | BU+TD | ", "| VLT + CRIS | BU+BU | ",
                          "| VLT + LAVT | BU+BU | ", "| VLT + MAttNet | BU+TD | "}) {
    const auto at = out.output.find(row);
    ASSERT_NE(at, std::string::npos) << row << "\n" << out.output;
    const std::string line = out.output.substr(at, out.output.find('\n', at) - at);
    EXPECT_EQ(line.find("missing"), std::string::npos) << line;
    EXPECT_NE(line.find(" = "), std::string::npos) << line;  // total = alpha + beta + WiCo seconds
    // The MER column is the two branches' (a percentage for every kind of pair).
    std::vector<std::string> cells;
    for (std::size_t p = 0, q; (q = line.find('|', p + 1)) != std::string::npos; p = q) cells.push_back(line.substr(p + 1, q - p - 1));
    ASSERT_GT(cells.size(), 4u) << line;
    EXPECT_NE(cells[4].find('%'), std::string::npos) << line;
  }
  // Timed at batch 1, in their own evaluation folder.
  EXPECT_TRUE(fs::exists(dir_->path() / "runs" / "pair_td_refcoco_s0+td_refcoco_s1_gsi_s0" / "eval_batch1" / "val" / "metrics.json"));
  EXPECT_TRUE(fs::exists(dir_->path() / "runs" / "lavt_refcoco_s1" / "checkpoints" / "best.pt"));
  EXPECT_TRUE(fs::exists(dir_->path() / "runs" / "table3.md"));
}

// configs/paper/topdown.yaml asks for the original two-stage protocol: the extractor's run first,
// then the matcher's on it; a pair still builds the branch from topdown.yaml.
TEST_F(TablesCli, PaperTopDownRowsTrainTheTwoStagesInOrder) {
  const std::string runs = (dir_->path() / "paper_runs").string();
  const auto out = test::run_wico("tables --table 1 --dry-run --root " +
                                  (dir_->path() / "data").string() + " --runs " + runs +
                                  " --configs " WICO_SOURCE_DIR "/configs/paper --paper "
                                  WICO_SOURCE_DIR "/configs/paper_results.yaml");
  ASSERT_EQ(out.exit_code, 0) << out.output;
  const auto stage1 = out.output.find("configs/paper/topdown_extractor.yaml");
  const auto stage2 = out.output.find("configs/paper/topdown_matcher.yaml");
  ASSERT_NE(stage1, std::string::npos) << out.output;
  ASSERT_NE(stage2, std::string::npos) << out.output;
  EXPECT_LT(stage1, stage2);
  EXPECT_NE(out.output.find("branch.extractor=" + runs + "/td_extractor_refcoco_s0/checkpoints/best.pt"),
            std::string::npos) << out.output;
  EXPECT_NE(out.output.find("wico.branches=[" WICO_SOURCE_DIR "/configs/paper/topdown.yaml"),
            std::string::npos) << out.output;
}

// --backends keeps a table to the named backends; the others' rows say why they are empty.
TEST_F(TablesCli, BackendsOptionChoosesTheRows) {
  // A folder of its own, so that no run exists and the dry run lists every training command.
  const auto fresh = [](std::string a) {
    const std::string runs = " --runs " + (dir_->path() / "runs").string();
    return a.replace(a.find(runs), runs.size(), " --runs " + (dir_->path() / "backends_runs").string());
  };
  const auto out = test::run_wico(fresh(args(1, " --dry-run --backends lavt")));
  ASSERT_EQ(out.exit_code, 0) << out.output;
  EXPECT_NE(out.output.find("CRIS: not asked for (--backends) (rows left empty)"), std::string::npos)
      << out.output;
  EXPECT_NE(out.output.find("VLT: not asked for (--backends) (rows left empty)"), std::string::npos);
  EXPECT_EQ(out.output.find("configs/tiny/cris.yaml"), std::string::npos);
  EXPECT_NE(out.output.find("configs/tiny/lavt.yaml"), std::string::npos);
  const auto all = test::run_wico(fresh(args(1, " --dry-run")));
  ASSERT_EQ(all.exit_code, 0) << all.output;
  EXPECT_NE(all.output.find("configs/tiny/wico_cris_mattnet.yaml"), std::string::npos) << all.output;
  const auto table2 = test::run_wico(fresh(args(2, " --dry-run --splits val --backends cris")));
  EXPECT_NE(table2.output.find("ours: CRIS (alpha, bottom-up) + MAttNet"), std::string::npos)
      << table2.output;
  const auto bad = test::run_wico(args(1, " --dry-run --backends lavt,detr"));
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--backends: unknown backend 'detr'"), std::string::npos) << bad.output;
}

TEST_F(TablesCli, BadArgumentsAreUsageErrors) {
  const auto out = test::run_wico("tables --table 4");
  EXPECT_EQ(out.exit_code, 2) << out.output;
  const auto missing = test::run_wico("tables --table 2 --root /nonexistent --configs " WICO_SOURCE_DIR
                                      "/configs/tiny --paper " WICO_SOURCE_DIR "/configs/paper_results.yaml");
  const auto no_configs = test::run_wico("tables --table 2 --root " + (dir_->path() / "data").string() +
                                         " --configs /nonexistent --paper " WICO_SOURCE_DIR "/configs/paper_results.yaml");
  EXPECT_NE(no_configs.output.find("no bottom-up backend with a config in /nonexistent"), std::string::npos)
      << no_configs.output;
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("needs refcoco under /nonexistent"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace wico
