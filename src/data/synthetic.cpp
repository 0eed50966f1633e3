#include "wico/data/synthetic.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "wico/core/error.h"
#include "wico/core/progress.h"
#include "wico/core/run_dir.h"
#include "wico/data/coco_mask.h"
#include "wico/data/pickle.h"

namespace fs = std::filesystem;

namespace wico::data {

const std::vector<SyntheticCategory>& synthetic_categories() {
  static const std::vector<SyntheticCategory> categories = {
      {1, "triangle", "angular"}, {2, "square", "angular"}, {3, "star", "angular"},
      {4, "circle", "round"},     {5, "ring", "round"},     {6, "ellipse", "round"},
  };
  return categories;
}

namespace {

struct Colour {
  const char* name;
  cv::Scalar bgr;
};
const std::vector<Colour>& palette() {
  static const std::vector<Colour> colours = {
      {"red", {40, 40, 220}},    {"green", {60, 170, 50}},   {"blue", {210, 90, 30}},
      {"yellow", {40, 215, 235}}, {"purple", {160, 50, 140}}, {"orange", {30, 140, 245}},
  };
  return colours;
}

enum class Texture { kSolid, kStriped, kDotted };

struct Shape {
  int category = 0;  // index into synthetic_categories()
  int colour = 0;
  Texture texture = Texture::kSolid;
  cv::Point2d centre;
  double radius = 0;
  double angle = 0;
  cv::Mat1b full;     // the whole shape
  cv::Mat1b visible;  // what the shapes drawn after it leave visible
  double visible_share = 0;
};

struct Sentence {
  std::string raw;
  std::vector<std::string> tokens;
};

struct ImageRefs {
  int annotation = 0;  // index into Scene::annotated
  std::vector<Sentence> sentences;
};

// Everything one image contributes; ids are assigned afterwards, in image order.
struct Scene {
  int width = 0, height = 0;
  std::string split;
  std::vector<Shape> shapes;     // every painted shape (expressions must be unique among all)
  std::vector<int> annotated;    // the shapes with an annotation, in annotation order
  std::vector<nlohmann::json> segmentations;  // parallel to `annotated`
  std::vector<double> areas;
  std::vector<std::array<double, 4>> boxes;
  std::vector<ImageRefs> refs;
};

// What the annotation files need of one image, kept until they are written in image order: the
// masks and shapes are dropped as soon as the image is on disk (20,000 scenes with their masks
// took 20 GB), the segmentations are kept as their JSON text.
struct SceneRecord {
  struct Annotation {
    int category = 0;              // index into synthetic_categories()
    std::string segmentation;      // JSON text
    double area = 0;
    std::array<double, 4> box{};
  };
  int width = 0, height = 0;
  std::string split;
  std::vector<Annotation> annotations;
  std::vector<ImageRefs> refs;
};

SceneRecord record_of(Scene&& scene) {
  SceneRecord record;
  record.width = scene.width;
  record.height = scene.height;
  record.split = std::move(scene.split);
  for (std::size_t k = 0; k < scene.annotated.size(); ++k) {
    record.annotations.push_back({scene.shapes[scene.annotated[k]].category,
                                  scene.segmentations[k].dump(), scene.areas[k],
                                  scene.boxes[k]});
  }
  record.refs = std::move(scene.refs);
  return record;
}

std::uint64_t mix(std::uint64_t x) {  // splitmix64: decorrelates per-image seeds
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(engine_); }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(engine_); }
  bool chance(double p) { return uniform(0, 1) < p; }
  template <typename T>
  const T& pick(const std::vector<T>& items) { return items[integer(0, static_cast<int>(items.size()) - 1)]; }
  std::mt19937_64& engine() { return engine_; }

 private:
  std::mt19937_64 engine_;
};

std::vector<cv::Point> regular_polygon(const cv::Point2d& c, double r, double angle, int n,
                                       double inner_ratio = 0.0) {
  std::vector<cv::Point> points;
  const int count = inner_ratio > 0 ? 2 * n : n;
  for (int i = 0; i < count; ++i) {
    const double rr = (inner_ratio > 0 && i % 2 == 1) ? r * inner_ratio : r;
    const double a = angle + 2.0 * M_PI * i / count;
    points.emplace_back(static_cast<int>(std::lround(c.x + rr * std::cos(a))),
                        static_cast<int>(std::lround(c.y + rr * std::sin(a))));
  }
  return points;
}

void draw_shape_mask(const Shape& s, cv::Mat1b& mask) {
  const std::string name = synthetic_categories()[s.category].name;
  const cv::Point centre(static_cast<int>(std::lround(s.centre.x)),
                         static_cast<int>(std::lround(s.centre.y)));
  const int r = static_cast<int>(std::lround(s.radius));
  if (name == "triangle") {
    cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{regular_polygon(s.centre, s.radius, s.angle, 3)}, 1);
  } else if (name == "square") {
    cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{regular_polygon(s.centre, s.radius, s.angle, 4)}, 1);
  } else if (name == "star") {
    cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{regular_polygon(s.centre, s.radius, s.angle, 5, 0.45)}, 1);
  } else if (name == "circle") {
    cv::circle(mask, centre, r, 1, cv::FILLED);
  } else if (name == "ring") {
    cv::circle(mask, centre, r, 1, cv::FILLED);
    cv::circle(mask, centre, static_cast<int>(std::lround(s.radius * 0.55)), 0, cv::FILLED);
  } else {  // ellipse
    cv::ellipse(mask, centre, cv::Size(r, static_cast<int>(std::lround(s.radius * 0.6))),
                s.angle * 180.0 / M_PI, 0, 360, 1, cv::FILLED);
  }
}

void paint(cv::Mat3b& image, const Shape& s, Rng& rng) {
  const cv::Scalar base = palette()[s.colour].bgr;
  const cv::Scalar dark = base * 0.6;
  const double period = std::max(4.0, s.radius / 3.0);
  const double shade = rng.uniform(0.9, 1.1);  // same colour name, slightly different tone
  for (int y = 0; y < image.rows; ++y) {
    const std::uint8_t* m = s.full.ptr<std::uint8_t>(y);
    cv::Vec3b* px = image.ptr<cv::Vec3b>(y);
    for (int x = 0; x < image.cols; ++x) {
      if (!m[x]) continue;
      bool stripe = false;
      if (s.texture == Texture::kStriped) {
        stripe = std::fmod(std::abs(x + y - s.centre.x - s.centre.y), 2 * period) < period * 0.6;
      } else if (s.texture == Texture::kDotted) {
        const double dx = std::fmod(std::abs(x - s.centre.x), period) - period / 2;
        const double dy = std::fmod(std::abs(y - s.centre.y), period) - period / 2;
        stripe = dx * dx + dy * dy < period * period / 10;
      }
      const cv::Scalar& c = stripe ? dark : base;
      for (int k = 0; k < 3; ++k) px[x][k] = cv::saturate_cast<std::uint8_t>(c[k] * shade);
    }
  }
}

cv::Mat3b background(int w, int h, Rng& rng) {
  cv::Mat3b image(h, w);
  const double tone = rng.uniform(90, 200);
  const double gx = rng.uniform(-0.15, 0.15), gy = rng.uniform(-0.15, 0.15);
  const cv::Vec3d tint(rng.uniform(-20, 20), rng.uniform(-20, 20), rng.uniform(-20, 20));
  cv::Mat3f noise(h, w);
  cv::RNG cv_rng(rng.engine()());
  cv_rng.fill(noise, cv::RNG::NORMAL, 0, 12);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const double v = tone + gx * (x - w / 2.0) + gy * (y - h / 2.0);
      for (int k = 0; k < 3; ++k) {
        image(y, x)[k] = cv::saturate_cast<std::uint8_t>(v + tint[k] + noise(y, x)[k]);
      }
    }
  }
  return image;
}

// ---- referring expressions ------------------------------------------------------------------

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    if (c == ' ') {
      if (!word.empty()) words.push_back(word);
      word.clear();
    } else {
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  if (!word.empty()) words.push_back(word);
  return words;
}

class ExpressionWriter {
 public:
  ExpressionWriter(const std::vector<Shape>& shapes, Rng& rng) : shapes_(shapes), rng_(rng) {}

  // Every expression that picks out shape t alone, by category, colour, size, position and
  // relation to a uniquely described other shape.
  std::vector<std::string> expressions(int t) {
    std::vector<std::string> out;
    const Shape& s = shapes_[t];
    const std::string cat = synthetic_categories()[s.category].name;
    const std::string colour = palette()[s.colour].name;
    auto same = [&](bool with_colour) {
      std::vector<int> group;
      for (int i = 0; i < static_cast<int>(shapes_.size()); ++i) {
        if (shapes_[i].category == s.category && (!with_colour || shapes_[i].colour == s.colour)) {
          group.push_back(i);
        }
      }
      return group;
    };
    const auto by_cat = same(false);
    const auto by_colour_cat = same(true);
    if (by_cat.size() == 1) {
      out.push_back(article() + cat);
      out.push_back(cat);
    }
    if (by_colour_cat.size() == 1) {
      out.push_back(article() + colour + " " + cat);
      if (by_cat.size() > 1) out.push_back(cat + " that is " + colour);
    }
    for (const auto* group : {&by_cat, &by_colour_cat}) {
      if (group->size() < 2 || !all_well_visible(*group)) continue;
      const std::string noun = group == &by_cat ? cat : colour + " " + cat;
      if (auto w = size_word(t, *group)) out.push_back(article() + *w + " " + noun);
      if (auto w = extreme(t, *group, true)) {
        out.push_back(article() + noun + " on the " + *w);
        out.push_back(*w + "most " + noun);
      }
      if (auto w = extreme(t, *group, false)) out.push_back(article() + noun + " at the " + *w);
    }
    if (by_cat.size() >= 2) {
      if (auto rel = relation(t, by_cat)) out.push_back(article() + cat + " " + *rel);
    }
    // "circle" and "the circle" can both come out of an empty article: keep one of each.
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

 private:
  std::string article() { return rng_.chance(0.7) ? "the " : ""; }

  // Size and position words compare whole shapes; they are only fair when no member of the group
  // is mostly hidden (a half-covered big circle can look small).
  bool all_well_visible(const std::vector<int>& group) const {
    return std::all_of(group.begin(), group.end(),
                       [&](int i) { return shapes_[i].visible_share >= 0.6; });
  }

  static std::string direction(const cv::Point2d& d) {
    if (std::abs(d.x) > 1.5 * std::abs(d.y)) return d.x < 0 ? "left of" : "right of";
    if (std::abs(d.y) > 1.5 * std::abs(d.x)) return d.y < 0 ? "above" : "below";
    return "next to";
  }

  std::optional<std::string> size_word(int t, const std::vector<int>& group) {
    auto area = [&](int i) { return shapes_[i].radius * shapes_[i].radius; };
    double other_max = 0, other_min = 1e18;
    for (int i : group) {
      if (i == t) continue;
      other_max = std::max(other_max, area(i));
      other_min = std::min(other_min, area(i));
    }
    if (area(t) > 1.6 * other_max) return rng_.pick(std::vector<std::string>{"big", "large", "bigger"});
    if (area(t) * 1.6 < other_min) return rng_.pick(std::vector<std::string>{"small", "little", "smaller"});
    return std::nullopt;
  }

  // "left"/"right" (horizontal) or "top"/"bottom" when t is the extreme of its group by a margin.
  std::optional<std::string> extreme(int t, const std::vector<int>& group, bool horizontal) {
    auto coord = [&](int i) { return horizontal ? shapes_[i].centre.x : shapes_[i].centre.y; };
    double lo = 1e18, hi = -1e18;
    for (int i : group) {
      if (i == t) continue;
      lo = std::min(lo, coord(i));
      hi = std::max(hi, coord(i));
    }
    const double margin = 25.0;
    if (coord(t) < lo - margin) return std::string(horizontal ? "left" : "top");
    if (coord(t) > hi + margin) return std::string(horizontal ? "right" : "bottom");
    return std::nullopt;
  }

  // "left of the blue ring": an anchor of another category described by colour and category
  // alone, to which t is the nearest of its group by a clear margin.
  std::optional<std::string> relation(int t, const std::vector<int>& group) {
    const Shape& s = shapes_[t];
    for (int a = 0; a < static_cast<int>(shapes_.size()); ++a) {
      const Shape& anchor = shapes_[a];
      if (anchor.category == s.category || anchor.visible_share < 0.6) continue;
      int twins = 0;
      for (const auto& o : shapes_) twins += o.category == anchor.category && o.colour == anchor.colour;
      if (twins != 1) continue;
      auto dist = [&](int i) { return cv::norm(shapes_[i].centre - anchor.centre); };
      bool nearest = true;
      for (int i : group) {
        if (i != t && dist(i) < 1.5 * dist(t)) nearest = false;
      }
      if (!nearest) continue;
      // The phrase names a direction: no other shape of the group may lie in the same one.
      const std::string where = direction(s.centre - anchor.centre);
      bool unique = true;
      for (int i : group) {
        if (i != t && direction(shapes_[i].centre - anchor.centre) == where) unique = false;
      }
      if (!unique) continue;
      return where + " the " + palette()[anchor.colour].name + " " +
             synthetic_categories()[anchor.category].name;
    }
    return std::nullopt;
  }

  const std::vector<Shape>& shapes_;
  Rng& rng_;
};

// ---- one scene --------------------------------------------------------------------------------

std::string split_for(double u) {
  if (u < 0.7) return "train";
  if (u < 0.8) return "val";
  if (u < 0.9) return "testA";
  return "testB";
}

Scene make_scene(std::uint64_t seed, int index, cv::Mat3b& image) {
  Rng rng(mix(seed * 0x100000001b3ULL + static_cast<std::uint64_t>(index)));
  Scene scene;
  scene.width = rng.integer(40, 52) * 8;
  scene.height = rng.integer(30, 44) * 8;
  scene.split = split_for(rng.uniform(0, 1));
  const auto& cats = synthetic_categories();
  // testA/testB images are crowded with their own group, as RefCOCO's are with people/objects.
  std::vector<int> own, other;
  for (int c = 0; c < static_cast<int>(cats.size()); ++c) {
    const bool angular = std::string(cats[c].group) == "angular";
    ((scene.split == "testB") != angular ? own : other).push_back(c);
  }
  const bool grouped = scene.split == "testA" || scene.split == "testB";
  const int main_category = grouped ? rng.pick(own) : rng.integer(0, static_cast<int>(cats.size()) - 1);
  const int n = rng.integer(3, 6);
  const int repeats = rng.chance(0.85) ? rng.integer(2, 3) : 1;
  for (int i = 0; i < n; ++i) {
    Shape s;
    if (i < repeats) {
      s.category = main_category;
    } else if (grouped && rng.chance(0.5)) {
      s.category = rng.pick(own);
    } else {
      s.category = rng.integer(0, static_cast<int>(cats.size()) - 1);
    }
    s.colour = rng.integer(0, static_cast<int>(palette().size()) - 1);
    s.texture = static_cast<Texture>(rng.integer(0, 2));
    s.radius = rng.uniform(16, std::min(scene.width, scene.height) * 0.2);
    s.centre = {rng.uniform(s.radius * 0.6, scene.width - s.radius * 0.6),
                rng.uniform(s.radius * 0.6, scene.height - s.radius * 0.6)};
    s.angle = rng.uniform(0, 2 * M_PI);
    s.full = cv::Mat1b::zeros(scene.height, scene.width);
    draw_shape_mask(s, s.full);
    if (cv::countNonZero(s.full) < 100) continue;
    scene.shapes.push_back(std::move(s));
  }
  image = background(scene.width, scene.height, rng);
  for (auto& s : scene.shapes) paint(image, s, rng);
  // Later shapes occlude earlier ones.
  cv::Mat1b covered = cv::Mat1b::zeros(scene.height, scene.width);
  for (int i = static_cast<int>(scene.shapes.size()) - 1; i >= 0; --i) {
    Shape& s = scene.shapes[i];
    s.visible = s.full & (covered == 0);
    s.visible.setTo(1, s.visible > 0);
    covered |= s.full;
    const int full = cv::countNonZero(s.full);
    s.visible_share = full ? static_cast<double>(cv::countNonZero(s.visible)) / full : 0.0;
  }
  // Annotations: every shape with some visible part, like COCO; RLE where the visible part has a
  // hole (a ring, or a shape with a smaller one on top: polygons cannot hold holes) and for a few
  // others, polygons otherwise.
  for (int k = 0; k < static_cast<int>(scene.shapes.size()); ++k) {
    Shape& s = scene.shapes[k];
    if (cv::countNonZero(s.visible) < 30) continue;
    std::vector<std::vector<cv::Point>> contours;
    std::vector<cv::Vec4i> hierarchy;
    cv::findContours(s.visible.clone(), contours, hierarchy, cv::RETR_CCOMP,
                     cv::CHAIN_APPROX_SIMPLE);
    const bool has_hole = std::any_of(hierarchy.begin(), hierarchy.end(),
                                      [](const cv::Vec4i& h) { return h[3] >= 0; });
    const bool as_rle = has_hole || rng.chance(0.1);
    nlohmann::json segmentation;
    double area = 0;
    std::vector<std::vector<double>> polygons;
    for (const auto& contour : contours) {
      // Slivers left by occlusion rasterise to nothing; they would only add empty parts.
      if (as_rle || contour.size() < 3 || cv::contourArea(contour) < 4.0) continue;
      std::vector<double> poly;
      double shoelace = 0;
      for (std::size_t i = 0; i < contour.size(); ++i) {
        // Vertices at pixel centres: pycocotools' rasteriser then keeps the boundary pixels.
        const double x = contour[i].x + 0.5, y = contour[i].y + 0.5;
        const auto& q = contour[(i + 1) % contour.size()];
        shoelace += x * (q.y + 0.5) - (q.x + 0.5) * y;
        poly.push_back(x);
        poly.push_back(y);
      }
      area += std::abs(shoelace) / 2;
      polygons.push_back(std::move(poly));
    }
    Rle decoded;
    if (!polygons.empty()) {
      segmentation = polygons;
      decoded = rle_from_polygons(polygons, scene.height, scene.width);
    } else {
      decoded = rle_encode(s.visible);
      segmentation = {{"size", {scene.height, scene.width}}, {"counts", rle_to_string(decoded)}};
      area = static_cast<double>(rle_area(decoded));
    }
    // The box of the pixels a reader decodes, whichever form the segmentation has.
    const std::array<double, 4> box = rle_to_bbox(decoded);
    scene.annotated.push_back(k);
    scene.segmentations.push_back(segmentation);
    scene.areas.push_back(area);
    scene.boxes.push_back(box);
  }
  // Referring expressions for well visible shapes (of the split's own group in testA/testB).
  ExpressionWriter writer(scene.shapes, rng);
  for (int a = 0; a < static_cast<int>(scene.annotated.size()); ++a) {
    const int t = scene.annotated[a];
    const Shape& s = scene.shapes[t];
    if (s.visible_share < 0.6) continue;
    if (grouped && std::find(own.begin(), own.end(), s.category) == own.end()) continue;
    auto candidates = writer.expressions(t);
    if (candidates.empty()) continue;
    std::shuffle(candidates.begin(), candidates.end(), rng.engine());
    ImageRefs ref;
    ref.annotation = a;
    const int count = std::min<int>(static_cast<int>(candidates.size()), rng.integer(1, 3));
    for (int k = 0; k < count; ++k) {
      std::string raw = candidates[k];
      if (rng.chance(0.3)) raw[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(raw[0])));
      ref.sentences.push_back({raw, split_words(raw)});
    }
    scene.refs.push_back(std::move(ref));
  }
  return scene;
}

std::string image_file_name(int image_id) {
  char name[64];
  std::snprintf(name, sizeof(name), "COCO_train2014_%012d.jpg", image_id);
  return name;
}

}  // namespace

namespace {

// Random unit-scale vectors in GloVe's text format for the set's words (VLT's tiny config reads
// them as its fixed word vectors): not GloVe, only its format, so that the glove tokenizer and
// the fixed-vector path run without the 5.6 GB download. Words in byte order, each vector from
// its own seeded stream.
void write_word_vectors(const fs::path& path, const std::set<std::string>& words,
                        std::uint64_t seed) {
  std::string text;
  char number[32];
  for (const auto& word : words) {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a: the same seed on every platform
    for (const unsigned char c : word) h = (h ^ c) * 1099511628211ull;
    std::mt19937_64 rng(mix(seed ^ h));
    std::normal_distribution<double> normal(0.0, 1.0 / std::sqrt(double(kSyntheticVectorDim)));
    text += word;
    for (int d = 0; d < kSyntheticVectorDim; ++d) {
      std::snprintf(number, sizeof(number), " %.5f", normal(rng));
      text += number;
    }
    text += '\n';
  }
  atomic_write(path, text);
}

}  // namespace

SyntheticSummary generate_synthetic(const SyntheticOptions& options) {
  if (options.images < 1) throw ConfigError("synth: --images must be at least 1");
  const fs::path image_dir = options.out / "images" / "train2014";
  const fs::path ann_dir = options.out / "refcoco";
  if (!options.overwrite && fs::exists(ann_dir / "refs(unc).p")) {
    throw ConfigError("synth: '" + options.out.string() +
                      "' already holds a data set; choose another --out or pass --overwrite");
  }
  fs::create_directories(image_dir);
  fs::create_directories(ann_dir);

  std::vector<SceneRecord> scenes(options.images);
  std::atomic<int> next{0};
  std::mutex progress_mutex;
  Progress::Options progress_options;
  progress_options.unit = "img";
  Progress progress("synth", options.images, progress_options);
  std::string first_error;
  auto worker = [&] {
    while (true) {
      const int i = next++;
      if (i >= options.images) return;
      try {
        cv::Mat3b image;
        scenes[i] = record_of(make_scene(options.seed, i, image));
        const fs::path file = image_dir / image_file_name(i + 1);
        if (!cv::imwrite(file.string(), image, {cv::IMWRITE_JPEG_QUALITY, 92})) {
          throw Error("cannot write image '" + file.string() + "'");
        }
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(progress_mutex);
        if (first_error.empty()) first_error = e.what();
        next = options.images;  // stop the other workers
        return;
      }
      std::lock_guard<std::mutex> lock(progress_mutex);
      progress.advance();
    }
  };
  std::vector<std::thread> workers;
  for (int t = 0; t < std::max(1, options.threads); ++t) workers.emplace_back(worker);
  for (auto& w : workers) w.join();
  progress.finish();
  if (!first_error.empty()) throw Error("synth: " + first_error);

  nlohmann::json categories = nlohmann::json::array();
  for (const auto& c : synthetic_categories()) {
    categories.push_back({{"id", c.id}, {"name", c.name}, {"supercategory", c.group}});
  }
  const nlohmann::json info = {{"description", "WiCo++ synthetic referring segmentation set"},
                               {"seed", options.seed},
                               {"images", options.images}};
  // instances.json first, so that the segmentations' text is gone before the refs' Python values
  // are built. Streamed in the bytes nlohmann's dump() gives the whole object (keys in sorted
  // order, no spaces), without holding that object or its text.
  atomic_write_with(ann_dir / "instances.json", [&](const ByteSink& sink) {
    auto put = [&](const std::string& text) { sink(text.data(), text.size()); };
    put("{\"annotations\":[");
    int id = 0;
    for (int i = 0; i < options.images; ++i) {
      for (const auto& a : scenes[i].annotations) {
        ++id;
        put(fmt::format("{}{{\"area\":{},\"bbox\":{},\"category_id\":{},\"id\":{},"
                        "\"image_id\":{},\"iscrowd\":0,\"segmentation\":{}}}",
                        id == 1 ? "" : ",", nlohmann::json(a.area).dump(),
                        nlohmann::json(a.box).dump(), synthetic_categories()[a.category].id, id,
                        i + 1, a.segmentation));
      }
    }
    put("],\"categories\":" + categories.dump() + ",\"images\":[");
    for (int i = 0; i < options.images; ++i) {
      const nlohmann::json image = {{"id", i + 1}, {"file_name", image_file_name(i + 1)},
                                    {"height", scenes[i].height}, {"width", scenes[i].width}};
      put((i == 0 ? "" : ",") + image.dump());
    }
    put("],\"info\":" + info.dump() + "}");
  });
  for (auto& scene : scenes) {
    for (auto& a : scene.annotations) std::string().swap(a.segmentation);
  }
  // Ids in image order, so the files are identical whatever the thread count. The refs are made
  // one at a time as the pickle is written.
  SyntheticSummary summary;
  std::size_t ref_count = 0;
  for (const auto& scene : scenes) ref_count += scene.refs.size();
  int ann_id = 0, ref_id = 0, sent_id = 0;
  std::set<std::string> vocabulary;  // every word of every sentence, for the word vectors
  std::size_t image = 0, ref_in_image = 0;
  int first_ann_id = 1;
  const auto next_ref = [&]() -> PyValue {
    // Past the images without (more) refs, counting each image and its annotations once.
    while (ref_in_image >= scenes[image].refs.size()) {
      ++summary.images_per_split[scenes[image].split];
      ann_id += static_cast<int>(scenes[image].annotations.size());
      scenes[image] = SceneRecord();  // done with this image
      ++image;
      ref_in_image = 0;
      first_ann_id = ann_id + 1;
    }
    const SceneRecord& scene = scenes[image];
    const ImageRefs& r = scene.refs[ref_in_image++];
    const int image_id = static_cast<int>(image) + 1;
    PyValue::List sentences, sent_ids;
    for (const auto& s : r.sentences) {
      PyValue::List tokens;
      std::string joined;
      for (const auto& t : s.tokens) {
        vocabulary.insert(t);
        tokens.push_back(PyValue::string(t));
        joined += (joined.empty() ? "" : " ") + t;
      }
      sent_ids.push_back(PyValue::integer(sent_id));
      sentences.push_back(PyValue::dict({{PyValue::string("tokens"), PyValue::list(tokens)},
                                         {PyValue::string("raw"), PyValue::string(s.raw)},
                                         {PyValue::string("sent_id"), PyValue::integer(sent_id)},
                                         {PyValue::string("sent"), PyValue::string(joined)}}));
      ++sent_id;
    }
    const int ref_ann_id = first_ann_id + r.annotation;
    char file_name[80];
    std::snprintf(file_name, sizeof(file_name), "COCO_train2014_%012d_%d.jpg", image_id,
                  ref_ann_id);
    ++ref_id;
    ++summary.refs_per_split[scene.split];
    summary.sentences += static_cast<int>(r.sentences.size());
    return PyValue::dict(
        {{PyValue::string("sent_ids"), PyValue::list(sent_ids)},
         {PyValue::string("file_name"), PyValue::string(file_name)},
         {PyValue::string("ann_id"), PyValue::integer(ref_ann_id)},
         {PyValue::string("ref_id"), PyValue::integer(ref_id - 1)},
         {PyValue::string("image_id"), PyValue::integer(image_id)},
         {PyValue::string("split"), PyValue::string(scene.split)},
         {PyValue::string("sentences"), PyValue::list(sentences)},
         {PyValue::string("category_id"),
          PyValue::integer(synthetic_categories()[scene.annotations[r.annotation].category].id)}});
  };
  save_pickle_list(ann_dir / "refs(unc).p", ref_count, next_ref, 2);
  for (; image < scenes.size(); ++image) {  // the images after the last ref
    ++summary.images_per_split[scenes[image].split];
    ann_id += static_cast<int>(scenes[image].annotations.size());
  }
  write_word_vectors(options.out / kSyntheticVectorsFile, vocabulary, options.seed);
  summary.images = options.images;
  summary.annotations = ann_id;
  summary.refs = ref_id;
  return summary;
}

}  // namespace wico::data
