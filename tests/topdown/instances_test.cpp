#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "wico/topdown/instances.h"

namespace wico::topdown {
namespace {

TEST(TopDownInstances, BoxesOfMasksCoverWholePixels) {
  at::Tensor masks = at::zeros({1, 2, 4, 8});
  masks.index_put_({0, 0, at::indexing::Slice(1, 3), at::indexing::Slice(2, 6)}, 1.0);  // rows 1-2, cols 2-5
  const at::Tensor boxes = boxes_of_masks(masks);
  ASSERT_EQ(boxes.sizes(), (at::IntArrayRef{1, 2, 4}));
  EXPECT_TRUE(at::allclose(boxes[0][0], at::tensor({2.0f / 8, 1.0f / 4, 6.0f / 8, 3.0f / 4})));
  EXPECT_TRUE(at::equal(boxes[0][1], at::zeros({4})));  // empty mask: zero box
}

TEST(TopDownInstances, UnknownComponentsNameTheKeyAndTheChoices) {
  try {
    extractor_registry().get("nope");
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("top_down.extractor"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace wico::topdown
