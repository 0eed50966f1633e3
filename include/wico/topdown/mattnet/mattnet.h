// MAttNet (Yu et al., CVPR 2018; lichengunc/MAttNet) as the top-down instance matcher: a bi-LSTM
// expression encoder whose three phrase attentions give subject, location and relationship phrase
// embeddings and whose final hidden states weight the three modules; each module matches its
// phrase against a visual representation of the candidate in a joint space (cosine), and the
// overall score is the weighted sum of the module scores.
//
// Parameter names follow the original's state_dict (rnn_encoder.*, weight_fc, sub_attn, loc_attn,
// rel_attn, sub_encoder.* with att_fc, sub_matching.*, loc_encoder.*, loc_matching.*,
// rel_encoder.*, rel_matching.*): a JointMatching state dict loads by name
// (tests/topdown/mattnet_parity_test.cpp); embedding_fc is ours.
//
// Visual inputs as MAttNet's (gt_mrcn_loader.py, mrcn box_to_spatial_fc7), from the extractor's
// trunk rather than a separate Mask R-CNN:
//   pool5   = a 7x7 ROI-align of C4 (res4, 1024 channels at R50/R101) inside the candidate's box
//             (2x2 bilinear samples per cell, averaged); the original crops its res101 C4 to
//             7x7 with bilinear crop pooling (one sample per cell), a deviation kept because
//             ROI-align is what the Mask R-CNN heads it stands in for use;
//   fc7     = a 7x7 ROI-align of C5 (res5, 2048 channels) inside the box. The original runs res5
//             (stride 1) on each pool5 crop; we pool the res5 output the trunk already computed
//             for the whole image (one res5 per image instead of one per candidate; a cell then
//             also sees what lies around the box);
//   cxt_fc7 = a context object's fc7 averaged over its 49 cells (the original's box_to_fc7);
//   lfeats, dif_lfeats, cxt_lfeats from the boxes, as the original's.
// The attribute branch (att_dropout + att_fc on the mean att_fuse feature, weighted BCE on the
// referents that have attribute words) has data.attribute_words outputs (0: no branch).
//
// Deviations, each for a reason:
//  - Batch norm and the relationship MLP see only real rows (valid candidates, valid contexts), so
//    padding never changes a valid output; in training, a batch norm given a single row uses its
//    running statistics (PyTorch's would throw).
//  - The relationship score is the max over valid contexts (0 without one); the original's
//    masks * cossim also let a padded slot's 0 win over negative cosines.
//  - Phrase attention is a softmax over the real words (the original's softmax-mask-renormalise
//    is the same function).
//  - logits = score_scale * overall score: cosines live in [-1, 1], too flat for a softmax; S is
//    their softmax over the valid candidates, trained by an added cross-entropy (mattnet.ce_weight)
//    beside MAttNet's ranking loss.
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>

#include <cstdint>
#include <map>
#include <string>

#include "wico/nn/batch_norm.h"
#include "wico/topdown/instances.h"

namespace wico {
class Config;
class Schema;
}  // namespace wico

namespace wico::topdown {

struct MattnetOptions {
  std::int64_t vocab_size = 30522;  // word ids; from_config: the tokenizer's unless set
  std::int64_t pool5_dim = 1024;  // channels of MatcherInput::c4
  std::int64_t fc7_dim = 2048;    // channels of MatcherInput::c5
  std::int64_t word_embedding_size = 512;
  std::int64_t word_vec_size = 512;  // the word MLP's output, the phrase embeddings' size
  std::int64_t rnn_hidden_size = 512;
  std::int64_t rnn_num_layers = 1;
  bool bidirectional = true;
  double word_dropout = 0.5;  // after the word embedding
  double rnn_dropout = 0.2;   // between stacked LSTM layers
  std::int64_t jemb_dim = 512;
  double jemb_dropout = 0.1;
  double visual_init_norm = 20.0;  // Normalize_Scale's initial norm
  std::int64_t grid_size = 7;      // the subject module's ROI grid
  std::int64_t num_cxt = 5;        // relationship contexts per candidate
  bool with_st = true;             // same-class candidates may be contexts (after others)
  double score_scale = 10.0;       // logits = score_scale * overall score
  std::int64_t embedding_dim = 0;  // C of the embeddings; 0: jemb_dim
  double margin = 0.1;
  double visual_rank_weight = 1.0;
  double lang_rank_weight = 1.0;
  double visual_sample_ratio = 0.3;  // chance of a same-class negative (the original's ratio)
  double ce_weight = 1.0;            // our cross-entropy over the candidates' logits
  std::int64_t num_atts = 0;         // attribute head outputs (data.attribute_words; 0: none)
  double att_dropout = 0.2;          // the original's visual_drop_out, before att_fc
  double att_weight = 1.0;           // the attribute BCE's weight
  // Ours, an option: the candidates' decoder query embeddings (MatcherInput::candidate_embeddings,
  // this many channels) as an extra fc7-like vector, beside the subject's attended feature and
  // each context's fc7; 0: off (the original's layout).
  std::int64_t query_dim = 0;

  // Reads mattnet.*; vocab_size from the tokenizer (text.*) when mattnet.vocab_size is 0,
  // num_atts from data.attribute_words.
  static MattnetOptions from_config(const Config& config);
  // Throws ConfigError naming the mattnet.* key of a bad value.
  void validate() const;
  std::int64_t output_dim() const { return embedding_dim > 0 ? embedding_dim : jemb_dim; }
};

// The mattnet.* configuration keys (listed in src/topdown/components.cpp).
void add_mattnet_keys(Schema& schema);

// The original's location features from boxes [B, N, 4] (x1, y1, x2, y2 fractions), classes
// [B, N] and valid [B, N]. Offsets of a box c to a reference box r are
// ((c.x1 - r.cx) / r.w, (c.y1 - r.cy) / r.h, (c.x2 - r.cx) / r.w, (c.y2 - r.cy) / r.h,
//  c.w * c.h / (r.w * r.h)); neighbours are ordered by centre distance (ties by index).
struct LocationFeatures {
  at::Tensor lfeats;  // [B, N, 5] x1, y1, x2, y2, area
  at::Tensor
      dif_lfeats;  // [B, N, 25] offsets to the 5 nearest other same-class candidates, 0-padded
  at::Tensor cxt_index;   // [B, N, K] the contexts: nearest other-class candidates, then same-class
  at::Tensor cxt_lfeats;  // [B, N, K, 5] offsets to the contexts, 0-padded
  at::Tensor cxt_valid;   // [B, N, K] bool
};
LocationFeatures location_features(const at::Tensor& boxes, const at::Tensor& classes,
                                   const at::Tensor& valid, std::int64_t num_cxt, bool with_st);

// features [B, D, h, w], boxes [B, N, 4] fractions -> [B, N, grid * grid, D], row-major cells.
at::Tensor roi_grid(const at::Tensor& features, const at::Tensor& boxes, std::int64_t grid);
// features [B, D, h, w], masks [B, N, h', w'] in [0, 1] -> [B, N, D]: the features averaged with
// the mask's coverage of each feature cell as weights (an empty mask gives 0).
at::Tensor masked_average(const at::Tensor& features, const at::Tensor& masks);

// MaxMarginCriterion over B samples: sum over samples of
// visual_weight * max(0, margin + visual_unpaired - paired) (where visual_valid) +
// lang_weight * max(0, margin + lang_unpaired - paired) (where lang_valid), divided by B.
at::Tensor max_margin_rank_loss(const at::Tensor& paired, const at::Tensor& visual_unpaired,
                                const at::Tensor& visual_valid, const at::Tensor& lang_unpaired,
                                const at::Tensor& lang_valid, double margin, double visual_weight,
                                double lang_weight);

// Normalize_Scale: L2-normalise the last dimension, times a learned per-channel scale.
class NormalizeScaleImpl : public torch::nn::Module {
 public:
  NormalizeScaleImpl(std::int64_t dim, double init_norm);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;  // [1, dim]
};
TORCH_MODULE(NormalizeScale);

// Linear -> BatchNorm1d -> ReLU -> Dropout -> Linear -> BatchNorm1d on rows [R, in] (the
// original's vis_emb_fc / lang_emb_fc; children named by their index there).
class JointMlpImpl : public torch::nn::Module {
 public:
  JointMlpImpl(std::int64_t in_dim, std::int64_t jemb_dim, double dropout);
  at::Tensor forward(const at::Tensor& x);

 private:
  torch::nn::Linear fc0_{nullptr}, fc4_{nullptr};
  wico::nn::BatchNorm bn1_{nullptr}, bn5_{nullptr};
  torch::nn::Dropout drop3_{nullptr};
};
TORCH_MODULE(JointMlp);

// The original's Matching / RelationMatching: both views to the joint space, L2-normalised.
class MatchingImpl : public torch::nn::Module {
 public:
  MatchingImpl(std::int64_t vis_dim, std::int64_t lang_dim, std::int64_t jemb_dim, double dropout);
  JointMlp vis_emb_fc{nullptr}, lang_emb_fc{nullptr};
};
TORCH_MODULE(Matching);

// The expression's encodings (RNNEncoder + the three PhraseAttentions + weight_fc).
struct MattnetLanguage {
  at::Tensor context;                       // [B, L, dirs * hidden] LSTM outputs, 0 on padding
  at::Tensor hidden;                        // [B, layers * dirs * hidden] final hidden states
  at::Tensor embedded;                      // [B, L, word_vec_size] word vectors after the MLP
  at::Tensor weights;                       // [B, 3] softmax over subject, location, relationship
  at::Tensor sub_attn, loc_attn, rel_attn;  // [B, L], 0 on padding
  at::Tensor sub_phrase, loc_phrase, rel_phrase;  // [B, word_vec_size]
};

// The phrase-independent visual inputs of candidate rows, in the original's layout (its (n, C,
// 7, 7) grids with the cells first: cell = row * 7 + column).
struct MattnetVisual {
  at::Tensor pool5;       // [R, G * G, pool5_dim]
  at::Tensor fc7;         // [R, G * G, fc7_dim]
  at::Tensor lfeats;      // [R, 5]
  at::Tensor dif_lfeats;  // [R, 25]
  at::Tensor cxt_fc7;     // [R, K, fc7_dim]
  at::Tensor cxt_lfeats;  // [R, K, 5]
  at::Tensor cxt_valid;   // [R, K] bool
  at::Tensor query;       // [R, query_dim] (mattnet.query_dim > 0 only)
  at::Tensor cxt_query;   // [R, K, query_dim]
};

// What JointMatching.forward returns, per scored row.
struct MattnetScores {
  at::Tensor overall;     // [R] weighted sum of the module scores
  at::Tensor modules;     // [R, 3] subject, location, relationship cosines
  at::Tensor weights;     // [R, 3] the expression's module weights
  at::Tensor grid_attn;   // [R, G * G] the subject's attention over the grid
  at::Tensor rel_index;   // [R] the context whose cosine won (0 without contexts)
  at::Tensor att_scores;  // [R, num_atts] attribute logits (undefined without the branch)
  at::Tensor joint;       // [R, 3 * jemb] weighted (visual * phrase) joint embeddings
};

// GtMRCNLoader-style attribute loss: BCE with logits, weighted per attribute, averaged over the
// rows and attributes of `logits` [R, A] against `labels` [R, A] (R may be 0: a zero loss).
at::Tensor attribute_loss(const at::Tensor& logits, const at::Tensor& labels,
                          const at::Tensor& weights);

class MattnetMatcher : public InstanceMatcher {
 public:
  explicit MattnetMatcher(MattnetOptions options);

  MatcherOutput forward(const MatcherInput& input) override;
  // {"match_rank": the weighted ranking loss, "match_ce": ce_weight * cross-entropy, "match_att":
  // att_weight * attribute BCE (with attribute labels)}. As the original's training pass, the
  // referents with their expressions, the visual negatives with the same expressions and the
  // referents with the language negatives are scored in one pass (one set of batch-norm
  // statistics). A visual negative is another valid candidate of the sample, same-class with
  // probability visual_sample_ratio (sample_neg_ids; none: term skipped); the language negative
  // is MatcherInput::negative_token_ids (the loader's sentence of another ref of the image);
  // a batch without them (built by hand, or an evaluation batch) uses another sample's
  // expression, a same-class referent's at the same ratio. Draws come from torch's default
  // generator (deterministic under torch::manual_seed).
  std::map<std::string, at::Tensor> loss(const MatcherInput& input, const MatcherOutput& output,
                                         const at::Tensor& target_index) override;
  std::int64_t embedding_dim() const override { return options_.output_dim(); }
  bool uses_query_embeddings() const override { return options_.query_dim > 0; }

  // token_ids / attention_mask [B, L]; padding is packed away from the LSTM.
  MattnetLanguage encode_language(const at::Tensor& token_ids, const at::Tensor& attention_mask);
  // The visual inputs of every candidate, [B * N] rows (sample-major).
  MattnetVisual visual_features(const MatcherInput& input);
  // JointMatching.forward: the rows `rows` of `visual` against the expressions `sentences` [R]
  // (indices into `language`'s batch).
  MattnetScores score(const MattnetVisual& visual, const at::Tensor& rows,
                      const MattnetLanguage& language, const at::Tensor& sentences);
  const MattnetOptions& options() const { return options_; }

 private:
  void check_input(const MatcherInput& input) const;

  MattnetOptions options_;
  // rnn_encoder.{embedding, mlp.0, rnn}
  torch::nn::Embedding embedding_{nullptr};
  torch::nn::Dropout input_dropout_{nullptr};
  torch::nn::Linear word_mlp_{nullptr};
  torch::nn::LSTM rnn_{nullptr};
  torch::nn::Linear weight_fc_{nullptr};
  torch::nn::Linear sub_attn_{nullptr}, loc_attn_{nullptr}, rel_attn_{nullptr};  // *_attn.fc
  // sub_encoder.{*_normalizer, att_fuse.{0, 1}, attn_fuse.{0, 2}}
  NormalizeScale pool5_normalizer_{nullptr}, fc7_normalizer_{nullptr}, att_normalizer_{nullptr},
      phrase_normalizer_{nullptr};
  torch::nn::Linear att_fuse_fc_{nullptr};
  wico::nn::BatchNorm att_fuse_bn_{nullptr};
  torch::nn::Linear attn_fuse_fc0_{nullptr}, attn_fuse_fc2_{nullptr};
  torch::nn::Dropout att_dropout_{nullptr};
  torch::nn::Linear att_fc_{nullptr};  // only with num_atts > 0
  NormalizeScale query_normalizer_{nullptr}, cxt_query_normalizer_{nullptr};  // query_dim > 0
  Matching sub_matching_{nullptr};
  // loc_encoder.{lfeat_normalizer, dif_lfeat_normalizer, fc}
  NormalizeScale lfeat_normalizer_{nullptr}, dif_lfeat_normalizer_{nullptr};
  torch::nn::Linear loc_fc_{nullptr};
  Matching loc_matching_{nullptr};
  // rel_encoder.{vis_feat_normalizer, lfeat_normalizer, fc}
  NormalizeScale cxt_feat_normalizer_{nullptr}, cxt_lfeat_normalizer_{nullptr};
  torch::nn::Linear rel_fc_{nullptr};
  Matching rel_matching_{nullptr};
  torch::nn::Linear embedding_fc_{nullptr};
};

}  // namespace wico::topdown
