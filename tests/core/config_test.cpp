#include "wico/core/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/small_schema.h"
#include "test_util.h"
#include "wico/core/error.h"

namespace wico {
namespace {

using ::testing::HasSubstr;
using test::TempDir;

Schema test_schema() { return test::small_schema(); }

// The message of the ConfigError that `fn` throws.
template <typename Fn>
std::string config_error(Fn fn) {
  return test::thrown_message<ConfigError>(fn);
}

TEST(Config, DefaultsComeFromTheSchema) {
  const Schema schema = test_schema();
  const Config c = Config::defaults({}, schema);
  EXPECT_EQ(c.integer("runtime.threads"), 0);
  EXPECT_DOUBLE_EQ(c.real("train.lr"), 1e-4);
  EXPECT_EQ(c.integers("model.depths"), (std::vector<std::int64_t>{2, 2, 6, 2}));
  EXPECT_EQ(c.origin("train.lr").describe(), "default");
}

TEST(Config, LoadsTypedValuesWithTheirOrigins) {
  TempDir dir;
  const auto file = dir.write("a.yaml",
                              "train:\n  lr: 5e-5\n  amp: yes\nmodel:\n  depths: [2, 2, 18, 2]\n"
                              "data:\n  splits: [testA, testB]\n");
  const Schema schema = test_schema();
  const Config c = Config::load(file, {}, schema);
  EXPECT_DOUBLE_EQ(c.real("train.lr"), 5e-5);
  EXPECT_TRUE(c.flag("train.amp"));
  EXPECT_EQ(c.integers("model.depths"), (std::vector<std::int64_t>{2, 2, 18, 2}));
  EXPECT_EQ(c.texts("data.splits"), (std::vector<std::string>{"testA", "testB"}));
  EXPECT_EQ(c.origin("train.lr").line, 2);
  EXPECT_EQ(c.origin("model.depths").line, 5);
  EXPECT_EQ(c.origin("runtime.threads").describe(), "default");
}

TEST(Config, IntegersAreAcceptedWhereFloatsAreExpected) {
  TempDir dir;
  const Schema schema = test_schema();
  const Config c = Config::load(dir.write("a.yaml", "train:\n  lr: 1\nloss:\n  weights: [1, 2]\n"),
                                {}, schema);
  EXPECT_DOUBLE_EQ(c.real("train.lr"), 1.0);
  EXPECT_EQ(c.reals("loss.weights"), (std::vector<double>{1.0, 2.0}));
}

TEST(Config, BaseFilesAreMergedDeeplyAndOverriddenInOrder) {
  TempDir dir;
  dir.write("base/common.yaml", "train:\n  lr: 0.1\n  amp: true\nruntime:\n  threads: 4\n");
  dir.write("base/model.yaml", "_base_: common.yaml\ntrain:\n  lr: 0.2\nmodel:\n  depths: [1]\n");
  dir.write("base/other.yaml", "model:\n  depths: [3, 3]\n");
  const auto file = dir.write("exp/run.yaml",
                              "_base_: [../base/model.yaml, ../base/other.yaml]\n"
                              "runtime:\n  threads: 8\n");
  const Schema schema = test_schema();
  const Config c = Config::load(file, {}, schema);
  EXPECT_DOUBLE_EQ(c.real("train.lr"), 0.2);  // model.yaml overrides common.yaml
  EXPECT_TRUE(c.flag("train.amp"));           // kept from common.yaml: merge is per key
  EXPECT_EQ(c.integers("model.depths"), (std::vector<std::int64_t>{3, 3}));  // later base wins
  EXPECT_EQ(c.integer("runtime.threads"), 8);  // the file itself wins over its bases
  EXPECT_THAT(c.origin("train.amp").file, HasSubstr("common.yaml"));
}

TEST(Config, OverridesAreTypedByTheSchema) {
  TempDir dir;
  const Schema schema = test_schema();
  const Config c = Config::load(dir.write("a.yaml", "train:\n  lr: 0.5\n"),
                                {"train.lr=1e-5", "train.amp=true", "model.depths=[2, 2, 6]",
                                 "run.name=exp:1", "data.splits=[val]"},
                                schema);
  EXPECT_DOUBLE_EQ(c.real("train.lr"), 1e-5);
  EXPECT_TRUE(c.flag("train.amp"));
  EXPECT_EQ(c.integers("model.depths"), (std::vector<std::int64_t>{2, 2, 6}));
  EXPECT_EQ(c.text("run.name"), "exp:1");
  EXPECT_EQ(c.origin("train.lr").describe(), "--set");
}

TEST(Config, UnknownKeyNamesFileLineAndSuggestion) {
  TempDir dir;
  const auto file = dir.write("a.yaml", "train:\n  lr: 0.1\n  lrr: 0.2\n");
  const Schema schema = test_schema();
  const std::string msg = config_error([&] { Config::load(file, {}, schema); });
  EXPECT_THAT(msg, HasSubstr("a.yaml:3"));
  EXPECT_THAT(msg, HasSubstr("unknown key 'train.lrr'"));
  EXPECT_THAT(msg, HasSubstr("did you mean 'train.lr'?"));
}

TEST(Config, MisspeltSectionsAndKeysFindTheirOwnSectionFirst) {
  const Schema schema = test_schema();
  EXPECT_EQ(schema.closest("trian"), "train");
  EXPECT_EQ(schema.closest("trian.lr"), "train.lr");
  EXPECT_EQ(schema.closest("trian.lrr"), "train.lr");
  EXPECT_EQ(schema.closest("modle.depth"), "model.depths");
  // Within its own section before a nearer last component elsewhere ("lr" is 2 edits from "dir").
  EXPECT_EQ(schema.closest("run.dir"), "run.root");
  EXPECT_EQ(schema.closest("runtime.threds"), "runtime.threads");
  TempDir dir;
  const auto file = dir.write("a.yaml", "trian:\n  lr: 0.1\n");
  const std::string msg = config_error([&] { Config::load(file, {}, schema); });
  EXPECT_THAT(msg, HasSubstr("a.yaml:1: unknown key 'trian' (did you mean 'train'?)"));
}

TEST(Config, KeyInTheWrongSectionSuggestsTheRightOne) {
  const Schema schema = test_schema();
  EXPECT_EQ(schema.closest("train.threads"), "runtime.threads");
  EXPECT_EQ(schema.closest("completely.unrelated_thing"), std::nullopt);
}

TEST(Config, EveryUnknownKeyIsReportedAtOnce) {
  TempDir dir;
  const auto file = dir.write("a.yaml", "foo: 1\ntrain:\n  bar: 2\n");
  const Schema schema = test_schema();
  const std::string msg = config_error([&] { Config::load(file, {}, schema); });
  EXPECT_THAT(msg, HasSubstr("a.yaml:1: unknown key 'foo'"));
  EXPECT_THAT(msg, HasSubstr("a.yaml:3: unknown key 'train.bar'"));
}

TEST(Config, WrongTypeNamesFileLineKeyAndExpectation) {
  TempDir dir;
  const Schema schema = test_schema();
  std::string msg = config_error([&] {
    Config::load(dir.write("a.yaml", "runtime:\n  threads: many\n"), {}, schema);
  });
  EXPECT_THAT(msg, HasSubstr("a.yaml:2: key 'runtime.threads' expects an integer, got 'many'"));
  msg = config_error([&] {
    Config::load(dir.write("b.yaml", "model:\n  depths: [2, x]\n"), {}, schema);
  });
  EXPECT_THAT(msg, HasSubstr("b.yaml:2: key 'model.depths' expects a list of integers, but item 1"));
  msg = config_error([&] { Config::load(dir.write("c.yaml", "train: 3\n"), {}, schema); });
  EXPECT_THAT(msg, HasSubstr("'train' is a section"));
  msg = config_error([&] { Config::load(dir.write("d.yaml", "train:\n  amp: maybe\n"), {}, schema); });
  EXPECT_THAT(msg, HasSubstr("expects a bool (true/false), got 'maybe'"));
}

TEST(Config, OutOfRangeAndBadChoicesAreRejected) {
  TempDir dir;
  const Schema schema = test_schema();
  std::string msg = config_error([&] {
    Config::load(dir.write("a.yaml", "runtime:\n  threads: -1\n"), {}, schema);
  });
  EXPECT_THAT(msg, HasSubstr("a.yaml:2: key 'runtime.threads' = -1 is not accepted; expected a "
                             "value in [0.0, 64.0]"));
  msg = config_error([&] {
    Config::load(dir.write("b.yaml", "data:\n  dataset: refclef\n"), {}, schema);
  });
  EXPECT_THAT(msg, HasSubstr("one of refcoco, refcoco+, refcocog"));
}

TEST(Config, BadSetIsAClearError) {
  const Schema schema = test_schema();
  EXPECT_THAT(config_error([&] { Config::defaults({"train.lr"}, schema); }),
              HasSubstr("--set 'train.lr': expected KEY=VALUE"));
  EXPECT_THAT(config_error([&] { Config::defaults({"train.lrr=1"}, schema); }),
              HasSubstr("did you mean 'train.lr'?"));
  EXPECT_THAT(config_error([&] { Config::defaults({"train.lr=fast"}, schema); }),
              HasSubstr("key 'train.lr' expects a float, got 'fast'"));
  EXPECT_THAT(config_error([&] { Config::defaults({"model.depths=3"}, schema); }),
              HasSubstr("expects a list of integers like [a, b]"));
  EXPECT_THAT(config_error([&] { Config::defaults({"train.lr=2"}, schema); }),
              HasSubstr("expected a value in [0.0, 1.0]"));
}

TEST(Config, MissingBaseFileNamesTheReferringLine) {
  TempDir dir;
  const auto file = dir.write("cfg/a.yaml", "train:\n  lr: 0.1\n_base_: ../missing.yaml\n");
  const Schema schema = test_schema();
  const std::string msg = config_error([&] { Config::load(file, {}, schema); });
  EXPECT_THAT(msg, HasSubstr("a.yaml:3: _base_ file '"));
  EXPECT_THAT(msg, HasSubstr("missing.yaml' not found"));
}

TEST(Config, AnImpossibleBaseNameIsAConfigError) {
  // Found by config_fuzz: a name longer than the file system allows was a filesystem_error.
  TempDir dir;
  const auto file = dir.write("a.yaml", "_base_: " + std::string(5000, 'x') + ".yaml\n");
  const std::string msg = config_error([&] { Config::load(file, {}, test_schema()); });
  EXPECT_THAT(msg, HasSubstr("a.yaml:1: _base_ file '"));
  EXPECT_THAT(msg, HasSubstr("File name too long"));
}

TEST(Config, MissingConfigFileIsAClearError) {
  const Schema schema = test_schema();
  EXPECT_THAT(config_error([&] { Config::load("/nonexistent/x.yaml", {}, schema); }),
              HasSubstr("config file '/nonexistent/x.yaml' not found"));
}

TEST(Config, InheritanceCycleIsDetected) {
  TempDir dir;
  dir.write("a.yaml", "_base_: b.yaml\n");
  dir.write("b.yaml", "_base_: c.yaml\n");
  dir.write("c.yaml", "_base_: a.yaml\n");
  const Schema schema = test_schema();
  const std::string msg = config_error([&] { Config::load(dir.path() / "a.yaml", {}, schema); });
  EXPECT_THAT(msg, HasSubstr("inheritance cycle"));
  EXPECT_THAT(msg, HasSubstr("a.yaml -> "));
  EXPECT_THAT(msg, HasSubstr("c.yaml -> "));
}

TEST(Config, SelfInheritanceIsACycle) {
  TempDir dir;
  const auto file = dir.write("a.yaml", "_base_: a.yaml\n");
  const Schema schema = test_schema();
  EXPECT_THAT(config_error([&] { Config::load(file, {}, schema); }), HasSubstr("cycle"));
}

TEST(Config, YamlSyntaxErrorNamesLine) {
  TempDir dir;
  const auto file = dir.write("a.yaml", "train:\n  lr: [1, 2\nmodel: {\n");
  const Schema schema = test_schema();
  const std::string msg = config_error([&] { Config::load(file, {}, schema); });
  EXPECT_THAT(msg, HasSubstr("a.yaml:"));
  EXPECT_THAT(msg, HasSubstr("YAML syntax error"));
}

TEST(Config, TopLevelMustBeAMapping) {
  TempDir dir;
  const Schema schema = test_schema();
  EXPECT_THAT(config_error([&] { Config::load(dir.write("a.yaml", "- 1\n- 2\n"), {}, schema); }),
              HasSubstr("top level must be a mapping"));
}

TEST(Config, ResolvedYamlRoundTrips) {
  TempDir dir;
  const Schema schema = test_schema();
  const Config original = Config::defaults(
      {"train.lr=3e-7", "run.name=a b: c", "data.splits=[testA]", "train.amp=true",
       "loss.weights=[0.5, 2]"},
      schema);
  const auto file = dir.write("resolved.yaml", original.to_yaml(true));
  const Config reloaded = Config::load(file, {}, schema);
  EXPECT_TRUE(original.differences(reloaded).empty()) << original.to_yaml();
  EXPECT_EQ(original.hash(), reloaded.hash());
  EXPECT_EQ(reloaded.text("run.name"), "a b: c");
}

TEST(Config, DifferencesListChangedKeys) {
  const Schema schema = test_schema();
  const Config a = Config::defaults({}, schema);
  const Config b = Config::defaults({"train.lr=0.5"}, schema);
  EXPECT_NE(a.hash(), b.hash());
  ASSERT_EQ(a.differences(b).size(), 1u);
  EXPECT_EQ(a.differences(b)[0], "train.lr: 1e-04 -> 0.5");
}

TEST(Config, BuiltinSchemaHasCoreKeys) {
  const Config c = Config::defaults();
  EXPECT_EQ(c.text("runtime.device"), "auto");
  EXPECT_THAT(config_error([] { Config::defaults({"runtime.device=gpu"}); }),
              HasSubstr("auto, cpu, cuda or cuda:N"));
  EXPECT_NO_THROW(Config::defaults({"runtime.device=cuda:1"}));
}

}  // namespace
}  // namespace wico
