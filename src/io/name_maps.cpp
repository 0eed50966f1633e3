// Every original's name map, declared once (worked examples in docs/weights.md; the names and
// shapes come from shared/specs/weights.md section 6).
#include <ATen/ATen.h>

#include <cmath>
#include <mutex>
#include <regex>
#include <string>
#include <utility>

#include "wico/core/error.h"
#include "wico/io/name_map.h"

namespace wico::io {

NameRule::NameRule(std::string p, std::string r)
    : pattern(std::move(p)), replacement(std::move(r)), regex(pattern, std::regex::ECMAScript) {}

at::Tensor resize_relative_position_table(const at::Tensor& table, std::int64_t target_rows) {
  const auto side = static_cast<std::int64_t>(std::lround(std::sqrt(double(table.size(0)))));
  const auto target_side = static_cast<std::int64_t>(std::lround(std::sqrt(double(target_rows))));
  WICO_CHECK(side * side == table.size(0) && target_side * target_side == target_rows,
             "relative position tables must have a square number of rows");
  const std::int64_t heads = table.size(1);
  const at::Tensor image = table.to(at::kFloat).permute({1, 0}).reshape({1, heads, side, side});
  const at::Tensor resized =
      at::upsample_bicubic2d(image, {target_side, target_side}, /*align_corners=*/false);
  return resized.reshape({heads, target_rows}).permute({1, 0}).contiguous().to(table.scalar_type());
}

namespace {

// Swin's relative position bias tables of another window, resized; every other shape must match.
std::optional<at::Tensor> adapt_swin(const std::string& name, const at::Tensor& file,
                                     const at::Tensor& model) {
  const std::string suffix = "relative_position_bias_table";
  if (name.size() < suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0 ||
      file.dim() != 2 || model.dim() != 2 || file.size(1) != model.size(1)) {
    return std::nullopt;
  }
  return resize_relative_position_table(file, model.size(0));
}

// A regex matching `literal` exactly.
std::string out_pattern(const std::string& literal) {
  std::string out;
  for (const char c : literal) {
    if (std::string("\\^$.|?*+()[]{}").find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

void drop(NameMap& m, const std::string& pattern, const std::string& reason) {
  m.drops.emplace_back(pattern);
  m.drop_reasons.push_back(reason);
}

// Keras h5 names are "<layer>/<scopes>/<variable>:0" (read_keras_h5): `layer`'s variable `var`
// (a regex) under any scope (Keras's name scopes, a tf.variable_scope around the GRU).
std::string keras_name(const std::string& layer, const std::string& var) {
  return "^" + out_pattern(layer) + "/(.*/)?" + var + ":0$";
}

void add_keras_cbl(NameMap& m, int conv, int bn, const std::string& ours) {
  m.renames.emplace_back(keras_name("conv2d_" + std::to_string(conv), "kernel"),
                         ours + ".conv.weight");
  const std::string layer = "batch_normalization_" + std::to_string(bn);
  m.renames.emplace_back(keras_name(layer, "gamma"), ours + ".bn.weight");
  m.renames.emplace_back(keras_name(layer, "beta"), ours + ".bn.bias");
  m.renames.emplace_back(keras_name(layer, "moving_mean"), ours + ".bn.running_mean");
  m.renames.emplace_back(keras_name(layer, "moving_variance"), ours + ".bn.running_var");
}

void add_keras_batch_norm(NameMap& m, int bn, const std::string& ours) {
  const std::string layer = "batch_normalization_" + std::to_string(bn);
  m.renames.emplace_back(keras_name(layer, "gamma"), ours + ".weight");
  m.renames.emplace_back(keras_name(layer, "beta"), ours + ".bias");
  m.renames.emplace_back(keras_name(layer, "moving_mean"), ours + ".running_mean");
  m.renames.emplace_back(keras_name(layer, "moving_variance"), ours + ".running_var");
}

// A Keras layer with kernel and bias (Dense, a Conv2D with bias) -> ours.weight / ours.bias.
void add_keras_affine(NameMap& m, const std::string& layer, const std::string& ours) {
  m.renames.emplace_back(keras_name(layer, "kernel"), ours + ".weight");
  m.renames.emplace_back(keras_name(layer, "bias"), ours + ".bias");
}

// keras-multi-head's <layer>_Wq, _bq, ..., _Wo, _bo -> KerasAttention's query/key/value/output.
void add_keras_attention(NameMap& m, const std::string& layer, const std::string& ours) {
  const std::pair<const char*, const char*> parts[] = {
      {"q", "query"}, {"k", "key"}, {"v", "value"}, {"o", "output"}};
  for (const auto& [p, name] : parts) {
    m.renames.emplace_back(keras_name(layer, "[^/]*_W" + std::string(p)), ours + "." + name + ".weight");
    m.renames.emplace_back(keras_name(layer, "[^/]*_b" + std::string(p)), ours + "." + name + ".bias");
  }
}

void add_keras_transformer_block(NameMap& m, const std::string& keras, const std::string& ours,
                                 const std::string& norm) {
  add_keras_attention(m, keras, ours);
  m.renames.emplace_back(keras_name(keras + "-Norm", "gamma"), norm + ".weight");
  m.renames.emplace_back(keras_name(keras + "-Norm", "beta"), norm + ".bias");
}

void add_keras_feed_forward(NameMap& m, const std::string& keras, const std::string& ours) {
  m.renames.emplace_back(keras_name(keras, "[^/]*_W1"), ours + ".ffn.inner.weight");
  m.renames.emplace_back(keras_name(keras, "[^/]*_b1"), ours + ".ffn.inner.bias");
  m.renames.emplace_back(keras_name(keras, "[^/]*_W2"), ours + ".ffn.outer.weight");
  m.renames.emplace_back(keras_name(keras, "[^/]*_b2"), ours + ".ffn.outer.bias");
  m.renames.emplace_back(keras_name(keras + "-Norm", "gamma"), ours + ".ffn_norm.weight");
  m.renames.emplace_back(keras_name(keras + "-Norm", "beta"), ours + ".ffn_norm.bias");
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Keras layouts -> ours: Conv2D kernels HWIO -> OIHW; Dense kernels and the attention and
// feed-forward matrices [in, out] -> Linear's [out, in]; the GRU's kept (KerasGru is in Keras's).
at::Tensor keras_to_ours(const std::string& name, const at::Tensor& t) {
  if (name.find("_gru_") != std::string::npos) return t;
  const std::string var = name.substr(name.rfind('/') + 1);
  if (t.dim() == 4 && var == "kernel:0") return t.permute({3, 2, 0, 1}).contiguous();
  static const std::regex matrix("(^kernel|_W[qkvo12]):0$");
  if (t.dim() == 2 && std::regex_search(var, matrix)) return t.t().contiguous();
  return t;
}

// What every Swin classification checkpoint needs to become a segmentation backbone.
void add_swin_rules(NameMap& m, const std::string& index_reason) {
  drop(m, "^head\\.", "the classifier");
  drop(m, "relative_position_index$", index_reason);
  drop(m, "^norm\\.", "the classifier's final norm; the segmentation backbone has norm0..norm3");
  m.expected_missing.emplace_back("relative_position_index$");
  m.expected_missing.emplace_back("^norm[0-9]+\\.");
  m.adapt = adapt_swin;
  m.adapt_description = "relative position bias tables resized bicubically to the window";
}

// detectron2's ResNet names (stem, res2..res5, convN.norm, shortcut) -> torchvision's (ours),
// under `prefix` (empty, or "backbone\\." inside a Mask2Former file).
void add_detectron2_resnet_renames(NameMap& m, const std::string& prefix, const std::string& out) {
  m.renames.emplace_back("^" + prefix + "stem\\.conv1\\.norm\\.", out + "bn1.");
  m.renames.emplace_back("^" + prefix + "stem\\.conv1\\.", out + "conv1.");
  for (int stage = 2; stage <= 5; ++stage) {
    m.renames.emplace_back("^" + prefix + "res" + std::to_string(stage) + "\\.(\\d+)\\.",
                           out + "layer" + std::to_string(stage - 1) + ".$1.");
  }
  const std::string layer = "^(" + out_pattern(out) + "layer\\d\\.\\d+)";
  m.renames.emplace_back(layer + "\\.shortcut\\.norm\\.", "$1.downsample.1.");
  m.renames.emplace_back(layer + "\\.shortcut\\.", "$1.downsample.0.");
  m.renames.emplace_back(layer + "\\.conv([123])\\.norm\\.", "$1.bn$2.");
}


std::vector<NameMap> builtin_maps() {
  std::vector<NameMap> maps;
  const std::vector<std::string> timm_sections = {"state_dict_ema.", "model_ema.", "state_dict.",
                                                  "model.", ""};
  {
    NameMap m;
    m.name = "torchvision_resnet";
    m.description = "torchvision ResNet-50/101 (resnet50-*.pth) -> our ResNet trunk";
    m.sections = timm_sections;
    m.strip_common = {"module."};
    drop(m, "^fc\\.", "the ImageNet classifier");
    m.ignored_unexpected.emplace_back("num_batches_tracked$");
    maps.push_back(std::move(m));
  }
  {
    NameMap m;
    m.name = "detectron2_resnet";
    m.description = "detectron2 ResNet (R-50.pkl converted from torchvision, stem/res2..res5) -> our "
                    "ResNet trunk";
    m.sections = {"model.", ""};
    m.strip_common = {"module.", "backbone."};
    add_detectron2_resnet_renames(m, "", "");
    drop(m, "^stem\\.fc\\.", "torchvision's classifier, renamed by detectron2's converter");
    drop(m, "^(sem_seg_head|criterion|pixel_mean|pixel_std)", "not part of the backbone");
    m.ignored_unexpected.emplace_back("num_batches_tracked$");
    maps.push_back(std::move(m));
  }
  {
    NameMap m;
    m.name = "msra_resnet";
    m.description = "MSRA Caffe2 ResNet (detectron2's R-50.pkl, blobs like res2_0_branch2a_w) -> our "
                    "ResNet trunk (BGR input, std 1)";
    m.sections = {"blobs.", ""};
    drop(m, "_momentum$", "Caffe2 solver state");
    drop(m, "^(fc1000|pred)_", "the ImageNet classifier");
    m.renames.emplace_back("^conv1_w$", "conv1.weight");
    m.renames.emplace_back("^res_conv1_bn_s$", "bn1.weight");
    m.renames.emplace_back("^res_conv1_bn_b$", "bn1.bias");
    for (int stage = 2; stage <= 5; ++stage) {
      m.renames.emplace_back("^res" + std::to_string(stage) + "_(\\d+)_",
                             "layer" + std::to_string(stage - 1) + ".$1.");
    }
    m.renames.emplace_back("\\.branch1_w$", ".downsample.0.weight");
    m.renames.emplace_back("\\.branch1_bn_s$", ".downsample.1.weight");
    m.renames.emplace_back("\\.branch1_bn_b$", ".downsample.1.bias");
    const char* branches[] = {"a", "b", "c"};
    for (int i = 0; i < 3; ++i) {
      const std::string n = std::to_string(i + 1);
      m.renames.emplace_back(std::string("\\.branch2") + branches[i] + "_w$", ".conv" + n + ".weight");
      m.renames.emplace_back(std::string("\\.branch2") + branches[i] + "_bn_s$", ".bn" + n + ".weight");
      m.renames.emplace_back(std::string("\\.branch2") + branches[i] + "_bn_b$", ".bn" + n + ".bias");
    }
    // MSRA batch norm is scale and bias only: a frozen BN with mean 0 and variance 1.
    m.expected_missing.emplace_back("running_(mean|var)$");
    maps.push_back(std::move(m));
  }
  {
    NameMap m;
    m.name = "swin";
    m.description = "official Swin (swin_base_patch4_window12_384_22k.pth, key 'model') -> our Swin";
    m.sections = timm_sections;
    m.strip_common = {"module.", "backbone.", "encoder."};
    drop(m, "attn_mask$", "sized by the training resolution; rebuilt per input");
    add_swin_rules(m, "recomputed from the window");
    maps.push_back(std::move(m));
  }
  {
    NameMap m;
    m.name = "torchvision_swin";
    m.description = "torchvision Swin (swin_t/s/b, features.*) -> our Swin";
    m.sections = timm_sections;
    m.strip_common = {"module."};
    m.renames.emplace_back("^features\\.0\\.0\\.", "patch_embed.proj.");
    m.renames.emplace_back("^features\\.0\\.2\\.", "patch_embed.norm.");
    for (int stage = 0; stage < 4; ++stage) {
      m.renames.emplace_back("^features\\." + std::to_string(2 * stage + 1) + "\\.(\\d+)\\.",
                             "layers." + std::to_string(stage) + ".blocks.$1.");
      if (stage < 3) {
        m.renames.emplace_back("^features\\." + std::to_string(2 * stage + 2) + "\\.",
                               "layers." + std::to_string(stage) + ".downsample.");
      }
    }
    m.renames.emplace_back("\\.mlp\\.0\\.", ".mlp.fc1.");
    m.renames.emplace_back("\\.mlp\\.3\\.", ".mlp.fc2.");
    add_swin_rules(m, "recomputed from the window (torchvision flattens it)");
    maps.push_back(std::move(m));
  }
  {
    NameMap m;
    m.name = "hf_bert";
    m.description = "HuggingFace BERT (bert-base-uncased pytorch_model.bin or model.safetensors) -> "
                    "our BERT";
    m.sections = {""};
    m.strip_common = {"module."};
    m.renames.emplace_back("^bert\\.", "");
    m.renames.emplace_back("LayerNorm\\.gamma$", "LayerNorm.weight");
    m.renames.emplace_back("LayerNorm\\.beta$", "LayerNorm.bias");
    drop(m, "^cls\\.", "the pre-training heads");
    drop(m, "position_ids$", "a constant buffer of newer files");
    m.ignored_unexpected.emplace_back("^pooler\\.");
    maps.push_back(std::move(m));
  }
  {
    NameMap m;
    m.name = "lavt_ris";
    m.description = "LAVT-RIS released checkpoint (refcoco.pth: 'model' + 'bert_model', or lavt_one) "
                    "-> our bottom_up LAVT model";
    m.sections = {""};
    m.renames.emplace_back("^model\\.", "backend.");
    m.renames.emplace_back("^bert_model\\.", "backend.text_encoder.");
    drop(m, "^(optimizer|lr_scheduler|args|epoch)(\\.|$)", "training state");
    m.ignored_unexpected.emplace_back("^backend\\.text_encoder\\.pooler\\.");
    maps.push_back(std::move(m));
  }
  {
    NameMap m;
    m.name = "openai_clip";
    m.description = "OpenAI CLIP ResNet archive (RN50.pt / RN101.pt, TorchScript, float16) -> our "
                    "CLIP backbone (CRIS's connect residual stays random, as in CRIS)";
    m.sections = {"state_dict.", ""};
    m.strip_common = {"module."};
    drop(m, "^(input_resolution|context_length|vocab_size)$", "CLIP's configuration scalars");
    m.expected_missing.emplace_back("^visual\\.attnpool\\.connect\\.");
    m.ignored_unexpected.emplace_back("num_batches_tracked$");
    maps.push_back(std::move(m));
  }
  {
    NameMap m;
    m.name = "cris";
    m.description = "CRIS checkpoint (best_model.pth: 'state_dict' with module.backbone.*, neck.*, "
                    "decoder.*, proj.*) -> our bottom_up CRIS model";
    m.sections = {"state_dict.", ""};
    m.strip_common = {"module."};
    m.renames.emplace_back("^(backbone|neck|decoder|proj)\\.", "backend.$1.");
    drop(m, "^(optimizer|scheduler|epoch|cur_iou|best_iou|prec)(\\.|$)", "training state");
    m.ignored_unexpected.emplace_back("num_batches_tracked$");
    maps.push_back(std::move(m));
  }
  {
    NameMap m;
    m.name = "mask2former";
    m.description = "Mask2Former model zoo (model_final_*.pkl: backbone.*, sem_seg_head.*) -> our "
                    "Mask2Former extractor";
    m.sections = {"model.", ""};
    m.renames.emplace_back("^sem_seg_head\\.", "");
    add_detectron2_resnet_renames(m, "backbone\\.", "backbone.");
    drop(m, "^(pixel_mean|pixel_std)$", "normalisation constants, set by the config");
    m.ignored_unexpected.emplace_back("^criterion\\.");
    m.ignored_unexpected.emplace_back("num_batches_tracked$");
    m.ignored_unexpected.emplace_back("^backbone\\.stem\\.fc\\.");
    maps.push_back(std::move(m));
  }
  {
    NameMap m;
    m.name = "darknet_keras";
    m.description = "Keras Darknet-53 + YOLOv3 head (MCN's yolov3_480000.h5, VLT's best_map.h5: "
                    "conv2d_k, batch_normalization_k) -> our Darknet (cbl.{k-1}; k <= 58)";
    // Keras numbers layers from 1 in creation order; our CBLs from 0. VLT's and YOLOv3's layers
    // past the 58th are other modules.
    for (int k = 1; k <= 58; ++k) {
      const std::string keras = std::to_string(k), ours = "cbl." + std::to_string(k - 1);
      m.renames.emplace_back("^conv2d_" + keras + "/conv2d_" + keras + "/kernel:0$",
                             ours + ".conv.weight");
      const std::string bn = "^batch_normalization_" + keras + "/batch_normalization_" + keras;
      m.renames.emplace_back(bn + "/gamma:0$", ours + ".bn.weight");
      m.renames.emplace_back(bn + "/beta:0$", ours + ".bn.bias");
      m.renames.emplace_back(bn + "/moving_mean:0$", ours + ".bn.running_mean");
      m.renames.emplace_back(bn + "/moving_variance:0$", ours + ".bn.running_var");
    }
    m.ignored_unexpected.emplace_back("^(conv2d|batch_normalization)_[0-9]+/");
    m.expected_missing.emplace_back("num_batches_tracked$");
    m.convert = [](const std::string& file_name, const at::Tensor& t) {
      // Keras convolution kernels are [kh, kw, in, out]; ours [out, in, kh, kw].
      const bool kernel = t.dim() == 4 && file_name.size() >= 9 &&
                          file_name.compare(file_name.size() - 9, 9, "/kernel:0") == 0;
      return kernel ? t.permute({3, 2, 0, 1}).contiguous() : t;
    };
    m.convert_description = "Keras HWIO kernels -> OIHW";
    maps.push_back(std::move(m));
  }
  {
    NameMap m;
    m.name = "darknet";
    m.description = "Darknet's own .weights (yolov3.weights, darknet53.conv.74; read section by "
                    "section in the network's layout, conv_i) -> our Darknet (cbl.i)";
    // With batch_normalize, Darknet's per-filter "biases" are the batch norm's beta.
    m.renames.emplace_back("^conv_([0-9]+)\\.weights$", "cbl.$1.conv.weight");
    m.renames.emplace_back("^conv_([0-9]+)\\.biases$", "cbl.$1.bn.bias");
    m.renames.emplace_back("^conv_([0-9]+)\\.scales$", "cbl.$1.bn.weight");
    m.renames.emplace_back("^conv_([0-9]+)\\.rolling_mean$", "cbl.$1.bn.running_mean");
    m.renames.emplace_back("^conv_([0-9]+)\\.rolling_variance$", "cbl.$1.bn.running_var");
    m.expected_missing.emplace_back("num_batches_tracked$");
    maps.push_back(std::move(m));
  }
  {
    NameMap m;
    m.name = "vlt_keras";
    m.description = "VLT's Keras model (best_map.h5, any Keras save layout; the original's depths: "
                    "conv2d_1..80, dense_1..12, bidirectional_1, multi_head_attention_1, "
                    "Encoder-/Decoder-*) -> our bottom_up VLT model";
    // The Keras layer names a fresh session gives the original's layers in creation order
    // (../shared/specs/vlt.md section 12; checked against scripts/make_vlt_fixtures.py).
    for (int k = 1; k <= 58; ++k) add_keras_cbl(m, k, k, "backend.backbone.cbl." + std::to_string(k - 1));
    for (const char* d : {"forward", "backward"}) {
      const std::string gru = std::string(d) + "_gru_1";
      for (const char* v : {"kernel", "recurrent_kernel", "bias"}) {
        m.renames.emplace_back(keras_name("bidirectional_1", gru + "/" + v),
                               "backend.text." + std::string(d) + "_gru." + v);
      }
    }
    add_keras_affine(m, "dense_1", "backend.text.attention");
    add_keras_cbl(m, 59, 59, "backend.fusion_reduce");
    add_keras_cbl(m, 60, 60, "backend.fusion_expand");
    add_keras_affine(m, "dense_2", "backend.fusion_gate");
    add_keras_batch_norm(m, 61, "backend.fusion_gate_norm");
    add_keras_batch_norm(m, 62, "backend.fusion_norm");
    const char* neck[] = {"mid_lateral", "mid_out", "query_lateral", "query_out", "tf_reduce",
                          "tf_expand", "tf_lateral", "tf_out", "tf_proj"};
    for (int i = 0; i < 9; ++i) add_keras_cbl(m, 61 + i, 63 + i, std::string("backend.") + neck[i]);
    for (int i = 0; i < 3; ++i) {
      add_keras_cbl(m, 70 + i, 72 + i, "backend.query_convs." + std::to_string(i));
    }
    add_keras_affine(m, "conv2d_73", "backend.query_maps");
    const char* dense[] = {"query_vectors", "word_features", "query_in", "key_in", "value_in"};
    for (int i = 0; i < 5; ++i) {
      add_keras_affine(m, "dense_" + std::to_string(3 + i), std::string("backend.") + dense[i]);
    }
    add_keras_attention(m, "multi_head_attention_1", "backend.word_attention");
    for (int i = 1; i <= 2; ++i) {
      const std::string e = "Encoder-" + std::to_string(i), d = "Decoder-" + std::to_string(i);
      const std::string oe = "backend.encoder." + std::to_string(i - 1);
      const std::string od = "backend.decoder." + std::to_string(i - 1);
      add_keras_transformer_block(m, e + "-MultiHeadSelfAttention", oe + ".self_attention",
                                  oe + ".self_norm");
      add_keras_feed_forward(m, e + "-FeedForward", oe);
      add_keras_transformer_block(m, d + "-MultiHeadSelfAttention", od + ".self_attention",
                                  od + ".self_norm");
      add_keras_transformer_block(m, d + "-MultiHeadQueryAttention", od + ".cross_attention",
                                  od + ".cross_norm");
      add_keras_feed_forward(m, d + "-FeedForward", od);
    }
    const char* balance[] = {"balance_query", "balance_output", "balance_fuse",
                             "balance_confidence", "responses"};
    for (int i = 0; i < 5; ++i) {
      add_keras_affine(m, "dense_" + std::to_string(8 + i), std::string("backend.") + balance[i]);
    }
    for (int i = 0; i < 6; ++i) add_keras_cbl(m, 74 + i, 75 + i, "backend.head." + std::to_string(i));
    add_keras_affine(m, "conv2d_80", "backend.head_out");
    m.expected_missing.emplace_back("num_batches_tracked$");
    m.expected_missing.emplace_back("^backend\\.embedding\\.");  // vlt.embedding trainable
    m.convert = keras_to_ours;
    m.convert_description = "Keras HWIO kernels -> OIHW, [in, out] matrices -> [out, in], GRU as is";
    maps.push_back(std::move(m));
  }
  return maps;
}

const std::vector<NameMap>& maps() {
  static const std::vector<NameMap> all = builtin_maps();
  return all;
}

}  // namespace

const NameMap& name_map(const std::string& name) {
  for (const NameMap& m : maps()) {
    if (m.name == name) return m;
  }
  std::string known;
  for (const NameMap& m : maps()) known += (known.empty() ? "" : ", ") + m.name;
  throw ConfigError(detail::concat("unknown weight name map '", name, "' (known: ", known, ")"));
}

std::vector<std::string> name_map_names() {
  std::vector<std::string> out;
  for (const NameMap& m : maps()) out.push_back(m.name);
  return out;
}

}  // namespace wico::io
