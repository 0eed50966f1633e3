// Keras HDF5 weight files against files in Keras 2.3.1's layout written by Debian's python3-h5py
// (scripts/make_keras_h5_fixtures.py): model.save_weights (root) and model.save
// (/model_weights) layouts, layer_names split into chunks, a layer without weights (whose
// weight_names Keras writes as an empty float array), names under a TF variable scope, float64 and
// float16 weights; every value; and the errors for files that are not Keras weights or are cut
// short.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "test_util.h"
#include "wico/core/error.h"
#include "wico/io/weights.h"

namespace wico::io {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kDir = fs::path(WICO_TEST_DATA_DIR) / "keras_h5";

// The fixture's weights in file order: name below the weights group, shape, dtype.
struct Expected {
  std::string name;
  std::vector<std::int64_t> shape;
  at::ScalarType type;
};

const std::vector<Expected>& expected() {
  static const std::vector<Expected> kWeights = {
      {"conv2d_1/conv2d_1/kernel:0", {3, 3, 2, 4}, at::kFloat},
      {"batch_normalization_1/batch_normalization_1/gamma:0", {4}, at::kFloat},
      {"batch_normalization_1/batch_normalization_1/beta:0", {4}, at::kFloat},
      {"batch_normalization_1/batch_normalization_1/moving_mean:0", {4}, at::kFloat},
      {"batch_normalization_1/batch_normalization_1/moving_variance:0", {4}, at::kFloat},
      {"conv2d_2/conv2d_2/kernel:0", {1, 1, 4, 3}, at::kFloat},
      {"conv2d_2/conv2d_2/bias:0", {3}, at::kFloat},
      {"bidirectional_1/gru_module/bidirectional_1/forward_gru_1/kernel:0", {5, 9}, at::kFloat},
      {"bidirectional_1/gru_module/bidirectional_1/forward_gru_1/recurrent_kernel:0", {3, 9},
       at::kFloat},
      {"bidirectional_1/gru_module/bidirectional_1/forward_gru_1/bias:0", {9}, at::kFloat},
      {"bidirectional_1/gru_module/bidirectional_1/backward_gru_1/kernel:0", {5, 9}, at::kFloat},
      {"bidirectional_1/gru_module/bidirectional_1/backward_gru_1/recurrent_kernel:0", {3, 9},
       at::kFloat},
      {"bidirectional_1/gru_module/bidirectional_1/backward_gru_1/bias:0", {9}, at::kFloat},
      {"dense_1/dense_1/kernel:0", {2, 3}, at::kDouble},
      {"dense_1/dense_1/bias:0", {3}, at::kFloat},  // float16 in the file, read as float32
  };
  return kWeights;
}

void expect_fixture_weights(const WeightFile& file) {
  ASSERT_EQ(file.tensors.size(), expected().size());
  for (std::size_t i = 0; i < expected().size(); ++i) {
    const Expected& e = expected()[i];
    const auto& [name, tensor] = file.tensors[i];
    EXPECT_EQ(name, e.name);
    EXPECT_EQ(tensor.sizes(), at::IntArrayRef(e.shape)) << name;
    EXPECT_EQ(tensor.scalar_type(), e.type) << name;
    // The script's values: arange(numel) * 0.25 + the weight's position (exact in float16 too).
    const at::Tensor want =
        (at::arange(tensor.numel(), at::kDouble) * 0.25 + static_cast<double>(i)).view(e.shape);
    EXPECT_TRUE(at::equal(tensor.to(at::kDouble), want)) << name;
  }
  EXPECT_EQ(file.metadata.at("keras_version"), "2.3.1");
  EXPECT_EQ(file.metadata.at("backend"), "tensorflow");
  EXPECT_EQ(file.format, WeightFormat::kKerasH5);
  EXPECT_STREQ(format_name(file.format), "Keras HDF5");
}

#ifdef WICO_TEST_HAVE_HDF5

TEST(KerasH5, SaveWeightsLayoutReadsEveryWeightInOrder) {
  EXPECT_EQ(detect_weight_format(kDir / "save_weights.h5"), WeightFormat::kKerasH5);
  expect_fixture_weights(read_weights(kDir / "save_weights.h5"));
}

// model.save: the weights under /model_weights, beside the model config and the optimiser's
// weights (which are not the model's and are not read).
TEST(KerasH5, ModelSaveLayoutReadsTheModelWeightsGroup) {
  expect_fixture_weights(read_weights(kDir / "model_save.h5"));
}

// Keras splits an attribute over 64,512 bytes into layer_names0, layer_names1, ...
TEST(KerasH5, ChunkedLayerNamesAreJoined) {
  expect_fixture_weights(read_weights(kDir / "chunked_names.h5"));
}

TEST(KerasH5, AnHdf5FileThatIsNotKerasWeightsIsAnError) {
  const std::string message =
      test::thrown_message<Error>([] { (void)read_weights(kDir / "not_keras.h5"); });
  EXPECT_THAT(message, HasSubstr("not_keras.h5"));
  EXPECT_THAT(message, HasSubstr("not a Keras weight file"));
  EXPECT_THAT(message, HasSubstr("layer_names"));
}

// A file cut short anywhere past its signature: an Error naming the file, never a crash.
TEST(KerasH5, TruncatedFilesAreErrors) {
  std::ifstream in(kDir / "save_weights.h5", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const test::TempDir dir;
  for (const std::size_t keep : {std::size_t{8}, std::size_t{100}, bytes.size() / 2,
                                 bytes.size() - 100, bytes.size() - 1}) {
    const fs::path cut = dir.write("cut.h5", bytes.substr(0, keep));
    const std::string message = test::thrown_message<Error>([&] { (void)read_weights(cut); });
    EXPECT_THAT(message, HasSubstr("cut.h5")) << keep << " bytes";
  }
}

#else

TEST(KerasH5, ABuildWithoutHdf5SaysWhatToInstall) {
  EXPECT_EQ(detect_weight_format(kDir / "save_weights.h5"), WeightFormat::kKerasH5);
  const std::string message =
      test::thrown_message<Error>([] { (void)read_weights(kDir / "save_weights.h5"); });
  EXPECT_THAT(message, HasSubstr("libhdf5-dev"));
}

#endif

}  // namespace
}  // namespace wico::io
