// Darknet's own weight files (pjreddie/AlexeyAB `.weights`, e.g. yolov3.weights): a header
// (int32 major, minor, revision, then the images seen: 8 bytes when major * 10 + minor >= 2, else
// 4) and each [convolutional] section's floats in cfg order, little-endian float32:
//   biases[n]; with batch_normalize: scales[n], rolling_mean[n], rolling_variance[n];
//   weights[n * c * k * k] in [out, in, kh, kw] order.
// The file does not describe itself: the reader takes the sections' shapes (the network's cfg)
// and names section i's tensors `conv_{i}.biases`, `.scales`, `.rolling_mean`,
// `.rolling_variance`, `.weights` (i from 0, counting convolutional sections only). Floats after
// the last section asked for (YOLOv3's detection layers after Darknet-53 and the head) are noted,
// not read. A short file is a wico::Error naming the file, the byte offset and the section.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "wico/io/weights.h"

namespace wico::io {

struct DarknetConvSection {
  std::int64_t out = 0, in = 0, kernel = 1;
  bool batch_norm = true;
};

WeightFile read_darknet_weights(const std::filesystem::path& path,
                                const std::vector<DarknetConvSection>& sections);

// True for a file named *.weights (Darknet's files have no magic bytes).
bool is_darknet_weights_path(const std::filesystem::path& path);

}  // namespace wico::io
