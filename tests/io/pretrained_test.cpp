// Published starting points named by the config: LAVT's lavt.swin_pretrained and
// lavt.bert_pretrained load into its Swin and BERT when a run starts (the PWAMs, gates and
// decoder stay as initialised and are listed), a missing file names its key and download, and
// train.init's map=NAME:file entries load a published checkpoint into the whole model or a part.
#include "wico/io/pretrained.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_util.h"
#include "wico/core/config.h"
#include "wico/core/error.h"
#include "wico/io/weights.h"
#include "wico/nn/ris_model.h"
#include "wico/train/checkpoint.h"

namespace wico::io {
namespace {

using ::testing::HasSubstr;

const std::string kParity = std::string(WICO_TEST_DATA_DIR) + "/weight_parity/";

// A bottom-up LAVT whose Swin is tests/data/swin's (embed 6, window 3) and whose BERT is
// LAVT-RIS's tiny one, so that both published-layout fixtures fit.
std::vector<std::string> fixture_lavt(const std::string& swin, const std::string& bert) {
  return {"model.kind=bottom_up", "bottom_up.backend=lavt", "text.tokenizer=wordpiece",
          "lavt.swin=nano", "lavt.window=3", "lavt.swin_embed_dim=6", "lavt.swin_heads=[1,2,3,6]",
          "lavt.drop_path=0", "lavt.fusion_heads=[1,1,1,1]", "lavt.bert=tiny",
          "lavt.bert_vocab=128", "lavt.bert_train_layers=-1", "lavt.swin_pretrained=" + swin,
          "lavt.bert_pretrained=" + bert};
}

TEST(Pretrained, LavtLoadsItsSwinAndBertAndListsWhatStaysInitialised) {
  const Config config = Config::defaults(
      fixture_lavt(kParity + "swin_official.pth", kParity + "bert_hf.safetensors"));
  auto model = nn::build_model(config);
  const auto reports = load_pretrained_weights(*model);
  ASSERT_EQ(reports.size(), 2u);
  const ImportReport& swin = reports[0];
  EXPECT_EQ(swin.map, "swin");
  EXPECT_TRUE(swin.unexpected.empty()) << swin.table();
  EXPECT_TRUE(swin.mismatched.empty()) << swin.table();
  // LAVT's own parts inside the Swin stages stay to be trained, and are listed.
  EXPECT_TRUE(std::find(swin.missing.begin(), swin.missing.end(),
                        "layers.0.fusion.vis_project.0.weight") != swin.missing.end())
      << swin.table();
  EXPECT_THAT(swin.table(), HasSubstr("layers.0.res_gate.2.weight"));
  const ImportReport& bert = reports[1];
  EXPECT_EQ(bert.map, "hf_bert");
  EXPECT_TRUE(bert.clean()) << bert.table();
  // The weights are the file's.
  const WeightFile file = read_weights(kParity + "swin_official.pth");
  const auto params = model->named_parameters();
  EXPECT_TRUE(params["backend.backbone.layers.1.blocks.1.attn.qkv.weight"].equal(
      *file.find("model.layers.1.blocks.1.attn.qkv.weight")));
}

TEST(Pretrained, AMissingFileNamesTheKeyAndTheDownload) {
  const Config config = Config::defaults(fixture_lavt("/nonexistent/swin.pth", ""));
  auto model = nn::build_model(config);
  const std::string message =
      test::thrown_message<ConfigError>([&] { load_pretrained_weights(*model); });
  EXPECT_THAT(message, HasSubstr("lavt.swin_pretrained"));
  EXPECT_THAT(message, HasSubstr("/nonexistent/swin.pth"));
  EXPECT_THAT(message, HasSubstr("swin_base_patch4_window12_384_22k.pth"));
}

TEST(Pretrained, AWholeModelInitMakesTheComponentsFilesUnneeded) {
  EXPECT_FALSE(train::init_replaces_whole_model(Config::defaults()));
  EXPECT_TRUE(train::init_replaces_whole_model(
      Config::defaults({"train.init=['map=lavt_ris:refcoco.pth']"})));
  EXPECT_TRUE(train::init_replaces_whole_model(Config::defaults({"train.init=['runs/a/best.pt']"})));
  EXPECT_FALSE(train::init_replaces_whole_model(
      Config::defaults({"train.init=['alpha=runs/a/best.pt', 'beta=map=lavt_ris:x.pth']"})));
}

TEST(Pretrained, TrainInitTakesPublishedFilesThroughAMap) {
  auto model = nn::build_model(Config::defaults(fixture_lavt("", "")));
  const auto before = model->named_parameters()["backend.text_encoder.encoder.layer.0.output.dense.weight"].clone();
  // A part, partially: the BERT inside the bottom-up model.
  const Config part = Config::defaults(
      {"train.init=['backend.text_encoder=map=hf_bert:" + kParity + "bert_hf.bin']"});
  train::load_initial_weights(*model, part);
  const auto after = model->named_parameters()["backend.text_encoder.encoder.layer.0.output.dense.weight"];
  EXPECT_FALSE(after.equal(before));
  const WeightFile file = read_weights(kParity + "bert_hf.bin");
  EXPECT_TRUE(after.equal(*file.find("bert.encoder.layer.0.output.dense.weight")));
  // The whole model, strictly: a BERT file cannot fill a LAVT.
  const Config whole = Config::defaults({"train.init=['map=hf_bert:" + kParity + "bert_hf.bin']"});
  EXPECT_THAT(test::thrown_message<Error>([&] { train::load_initial_weights(*model, whole); }),
              HasSubstr("strict import"));
  EXPECT_THAT(test::thrown_message<ConfigError>([&] {
                train::load_initial_weights(*model, Config::defaults({"train.init=['map=hf_bert']"}));
              }),
              HasSubstr("expected map=NAME:path"));
  EXPECT_THAT(test::thrown_message<ConfigError>([&] {
                train::load_initial_weights(
                    *model, Config::defaults({"train.init=['nosuch=map=hf_bert:" + kParity + "bert_hf.bin']"}));
              }),
              HasSubstr("no part named 'nosuch'"));
}

}  // namespace
}  // namespace wico::io
