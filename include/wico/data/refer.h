// The RefCOCO family in its published format, read natively: refs(*).p (a Python pickle of ref
// dicts), the COCO instances.json of the images and the COCO images. Mirrors the refer API
// (lichengunc/refer), including its split rules.
//
//   <root>/images/train2014/<file_name from instances.json>
//   <root>/<dataset>/instances.json
//   <root>/<dataset>/refs(<split_by>).p
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace wico::data {

struct RefSentence {
  std::int64_t sent_id = 0;
  std::string raw;   // as the annotator typed it (LAVT reads this)
  std::string sent;  // lower-cased, tokens joined by spaces (CRIS reads this)
  std::vector<std::string> tokens;
};

struct Ref {
  std::int64_t ref_id = 0;
  std::int64_t ann_id = 0;
  std::int64_t image_id = 0;
  std::int64_t category_id = 0;
  std::string split;
  std::vector<RefSentence> sentences;
};

struct CocoImage {
  std::int64_t id = 0;
  std::string file_name;
  int height = 0;
  int width = 0;
};

struct CocoAnnotation {
  std::int64_t id = 0;
  std::int64_t image_id = 0;
  std::int64_t category_id = 0;
  std::array<double, 4> bbox{};  // x, y, w, h
  double area = 0;
  bool iscrowd = false;
  nlohmann::json segmentation;  // polygons, or an RLE object
};

struct CocoCategory {
  std::int64_t id = 0;
  std::string name;
  std::string supercategory;
};

// The valid (dataset, split_by) pairs and their splits, as published.
bool is_valid_split_by(const std::string& dataset, const std::string& split_by);

class ReferDataset {
 public:
  // Reads and cross-checks the annotations (images are read later, per sample). Every problem
  // (missing root or file, malformed JSON, a ref pointing at a missing annotation or image) is a
  // wico::Error naming the file and the entry.
  static ReferDataset load(const std::filesystem::path& root, const std::string& dataset,
                           const std::string& split_by);

  // The refs of a split with the refer API's rules: "train"/"val" exact; "testA"/"testB"/"testC"
  // any split containing that letter ("testAB" too); "test" any split containing "test".
  std::vector<const Ref*> refs(const std::string& split) const;
  const std::vector<Ref>& all_refs() const { return refs_; }

  const CocoImage& image(std::int64_t id) const;
  const CocoAnnotation& annotation(std::int64_t id) const;
  const CocoCategory& category(std::int64_t id) const;
  // The contiguous class index of a category id: its position among instances.json's category
  // ids sorted (detectron2's thing_dataset_id_to_contiguous_id: COCO's 80 ids 1..90 -> 0..79).
  std::int64_t class_index(std::int64_t category_id) const;
  // Every annotation of an image: the candidate instances of the top-down branch.
  const std::vector<std::int64_t>& annotations_of_image(std::int64_t image_id) const;
  std::filesystem::path image_path(const CocoImage& image) const;
  // Image ids of the refs in the given splits (sorted, unique).
  std::vector<std::int64_t> image_ids(const std::vector<std::string>& splits) const;
  // The images an instance extractor may train on: every image of instances.json, less (when
  // `exclude_eval`, the data.exclude_eval_images switch) those of the val and test splits, which
  // COCO-trained detectors have seen (MAttNet's "coco_minus_refer").
  std::vector<std::int64_t> instance_training_images(bool exclude_eval) const;

  const std::filesystem::path& root() const { return root_; }
  const std::string& dataset() const { return dataset_; }
  const std::string& split_by() const { return split_by_; }
  std::filesystem::path refs_file() const;
  std::filesystem::path instances_file() const;
  std::size_t num_images() const { return images_.size(); }
  std::size_t num_annotations() const { return annotations_.size(); }
  const std::map<std::int64_t, CocoCategory>& categories() const { return categories_; }

 private:
  std::filesystem::path root_;
  std::string dataset_;
  std::string split_by_;
  std::vector<Ref> refs_;
  std::unordered_map<std::int64_t, CocoImage> images_;
  std::unordered_map<std::int64_t, CocoAnnotation> annotations_;
  std::unordered_map<std::int64_t, std::vector<std::int64_t>> image_annotations_;
  std::map<std::int64_t, CocoCategory> categories_;
  std::unordered_map<std::int64_t, std::int64_t> class_index_;
};

}  // namespace wico::data
