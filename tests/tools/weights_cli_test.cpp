// `wico weights` as a user runs it: inspect prints each format's table, maps lists the maps,
// convert turns LAVT-RIS's checkpoint (written by the original's code) into a wico checkpoint,
// export writes it as safetensors that Python reads back equal to the original's tensors, and
// bad input gives the right exit codes and messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"

namespace wico {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using test::run_wico;
using test::TempDir;

const std::string kData = WICO_TEST_DATA_DIR;
const std::string kSource = WICO_SOURCE_DIR;

// The LAVT-RIS fixture's sizes on top of the tiny LAVT config (tests/data/lavt_ris meta).
const char* const kFixtureSizes =
    " --set lavt.swin_embed_dim=8 --set lavt.swin_depths=[2,2,2,2] --set lavt.swin_heads=[1,2,4,8]"
    " --set lavt.window=4 --set lavt.swin_mlp_ratio=2 --set lavt.fusion_heads=[1,2,2,4]"
    " --set lavt.bert_hidden=32 --set lavt.bert_layers=2 --set lavt.bert_heads=4"
    " --set lavt.bert_intermediate=64 --set lavt.bert_positions=32 --set lavt.bert_vocab=128"
    " --set lavt.bert_train_layers=2";

TEST(WeightsCli, InspectPrintsFormatTensorsAndEntries) {
  const auto zip = run_wico("weights inspect " + kData + "/weights/checkpoint.pth");
  EXPECT_EQ(zip.exit_code, 0) << zip.output;
  EXPECT_THAT(zip.output, HasSubstr("format: torch zip (archive root 'checkpoint')"));
  EXPECT_THAT(zip.output, HasSubstr("model.0.weight"));
  EXPECT_THAT(zip.output, HasSubstr("args.model = 'lavt'"));
  EXPECT_THAT(zip.output, HasSubstr("epoch = 3"));
  const auto legacy = run_wico("weights inspect " + kData + "/weights/module_legacy.pth");
  EXPECT_THAT(legacy.output, HasSubstr("format: torch legacy"));
  EXPECT_THAT(legacy.output, HasSubstr("model.proj.weight"));
  const auto st = run_wico("weights inspect " + kData + "/weights/good.safetensors");
  EXPECT_THAT(st.output, HasSubstr("format: safetensors"));
  EXPECT_THAT(st.output, HasSubstr("metadata format = pt"));
  const auto jit = run_wico("weights inspect " + kData + "/weights/scripted_fp16.pt");
  EXPECT_THAT(jit.output, HasSubstr("format: TorchScript"));
  EXPECT_THAT(jit.output, HasSubstr("Half"));
  const auto pkl = run_wico("weights inspect " + kData + "/weights/d2_p2.pkl");
  EXPECT_THAT(pkl.output, HasSubstr("format: pickle"));
  EXPECT_THAT(pkl.output, HasSubstr("__author__ = 'wico-fixtures'"));
  const auto mapped = run_wico("weights inspect " + kData +
                               "/weight_parity/resnet_detectron2.pkl --map detectron2_resnet");
  EXPECT_EQ(mapped.exit_code, 0) << mapped.output;
  EXPECT_THAT(mapped.output, HasSubstr("layer1.0.bn1.weight"));
  EXPECT_THAT(mapped.output, HasSubstr("(not imported)"));  // stem.fc, dropped
}

TEST(WeightsCli, MapsListsEveryOriginal) {
  const auto r = run_wico("weights maps");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* map : {"torchvision_resnet", "detectron2_resnet", "msra_resnet", "swin",
                          "torchvision_swin", "hf_bert", "lavt_ris", "mask2former"}) {
    EXPECT_THAT(r.output, HasSubstr(map));
  }
}

TEST(WeightsCli, ConvertAndExportRoundTripTheOriginalsTensors) {
  TempDir dir;
  const std::string ckpt = (dir.path() / "lavt.pt").string();
  const auto convert = run_wico("weights convert " + kData + "/lavt_ris/lavt_ris_tiny.pth --map lavt_ris -c " +
                                kSource + "/configs/tiny/lavt.yaml" + kFixtureSizes + " --out " + ckpt);
  ASSERT_EQ(convert.exit_code, 0) << convert.output;
  EXPECT_THAT(convert.output, HasSubstr("through map 'lavt_ris'"));
  EXPECT_THAT(convert.output, HasSubstr("(100.0%)"));
  EXPECT_THAT(convert.output, HasSubstr("dropped /^(optimizer|lr_scheduler|args|epoch)(\\.|$)/"));
  // Nothing the user had is replaced without --force.
  const auto again = run_wico("weights convert " + kData + "/lavt_ris/lavt_ris_tiny.pth --map lavt_ris -c " +
                              kSource + "/configs/tiny/lavt.yaml" + kFixtureSizes + " --out " + ckpt);
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_THAT(again.output, HasSubstr("--force"));

  const std::string out = (dir.path() / "lavt.safetensors").string();
  const auto exported = run_wico("weights export " + ckpt + " --out " + out);
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  // Python (no safetensors package on Debian: the format is read by hand) against torch.load.
  const std::string script = dir.write("check.py", R"PY(
import json, struct, sys
import numpy as np, torch
data = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', data[:8])[0]
header = json.loads(data[8:8 + n])
meta = header.pop('__metadata__')
assert 'lavt' in meta['wico_config'], meta.keys()
types = {'F32': np.float32, 'I64': np.int64}
ours = {k: np.frombuffer(data[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]],
                         dtype=types[v['dtype']]).reshape(v['shape']) for k, v in header.items()}
orig = torch.load(sys.argv[2], map_location='cpu')
expected = {'backend.' + k: v for k, v in orig['model'].items()}
expected.update({'backend.text_encoder.' + k: v for k, v in orig['bert_model'].items()})
assert set(ours) == set(expected), sorted(set(ours) ^ set(expected))[:10]
for k, v in expected.items():
    assert np.array_equal(ours[k], v.numpy()), k
print('equal', len(ours))
)PY").string();
  const auto py = test::run_command("/usr/bin/python3 " + script + " " + out + " " + kData +
                                    "/lavt_ris/lavt_ris_tiny.pth");
  EXPECT_EQ(py.exit_code, 0) << py.output;
  EXPECT_THAT(py.output, HasSubstr("equal 264"));
}

TEST(WeightsCli, BadInputGivesClearErrors) {
  TempDir dir;
  const auto missing = run_wico("weights inspect " + (dir.path() / "nope.pth").string());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.output, HasSubstr("nope.pth"));
  const auto junk = dir.write("junk.bin", "not a weight file at all");
  const auto r = run_wico("weights inspect " + junk.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("unknown weight file format"));
  const auto map = run_wico("weights inspect " + kData + "/weights/state_dict.pth --map nosuch");
  EXPECT_EQ(map.exit_code, 2);
  EXPECT_THAT(map.output, HasSubstr("known: "));
  // A strict conversion that does not fit names what is missing and writes nothing.
  const std::string ckpt = (dir.path() / "x.pt").string();
  const auto strict = run_wico("weights convert " + kData + "/lavt_ris/lavt_ris_tiny.pth --map lavt_ris -c " +
                               kSource + "/configs/tiny/lavt.yaml --out " + ckpt);
  EXPECT_EQ(strict.exit_code, 1);
  EXPECT_THAT(strict.output, HasSubstr("shape mismatch, skipped"));
  EXPECT_FALSE(fs::exists(ckpt));
}

}  // namespace
}  // namespace wico
