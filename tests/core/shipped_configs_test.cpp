// Every config the repository ships loads against the schema, and every tiny model builds: a
// renamed key or a broken _base_ chain fails here rather than in a user's run.
#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"
#include "wico/core/config.h"
#include "wico/data/synthetic.h"
#include "wico/nn/ris_model.h"

namespace wico {
namespace {

namespace fs = std::filesystem;

TEST(ShippedConfigs, EveryConfigLoadsAndEveryTinyModelBuilds) {
  const fs::path root = fs::path(WICO_SOURCE_DIR) / "configs";
  // A small synthetic set as every config's data.root: tiny VLT reads the word vectors `wico synth`
  // writes there (a clean clone has no data/synthetic).
  const test::TempDir data;
  data::generate_synthetic({data.path(), 10, 0, 1, false});
  const std::string root_override = "data.root=" + data.path().string();
  const fs::path previous = fs::current_path();
  fs::current_path(WICO_SOURCE_DIR);  // pair configs name their branches from the repository root
  int loaded = 0, built = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.path().extension() != ".yaml" || entry.path().filename() == "paper_results.yaml") continue;
    SCOPED_TRACE(entry.path().string());
    const Config config = Config::load(entry.path(), {"train.init=[]", root_override});
    ++loaded;
    if (entry.path().parent_path().filename() == "tiny" && !config.text("model.kind").empty()) {
      EXPECT_NO_THROW(nn::build_model(config));
      ++built;
    }
  }
  fs::current_path(previous);
  EXPECT_GE(loaded, 11);
  EXPECT_GE(built, 3);  // tiny LAVT, CRIS, VLT, top-down, WiCo pairs
}

}  // namespace
}  // namespace wico
