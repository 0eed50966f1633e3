// The bundled synthetic data set (`wico synth`): scenes of coloured shapes with referring
// expressions, written in RefCOCO's published layout (COCO JPEGs, instances.json, refs(unc).p) so
// that the real reader is what reads it and everything runs with no download.
//
//   <out>/images/train2014/COCO_train2014_%012d.jpg
//   <out>/refcoco/instances.json        polygons, and RLE for shapes with holes and some others
//   <out>/refcoco/refs(unc).p           protocol-2 pickle, the refer API's list of ref dicts
//   <out>/word_vectors.txt              random 32-d vectors of the set's words in GloVe's text
//                                       format (not GloVe: for VLT's tiny config, no download)
//
// Splits mirror RefCOCO's: train / val hold refs to any shape; testA images hold several "angular"
// shapes and refs only to them, testB the same for "round" shapes (RefCOCO's people / objects).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace wico::data {

inline constexpr const char* kSyntheticVectorsFile = "word_vectors.txt";
inline constexpr int kSyntheticVectorDim = 32;

struct SyntheticOptions {
  std::filesystem::path out;
  int images = 2000;
  std::uint64_t seed = 0;
  int threads = 1;     // images are rendered in parallel; the output does not depend on this
  bool overwrite = false;
};

struct SyntheticSummary {
  int images = 0;
  int annotations = 0;
  int refs = 0;
  int sentences = 0;
  std::map<std::string, int> refs_per_split;
  std::map<std::string, int> images_per_split;
};

// The categories: id, name, supercategory ("angular" for testA, "round" for testB).
struct SyntheticCategory {
  int id;
  const char* name;
  const char* group;
};
const std::vector<SyntheticCategory>& synthetic_categories();

// Writes the data set; deterministic for a seed (same bytes whatever the thread count).
// Refuses to write over an existing data set unless options.overwrite.
SyntheticSummary generate_synthetic(const SyntheticOptions& options);

}  // namespace wico::data
