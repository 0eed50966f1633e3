#include "wico/eval/plots.h"

#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <random>

#include "test_util.h"
#include "wico/core/error.h"

namespace wico::eval {
namespace {

TEST(Plots, DrawTheThreeFiguresAsPng) {
  test::TempDir dir;
  std::mt19937 rng(0);
  std::uniform_real_distribution<double> u(0, 1);
  Series td{"top-down", {}}, bu{"bottom-up", {}}, fused{"fused", {}};
  std::vector<double> confidence;
  for (int i = 0; i < 500; ++i) {
    td.ious.push_back(u(rng) < 0.2 ? 0.01 : 0.7 + 0.3 * u(rng));
    bu.ious.push_back(0.4 + 0.5 * u(rng));
    fused.ious.push_back(std::min(1.0, std::max(td.ious.back(), bu.ious.back())));
    confidence.push_back(std::clamp(fused.ious.back() + 0.1 * (u(rng) - 0.5), 0.0, 1.0));
  }
  plot_iou_distribution({td, bu, fused}, {}, dir.path() / "iou.png");
  plot_confidence_density(confidence, fused.ious, "GSI confidence", dir.path() / "conf.png");
  plot_mer_bars({{"LAVT + MAttNet", 0.21}, {"CRIS + MAttNet", 0.18}}, dir.path() / "mer.png");
  for (const char* name : {"iou.png", "conf.png", "mer.png"}) {
    const cv::Mat image = cv::imread((dir.path() / name).string());
    ASSERT_FALSE(image.empty()) << name;
    EXPECT_GT(image.cols, 400);
    // Something was drawn: far from a blank page.
    EXPECT_LT(cv::mean(image)[0], 250.0) << name;
  }
  if (const char* keep = std::getenv("WICO_KEEP_PLOTS")) {
    for (const char* name : {"iou.png", "conf.png", "mer.png"}) {
      std::filesystem::copy_file(dir.path() / name, std::filesystem::path(keep) / name,
                                 std::filesystem::copy_options::overwrite_existing);
    }
  }
  EXPECT_THROW(plot_confidence_density({0.1}, {}, "x", dir.path() / "bad.png"), Error);
}

}  // namespace
}  // namespace wico::eval
