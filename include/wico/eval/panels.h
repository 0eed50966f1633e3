// Qualitative panels (the paper's Figure 6), drawn with OpenCV as PNG files. One row per sample:
//
//   | image + expression | ground truth | top_down | bottom_up | fused | other branches... |
//
// the expression written on the image on a dark band (wrapped), the ground truth and each
// branch's mask overlaid in its colour with the IoU printed, column headers on top. Samples are
// chosen automatically from a scored split, one file per kind of case:
//
//   panels_pn.png      PN cases: some branch's IoU < eval.pn_max (it segmented another object)
//   panels_ip.png      IP cases: some branch's IoU in [eval.ip_min, eval.ip_max) (right object,
//                      imprecise mask)
//   panels_normal.png  every branch's IoU >= eval.ip_max
//
// With several branches, PN and IP rows prefer samples where the branches disagree (one right,
// another wrong), the clearest pictures of WiCo's argument. The choice is deterministic.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "wico/eval/evaluator.h"

namespace wico::data {
class ReferDataset;
}

namespace wico::eval {

enum class CaseKind { kPn, kIp, kNormal };
const char* case_kind_name(CaseKind kind);  // "pn", "ip", "normal"

// Branches in display order: top_down, bottom_up, fused, then the others alphabetically.
std::vector<std::string> display_order(const SplitResult& result);

// Up to `count` samples of `kind` (indices into result.samples), best first: for PN and IP, the
// samples where another branch is right (IoU > mer_threshold; for IP, precise: IoU >= ip_max)
// come first, and the branch at fault rotates through the display order; for normal cases the
// highest lowest-IoU first. At most one sentence per ref; ties go to the earlier sample.
std::vector<std::size_t> select_cases(const SplitResult& result, CaseKind kind, int count,
                                      const ErrorThresholds& thresholds);

// Draws the rows of `samples` (indices into result.samples) as one PNG; IoU labels are coloured
// by zone (PN red, IP orange, above IP green). Images are read from data.image_path(); a missing
// or unreadable image is a wico::Error naming the file.
void draw_panels(const data::ReferDataset& data, const SplitResult& result,
                 const std::vector<Prediction>& predictions,
                 const std::vector<std::size_t>& samples, const ErrorThresholds& thresholds,
                 const std::string& title, const std::filesystem::path& png);

// panels_pn.png, panels_ip.png and panels_normal.png in `dir`, `rows` samples each at most (a
// kind without any sample writes no file; rows = 0 writes none). Returns the files written.
std::vector<std::filesystem::path> write_panels(const data::ReferDataset& data,
                                                const SplitResult& result,
                                                const std::vector<Prediction>& predictions,
                                                const ErrorThresholds& thresholds, int rows,
                                                const std::filesystem::path& dir);

}  // namespace wico::eval
