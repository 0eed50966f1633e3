#include "wico/wico/wico_model.h"

#include <ATen/ATen.h>

#include <chrono>
#include <filesystem>

#include "wico/bottomup/backend.h"
#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/core/schema.h"
#include "wico/core/stopwatch.h"
#include "wico/data/loader.h"
#include "wico/nn/losses.h"
#include "wico/topdown/top_down.h"

namespace wico::model {

namespace fs = std::filesystem;

namespace {

// A branch config named relative to the working directory or, failing that, to the pair's file.
fs::path resolve_branch_config(const std::string& name, const Config& pair) {
  const fs::path path(name);
  if (path.is_absolute() || fs::exists(path) || pair.source().empty()) return path;
  const fs::path beside = pair.source().parent_path() / path;
  return fs::exists(beside) ? beside : path;
}

// What one branch brings to the pair.
struct BranchResult {
  at::Tensor blend_map;   // differentiable map used in the blend / fixed rules [B, 1, S, S]
  at::Tensor answer;      // the branch's own answer, thresholded at 0.5 [B, 1, S, S]
  at::Tensor feature;     // [B, D] input of the branch's score head
  at::Tensor confidence;  // [B] the branch's own score (top-down: s_hat of the chosen mask)
};

}  // namespace

WicoOptions WicoOptions::from_config(const Config& c) {
  WicoOptions o;
  o.branches = c.texts("wico.branches");
  o.branch_set = c.texts("wico.branch_set");
  o.cfi = c.flag("wico.cfi");
  o.integration = parse_integration(c.text("wico.integration"));
  o.blend = parse_blend(c.text("wico.blend"));
  o.td_map = parse_top_down_map(c.text("wico.td_map"));
  o.confidence_from_seg = c.flag("wico.confidence_from_seg");
  o.td_score_stats = c.flag("wico.td_score_stats");
  o.initial_log_sigma = c.real("wico.initial_log_sigma");
  o.tau = c.real("wico.tau");
  o.cfi_dim = c.integer("wico.cfi_dim");
  o.cfi_layers = c.integer("wico.cfi_layers");
  o.cfi_heads = c.integer("wico.cfi_heads");
  o.cfi_ffn = c.integer("wico.cfi_ffn");
  o.score_hidden = c.integer("wico.score_hidden");
  o.sample_at_eval = c.flag("wico.sample_at_eval");
  o.seg_weight = c.real("wico.seg_weight");
  o.iou_weight = c.real("wico.iou_weight");
  o.score_weight = c.real("wico.score_weight");
  o.branch_weight = c.real("wico.branch_weight");
  if (o.branches.size() != 2) {
    throw ConfigError("wico.branches needs two branch config files (it has " +
                      std::to_string(o.branches.size()) + ")");
  }
  return o;
}

WicoModel::WicoModel(const Config& config) : options_(WicoOptions::from_config(config)) {
  std::array<std::string, 2> kinds;
  for (int i = 0; i < 2; ++i) {
    const fs::path file = resolve_branch_config(options_.branches[i], config);
    if (!fs::exists(file)) {
      throw ConfigError("wico.branches[" + std::to_string(i) + "]: no config file " + file.string());
    }
    Config branch = Config::load(file, options_.branch_set);
    // The pair's data are the branch's: what a branch finds under data.root (VLT's default word
    // vectors, <data.root>/word_vectors.txt) follows the pair's root.
    branch.set("data.root", config.value("data.root"), {"the pair's data.root", 0});
    kinds[i] = branch.text("model.kind");
    if (kinds[i] == "wico") throw ConfigError("wico.branches[" + std::to_string(i) + "] (" + file.string() + ") is itself a pair");
    Member& m = members_[i];
    m.inputs = std::make_unique<BranchInputs>(
        branch, config, "wico.branches[" + std::to_string(i) + "] (" + file.string() + ")");
    m.model = register_module(i == 0 ? "alpha" : "beta", nn::build_model(branch));
    m.top_down = dynamic_cast<topdown::TopDownModel*>(m.model.get());
    m.bottom_up = dynamic_cast<bottomup::BottomUpModel*>(m.model.get());
    if (!m.top_down && !m.bottom_up) {
      throw ConfigError("wico.branches[" + std::to_string(i) + "]: model.kind '" + kinds[i] +
                        "' is neither top_down nor bottom_up");
    }
  }
  const bool mixed = kinds[0] != kinds[1];
  for (int i = 0; i < 2; ++i) names_[i] = mixed ? kinds[i] : kinds[i] + (i == 0 ? "_a" : "_b");
  if (options_.cfi) {
    if (!mixed) {
      throw ConfigError("wico.cfi needs one top-down and one bottom-up branch (both are " +
                        kinds[0] + "); set wico.cfi: false for a pair of one kind");
    }
    const Member& td = members_[0].top_down ? members_[0] : members_[1];
    const Member& bu = members_[0].bottom_up ? members_[0] : members_[1];
    CfiOptions co;
    co.instance_dim = td.top_down->branch().embedding_dim();
    co.pixel_dim = bu.bottom_up->backend().embedding_dim();
    co.dim = options_.cfi_dim;
    co.layers = options_.cfi_layers;
    co.heads = options_.cfi_heads;
    co.ffn_dim = options_.cfi_ffn;
    cfi_ = register_module("cfi", ComplementaryFeatureInteraction(co));
  }
  if (learns_confidences(options_.integration)) {
    const bool gaussian = options_.integration == Integration::kGaussianScore;
    for (int i = 0; i < 2; ++i) {
      const Member& m = members_[i];
      const std::int64_t in =
          m.top_down ? (options_.cfi ? options_.cfi_dim : m.top_down->branch().embedding_dim()) +
                           (options_.td_score_stats ? 3 : 0)
                     : m.bottom_up->backend().embedding_dim();
      heads_[i] = register_module(std::string("score_") + (i == 0 ? "alpha" : "beta"),
                                  ScoreHead(in, options_.score_hidden, gaussian, options_.initial_log_sigma));
    }
  }
}

nn::RisOutput WicoModel::forward(const data::Batch& batch, bool with_losses) {
  nn::RisOutput out;
  const std::int64_t size = batch.images.size(-1);
  if (batch.images.size(-2) != size) {
    throw ConfigError("a WiCo pair needs square inputs (data.resize plain, letterbox or paste); the "
                      "batch is " + std::to_string(batch.images.size(-2)) + "x" +
                      std::to_string(size));
  }
  const std::int64_t b = batch.images.size(0);
  const at::Tensor rows = at::arange(b, batch.target_index.defined()
                                            ? batch.target_index.options()
                                            : at::TensorOptions(at::kLong).device(batch.images.device()));
  const bool branch_losses = with_losses && options_.branch_weight > 0;
  // The top-down branch's losses are also where CFI's score loss finds its target candidate.
  const bool td_losses = branch_losses || (with_losses && options_.cfi && options_.score_weight > 0);
  const c10::Device device = batch.images.device();

  // Each branch's own forward.
  std::array<topdown::TopDownOutput, 2> td;
  std::array<bottomup::BottomUpOutput, 2> bu;
  for (int i = 0; i < 2; ++i) {
    synchronize_device(device);
    const auto start = std::chrono::steady_clock::now();
    const Member& m = members_[i];
    const data::Batch own = m.inputs->adapt(batch);
    if (m.top_down) {
      td[i] = m.top_down->branch().forward(own, td_losses);
      if (branch_losses) {
        for (auto& [k, v] : td[i].losses) out.losses[names_[i] + "." + k] = v * options_.branch_weight;
      }
    } else {
      bu[i] = m.bottom_up->backend().forward(own);
    }
    synchronize_device(device);
    out.seconds[names_[i]] = seconds_since(start);
  }

  // CFI (Eq. 3-6) between the top-down and the bottom-up branch.
  const auto wico_start = std::chrono::steady_clock::now();
  std::array<at::Tensor, 2> instance_embeddings, instance_scores, pixel_embeddings;
  for (int i = 0; i < 2; ++i) {
    if (members_[i].top_down) {
      instance_embeddings[i] = td[i].embeddings;
      instance_scores[i] = td[i].scores;
    } else {
      pixel_embeddings[i] = bu[i].pixel_embeddings;
    }
  }
  if (options_.cfi) {
    const int t = members_[0].top_down ? 0 : 1, u = 1 - t;
    const CfiOutput c = cfi_->forward(td[t].embeddings, td[t].scores, td[t].valid, td[t].masks,
                                      bu[u].pixel_embeddings);
    instance_embeddings[t] = c.embeddings;
    instance_scores[t] = c.scores;
    pixel_embeddings[u] = c.pixel_embeddings;
    if (with_losses && options_.score_weight > 0) {
      out.losses["cfi_ce"] = at::cross_entropy_loss(
                                 c.score_logits.masked_fill(td[t].valid.logical_not(), -1e4),
                                 td[t].target) *
                             options_.score_weight;
    }
  }

  // Each branch's (enhanced) result.
  std::array<BranchResult, 2> r;
  for (int i = 0; i < 2; ++i) {
    const Member& m = members_[i];
    if (m.top_down) {
      const at::Tensor& s = instance_scores[i];
      const at::Tensor best = s.detach().masked_fill(td[i].valid.logical_not(), -1.0).argmax(1);
      r[i].blend_map = straight_through_top_down(td[i].masks, s, options_.td_map);  // Eq. 6 / 10-11
      r[i].answer = td[i].masks.index({rows, best}).unsqueeze(1);
      r[i].feature = instance_embeddings[i].index({rows, best});  // Eq. 7's input
      if (options_.td_score_stats) {
        r[i].feature = at::cat({r[i].feature, candidate_score_statistics(s.detach(), td[i].valid)}, 1);
      }
      r[i].confidence = s.index({rows, best});
    } else {
      auto& backend = m.bottom_up->backend();
      const at::Tensor logits = options_.cfi ? backend.decode(pixel_embeddings[i]) : bu[i].logits;
      const at::Tensor p = backend.probabilities(logits, size);  // Eq. 4
      r[i].blend_map = p;
      r[i].answer = p;
      // Eq. 8: GAP(E_p * P_bu_hat) at E_p's resolution.
      r[i].feature = (bu[i].pixel_embeddings * logits.sigmoid()).mean({2, 3});
      if (branch_losses) {
        out.losses[names_[i] + ".seg"] =
            backend.loss(logits, batch.targets) *
            options_.branch_weight;
      }
    }
  }

  // Integration (Table 2).
  at::Tensor fused;
  if (learns_confidences(options_.integration)) {
    const bool sample = is_training() || options_.sample_at_eval;
    std::array<BranchScore, 2> score;
    std::array<at::Tensor, 2> weight;
    for (int i = 0; i < 2; ++i) {
      score[i] = score_branch(heads_[i]->forward(r[i].feature), sample);
      out.confidences[names_[i]] = score[i].mu.detach();
      if (score[i].log_sigma.defined()) out.spreads[names_[i]] = score[i].log_sigma.detach().exp();
      if (with_losses) {
        // The branch's IoU as the evaluation scores it: its answer at its own threshold.
        const at::Tensor target = binarised_iou(r[i].answer, batch.targets, branch_threshold(i));
        out.losses["iou_" + names_[i]] =
            at::smooth_l1_loss(score[i].sampled, target) * options_.iou_weight;
      }
      // Without wico.confidence_from_seg the confidences learn from their IoU target alone.
      weight[i] = options_.confidence_from_seg ? score[i].sampled : score[i].sampled.detach();
    }
    fused = blend(r[0].blend_map, weight[0], r[1].blend_map, weight[1], options_.blend);  // Eq. 12
  } else if (options_.integration == Integration::kAverage) {
    fused = combine_fixed(options_.integration, r[0].blend_map, r[1].blend_map);
  } else {
    // Intersection and union of the branches' own binary results (each at its own threshold).
    fused = combine_fixed(options_.integration, (r[0].answer > branch_threshold(0)).to(r[0].answer.dtype()),
                          (r[1].answer > branch_threshold(1)).to(r[1].answer.dtype()));
  }
  if (!learns_confidences(options_.integration)) {
    // The matcher's own score of its choice: the top-down branch's confidence without GSI.
    for (int i = 0; i < 2; ++i) {
      if (members_[i].top_down) out.confidences[names_[i]] = r[i].confidence.detach();
    }
  }
  if (with_losses) {
    const at::Tensor p = fused.clamp(1e-4, 1 - 1e-4);
    out.losses["seg"] = (at::binary_cross_entropy(p, batch.targets) + nn::soft_dice_loss(fused, batch.targets)) *
                        options_.seg_weight;
  }
  synchronize_device(device);
  out.seconds["wico"] = seconds_since(wico_start);
  for (int i = 0; i < 2; ++i) out.probabilities[names_[i]] = r[i].answer;
  out.probabilities["fused"] = fused;
  return out;
}

double WicoModel::threshold(const std::string& branch) const {
  if (branch == "fused") return options_.tau;
  WICO_CHECK(branch == names_[0] || branch == names_[1], "this WiCo pair has no branch '", branch, "'");
  return branch_threshold(branch == names_[0] ? 0 : 1);
}

double WicoModel::branch_threshold(int i) const {
  const nn::RisModel& m = *members_[static_cast<std::size_t>(i)].model;
  return m.threshold(m.result_branch());
}

}  // namespace wico::model

namespace wico {

void add_wico_keys(Schema& schema) {
  schema.texts("wico.branches", {}, "the two branches' config files (model.kind top_down or bottom_up)")
      .texts("wico.branch_set", {}, "overrides 'key=value' applied to both branch configs")
      .flag("wico.cfi", true, "Complementary Feature Interaction (needs one top-down and one bottom-up branch)")
      .text("wico.integration", "gsi", "intersection, union, average, si or gsi (Table 2)",
            {"intersection", "union", "average", "si", "gsi"})
      .real("wico.tau", 0.35, "threshold of the fused map (the paper's tau)", 0.0, 1.0)
      .text("wico.blend", "normalised",
            "si/gsi: paper = Eq. 12 as printed, (P_td c_td + P_bu c_bu) / 2; normalised = divided "
            "by c_td + c_bu (docs/design.md)",
            {"paper", "normalised"})
      .text("wico.td_map", "score",
            "the top-down map in blends and Average: binary = its chosen mask, score = mask x "
            "s_hat (Eq. 11)",
            {"binary", "score"})
      .flag("wico.confidence_from_seg", false,
            "let the fused map's loss reach the sampled confidences too (else they learn from "
            "their IoU target alone)")
      .flag("wico.td_score_stats", false,
            "give the top-down score head the candidate scores' max, margin and entropy too")
      .real("wico.initial_log_sigma", -3.0, "GSI: log sigma of every head at the start")
      .integer("wico.cfi_dim", 256, "width of CFI's interaction layers", 2)
      .integer("wico.cfi_layers", 3, "CFI decoder layers (cross-attention, self-attention, FFN)", 0)
      .integer("wico.cfi_heads", 8, "CFI attention heads", 1)
      .integer("wico.cfi_ffn", 2048, "CFI feed-forward width", 1)
      .integer("wico.score_hidden", 256, "hidden width of GSI's 3-layer score heads", 1)
      .flag("wico.sample_at_eval", false, "sample GSI's confidences at evaluation too (else mu)")
      .real("wico.seg_weight", 1.0, "weight of the fused map's BCE + Dice", 0.0)
      .real("wico.iou_weight", 1.0, "weight of the confidences' smooth-L1 to the true IoU", 0.0)
      .real("wico.score_weight", 1.0, "weight of S_hat's cross-entropy to the referred candidate", 0.0)
      .real("wico.branch_weight", 1.0, "weight of each branch's own training losses (0: none)", 0.0);
}

}  // namespace wico
