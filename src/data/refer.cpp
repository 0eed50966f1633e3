#include "wico/data/refer.h"

#include <algorithm>
#include <fstream>

#include "wico/core/error.h"
#include "wico/core/json_number.h"
#include "wico/data/pickle.h"

namespace fs = std::filesystem;

namespace wico::data {

bool is_valid_split_by(const std::string& dataset, const std::string& split_by) {
  if (dataset == "refcoco") return split_by == "unc" || split_by == "google";
  if (dataset == "refcoco+") return split_by == "unc";
  if (dataset == "refcocog") return split_by == "umd" || split_by == "google";
  return false;
}

namespace {

// Reads a typed field of a JSON object, naming the file, the entry and the field on failure.
template <typename T>
T field(const nlohmann::json& object, const char* key, const fs::path& file,
        const std::string& entry) {
  auto it = object.find(key);
  if (it == object.end()) {
    throw Error(file.string() + ": " + entry + " has no '" + key + "'");
  }
  if constexpr (std::is_integral_v<T>) {
    if (const auto v = json_integer<T>(*it)) return *v;
    throw Error(file.string() + ": " + entry + " field '" + key + "' is " + it->dump() +
                ", not an integer in range");
  } else {
    try {
      return it->get<T>();
    } catch (const nlohmann::json::exception&) {
      throw Error(file.string() + ": " + entry + " field '" + key + "' has the wrong type (" +
                  it->type_name() + ")");
    }
  }
}

const nlohmann::json& array_field(const nlohmann::json& root, const char* key,
                                  const fs::path& file) {
  auto it = root.find(key);
  if (it == root.end() || !it->is_array()) {
    throw Error(file.string() + ": expected a COCO instances file with a '" + key + "' list");
  }
  return *it;
}

std::int64_t int_of(const PyValue& v) {
  // Python 2 pickles of the refer files store some ids as floats in a few releases.
  return v.is_float() ? static_cast<std::int64_t>(v.as_float()) : v.as_int();
}

Ref ref_from_pickle(const PyValue& value, std::size_t index, const fs::path& file) {
  const std::string entry = "ref #" + std::to_string(index);
  try {
    Ref ref;
    ref.ref_id = int_of(value.at("ref_id"));
    ref.ann_id = int_of(value.at("ann_id"));
    ref.image_id = int_of(value.at("image_id"));
    ref.category_id = int_of(value.at("category_id"));
    ref.split = value.at("split").as_str();
    for (const PyValue& s : value.at("sentences").items()) {
      RefSentence sentence;
      sentence.sent_id = int_of(s.at("sent_id"));
      sentence.raw = s.at("raw").as_str();
      sentence.sent = s.at("sent").as_str();
      if (const PyValue* tokens = s.find("tokens")) {
        for (const PyValue& t : tokens->items()) sentence.tokens.push_back(t.as_str());
      }
      ref.sentences.push_back(std::move(sentence));
    }
    return ref;
  } catch (const Error& e) {
    throw Error(file.string() + ": " + entry + ": " + e.what());
  }
}

}  // namespace

fs::path ReferDataset::refs_file() const {
  return root_ / dataset_ / ("refs(" + split_by_ + ").p");
}

fs::path ReferDataset::instances_file() const { return root_ / dataset_ / "instances.json"; }

ReferDataset ReferDataset::load(const fs::path& root, const std::string& dataset,
                                const std::string& split_by) {
  if (!is_valid_split_by(dataset, split_by)) {
    throw ConfigError("data.split_by '" + split_by + "' does not exist for data.dataset '" +
                      dataset + "' (refcoco: unc|google, refcoco+: unc, refcocog: umd|google)");
  }
  if (!fs::is_directory(root)) {
    throw Error("data root '" + root.string() + "' does not exist (data.root); create the "
                "synthetic set with `wico synth --out " + root.string() + "` or point it at a "
                "RefCOCO download");
  }
  ReferDataset d;
  d.root_ = root;
  d.dataset_ = dataset;
  d.split_by_ = split_by;

  const fs::path instances = d.instances_file();
  if (!fs::is_regular_file(instances)) throw Error("missing file '" + instances.string() + "'");
  nlohmann::json coco;
  {
    std::ifstream in(instances);
    try {
      coco = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
      throw Error(instances.string() + ": malformed JSON at byte " + std::to_string(e.byte) +
                  ": " + e.what());
    } catch (const nlohmann::json::exception& e) {  // a number beyond double's range
      throw Error(instances.string() + ": " + e.what());
    }
  }
  if (!coco.is_object()) throw Error(instances.string() + ": expected a JSON object");
  for (const auto& img : array_field(coco, "images", instances)) {
    const std::string entry = "an image";
    CocoImage image{field<std::int64_t>(img, "id", instances, entry),
                    field<std::string>(img, "file_name", instances, entry),
                    field<int>(img, "height", instances, entry),
                    field<int>(img, "width", instances, entry)};
    if (image.height <= 0 || image.width <= 0) {
      throw Error(instances.string() + ": image " + std::to_string(image.id) + " has size " +
                  std::to_string(image.width) + "x" + std::to_string(image.height));
    }
    d.images_[image.id] = std::move(image);
  }
  for (const auto& ann : array_field(coco, "annotations", instances)) {
    CocoAnnotation a;
    a.id = field<std::int64_t>(ann, "id", instances, "an annotation");
    const std::string entry = "annotation " + std::to_string(a.id);
    a.image_id = field<std::int64_t>(ann, "image_id", instances, entry);
    a.category_id = field<std::int64_t>(ann, "category_id", instances, entry);
    a.bbox = field<std::array<double, 4>>(ann, "bbox", instances, entry);
    if (ann.contains("area")) a.area = field<double>(ann, "area", instances, entry);
    if (ann.contains("iscrowd")) a.iscrowd = field<int>(ann, "iscrowd", instances, entry) != 0;
    auto seg = ann.find("segmentation");
    if (seg == ann.end()) throw Error(instances.string() + ": " + entry + " has no segmentation");
    a.segmentation = *seg;
    if (!d.images_.count(a.image_id)) {
      throw Error(instances.string() + ": " + entry + " refers to missing image " +
                  std::to_string(a.image_id));
    }
    d.image_annotations_[a.image_id].push_back(a.id);
    d.annotations_[a.id] = std::move(a);
  }
  for (const auto& cat : array_field(coco, "categories", instances)) {
    CocoCategory c{field<std::int64_t>(cat, "id", instances, "a category"),
                   field<std::string>(cat, "name", instances, "a category"),
                   cat.contains("supercategory")
                       ? field<std::string>(cat, "supercategory", instances, "a category")
                       : std::string()};
    d.categories_[c.id] = std::move(c);
  }
  for (const auto& [id, category] : d.categories_) {
    const auto index = static_cast<std::int64_t>(d.class_index_.size());
    d.class_index_[id] = index;
  }

  const fs::path refs_path = d.refs_file();
  if (!fs::is_regular_file(refs_path)) throw Error("missing file '" + refs_path.string() + "'");
  const PyValue refs = load_pickle(refs_path);
  if (!refs.is_list()) {
    throw Error(refs_path.string() + ": expected a list of refs, found a " + refs.kind_name());
  }
  d.refs_.reserve(refs.size());
  for (std::size_t i = 0; i < refs.size(); ++i) {
    Ref ref = ref_from_pickle(refs[i], i, refs_path);
    auto ann = d.annotations_.find(ref.ann_id);
    if (ann == d.annotations_.end()) {
      throw Error(refs_path.string() + ": ref " + std::to_string(ref.ref_id) +
                  " points at annotation " + std::to_string(ref.ann_id) + ", which " +
                  instances.string() + " does not have");
    }
    if (ann->second.image_id != ref.image_id) {
      throw Error(refs_path.string() + ": ref " + std::to_string(ref.ref_id) + " says image " +
                  std::to_string(ref.image_id) + " but its annotation is on image " +
                  std::to_string(ann->second.image_id));
    }
    d.refs_.push_back(std::move(ref));
  }
  return d;
}

std::vector<const Ref*> ReferDataset::refs(const std::string& split) const {
  static const std::vector<std::string> known = {"train", "val", "test", "testA", "testB",
                                                 "testC", "testAB", "testBC", "testAC"};
  if (std::find(known.begin(), known.end(), split) == known.end()) {
    throw ConfigError("unknown split '" + split + "'; valid: train, val, test, testA, testB, testC");
  }
  std::vector<const Ref*> out;
  for (const auto& ref : refs_) {
    bool match;
    if (split == "testA" || split == "testB" || split == "testC") {
      match = ref.split.find(split.back()) != std::string::npos;
    } else if (split == "test") {
      match = ref.split.find("test") != std::string::npos;
    } else {
      match = ref.split == split;
    }
    if (match) out.push_back(&ref);
  }
  return out;
}

const CocoImage& ReferDataset::image(std::int64_t id) const {
  auto it = images_.find(id);
  if (it == images_.end()) {
    throw Error(instances_file().string() + " has no image " + std::to_string(id));
  }
  return it->second;
}

const CocoAnnotation& ReferDataset::annotation(std::int64_t id) const {
  auto it = annotations_.find(id);
  if (it == annotations_.end()) {
    throw Error(instances_file().string() + " has no annotation " + std::to_string(id));
  }
  return it->second;
}

const CocoCategory& ReferDataset::category(std::int64_t id) const {
  auto it = categories_.find(id);
  if (it == categories_.end()) {
    throw Error(instances_file().string() + " has no category " + std::to_string(id));
  }
  return it->second;
}

std::int64_t ReferDataset::class_index(std::int64_t category_id) const {
  auto it = class_index_.find(category_id);
  if (it == class_index_.end()) {
    throw Error(instances_file().string() + " has no category " + std::to_string(category_id));
  }
  return it->second;
}

const std::vector<std::int64_t>& ReferDataset::annotations_of_image(std::int64_t image_id) const {
  static const std::vector<std::int64_t> none;
  auto it = image_annotations_.find(image_id);
  return it == image_annotations_.end() ? none : it->second;
}

fs::path ReferDataset::image_path(const CocoImage& image) const {
  return root_ / "images" / "train2014" / image.file_name;
}

std::vector<std::int64_t> ReferDataset::image_ids(const std::vector<std::string>& splits) const {
  std::vector<std::int64_t> ids;
  for (const auto& split : splits) {
    for (const Ref* ref : refs(split)) ids.push_back(ref->image_id);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace wico::data

namespace wico::data {

std::vector<std::int64_t> ReferDataset::instance_training_images(bool exclude_eval) const {
  std::vector<std::int64_t> held_out;
  if (exclude_eval) {
    for (const auto& ref : refs_) {
      if (ref.split != "train") held_out.push_back(ref.image_id);
    }
    std::sort(held_out.begin(), held_out.end());
  }
  std::vector<std::int64_t> ids;
  for (const auto& [id, image] : images_) {
    if (!std::binary_search(held_out.begin(), held_out.end(), id)) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace wico::data
