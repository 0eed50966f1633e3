// The WiCo model (the paper's Figure 3): two branches (each a trained model's own config: a
// top-down branch, a bottom-up backend, or two of one kind for Table 3), CFI between a top-down
// and a bottom-up branch (`wico.cfi`), and an integration strategy (`wico.integration`: Table 2)
// giving the fused result, thresholded at tau.
//
// Each branch is built from the config file `wico.branches[i]` (with `wico.branch_set`
// overrides) and sits under the part name `alpha` or `beta`, so `train.init:
// ['alpha=<run>/checkpoints/best.pt', 'beta=...']` starts from each branch's own run.
//
// Branch names in the outputs and reports: "top_down" and "bottom_up" for a mixed pair; for a
// pair of one kind, the kind with _a / _b. The fused result is "fused".
//
// Training losses (DESIGN decisions 3-4, and ours where the paper is silent):
//   seg        BCE (on P_hat clamped to [1e-4, 1 - 1e-4]) + soft Dice of the fused map; it reaches
//              the confidences only with wico.confidence_from_seg;
//   iou_<name> smooth-L1 of each branch's sampled confidence against its binarised IoU (si, gsi);
//   cfi_ce     cross-entropy of S_hat towards the referred candidate (with CFI);
//   <name>.*   each branch's own losses, times wico.branch_weight (0 skips them).
#pragma once
#include <ATen/core/Tensor.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "wico/nn/ris_model.h"
#include "wico/wico/branch_inputs.h"
#include "wico/wico/cfi.h"
#include "wico/wico/gsi.h"
#include "wico/wico/integration.h"

namespace wico {
class Config;
class Schema;
}  // namespace wico
namespace wico::topdown {
class TopDownModel;
}
namespace wico::bottomup {
class BottomUpModel;
}

namespace wico::model {

struct WicoOptions {
  std::vector<std::string> branches;    // two config files
  std::vector<std::string> branch_set;  // overrides applied to both branch configs
  bool cfi = true;
  Integration integration = Integration::kGaussianScore;
  Blend blend = Blend::kNormalised;
  TopDownMap td_map = TopDownMap::kScore;
  bool confidence_from_seg = false, td_score_stats = false;
  double initial_log_sigma = -3.0;
  double tau = 0.35;
  std::int64_t cfi_dim = 256, cfi_layers = 3, cfi_heads = 8, cfi_ffn = 2048;
  std::int64_t score_hidden = 256;
  bool sample_at_eval = false;
  double seg_weight = 1.0, iou_weight = 1.0, score_weight = 1.0, branch_weight = 1.0;
  static WicoOptions from_config(const Config& config);
};

class WicoModel : public nn::RisModel {
 public:
  explicit WicoModel(const Config& config);
  nn::RisOutput forward(const data::Batch& batch, bool with_losses) override;
  std::string result_branch() const override { return "fused"; }
  double threshold(const std::string& branch) const override;

  const WicoOptions& options() const { return options_; }
  // The two branches' names in outputs ("top_down", "bottom_up", or kind_a / kind_b).
  const std::array<std::string, 2>& branch_names() const { return names_; }

 private:
  // A branch's own result is foreground above its own model's threshold (the top-down branch
  // 0.5, a backend its original's: LAVT 0.5, CRIS 0.35): its report, MER, intersection and union,
  // and the IoU its confidence learns. The fused map uses tau.
  double branch_threshold(int i) const;

  struct Member {
    std::shared_ptr<nn::RisModel> model;
    topdown::TopDownModel* top_down = nullptr;
    bottomup::BottomUpModel* bottom_up = nullptr;
    std::unique_ptr<BranchInputs> inputs;  // how it reads the pair's batches
  };
  WicoOptions options_;
  std::array<Member, 2> members_;
  std::array<std::string, 2> names_;
  ComplementaryFeatureInteraction cfi_{nullptr};
  std::array<ScoreHead, 2> heads_{ScoreHead{nullptr}, ScoreHead{nullptr}};
};

}  // namespace wico::model
