#include "wico/train/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "test_util.h"
#include "wico/core/config.h"
#include "wico/core/error.h"

namespace wico::train {
namespace {

namespace fs = std::filesystem;

struct Net : torch::nn::Module {
  Net() {
    fc = register_module("fc", torch::nn::Linear(3, 2));
    bn = register_module("bn", torch::nn::BatchNorm1d(2));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

// One Adam step so the optimiser has state worth saving.
void step(Net& net, torch::optim::Optimizer& opt) {
  opt.zero_grad();
  net.bn(net.fc(torch::randn({4, 3}))).pow(2).sum().backward();
  opt.step();
}

TEST(Checkpoint, RoundTripRestoresModelOptimizerStateAndGenerator) {
  test::TempDir dir;
  torch::manual_seed(1);
  Net a;
  torch::optim::Adam opt_a(a.parameters(), torch::optim::AdamOptions(0.01));
  step(a, opt_a);
  TrainState state;
  state.iteration = 7;
  state.epoch = 2;
  state.batch_in_epoch = 3;
  state.best_metric = 0.25;
  state.best_iteration = 5;
  const Config config = Config::defaults({"train.lr=0.01"});
  const fs::path file = dir.path() / "c.pt";
  save_checkpoint(file, a, &opt_a, state, config);
  const at::Tensor expected_random = torch::rand({3});

  torch::manual_seed(99);
  Net b;
  torch::optim::Adam opt_b(b.parameters(), torch::optim::AdamOptions(0.01));
  Checkpoint c = Checkpoint::read(file);
  EXPECT_EQ(c.state().iteration, 7);
  EXPECT_EQ(c.state().epoch, 2);
  EXPECT_EQ(c.state().batch_in_epoch, 3);
  EXPECT_DOUBLE_EQ(c.state().best_metric, 0.25);
  EXPECT_EQ(c.state().best_iteration, 5);
  EXPECT_EQ(c.config_hash(), config.hash());
  c.load_model(b);
  c.load_optimizer(opt_b);
  c.restore_rng();
  EXPECT_TRUE(torch::equal(torch::rand({3}), expected_random));
  for (const auto& [name, t] : model_state(a)) {
    EXPECT_TRUE(torch::equal(t, model_state(b).at(name))) << name;
  }
  // The same next step from both: identical parameters (optimizer moments were restored).
  torch::manual_seed(5);
  step(a, opt_a);
  torch::manual_seed(5);
  step(b, opt_b);
  EXPECT_TRUE(torch::equal(a.fc->weight, b.fc->weight));
  EXPECT_EQ(model_state(a).count("bn.running_mean"), 1u);
}

TEST(Checkpoint, TruncatedOrMissingFileIsAnErrorNamingIt) {
  test::TempDir dir;
  Net net;
  const fs::path file = dir.path() / "c.pt";
  save_checkpoint(file, net, nullptr, {}, Config::defaults());
  const auto size = fs::file_size(file);
  fs::resize_file(file, size / 2);
  std::string m = test::thrown_message<Error>([&] { Checkpoint::read(file); });
  EXPECT_NE(m.find(file.string()), std::string::npos) << m;
  EXPECT_NE(m.find("truncated or corrupt"), std::string::npos) << m;
  m = test::thrown_message<Error>([&] { Checkpoint::read(dir.path() / "none.pt"); });
  EXPECT_NE(m.find("none.pt' does not exist"), std::string::npos) << m;
  std::ofstream(dir.path() / "junk.pt") << "not a checkpoint";
  EXPECT_THROW(Checkpoint::read(dir.path() / "junk.pt"), Error);
}

TEST(Checkpoint, AFlippedBitIsFoundByItsChecksum) {
  test::TempDir dir;
  Net net;
  const fs::path file = dir.path() / "c.pt";
  save_checkpoint(file, net, nullptr, {}, Config::defaults());
  // One bit in the middle of the file (inside a tensor's bytes or the metadata): the sizes and
  // structure still parse, only the CRC-32 of the entry tells.
  std::string bytes = test::read_file(file);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x10);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  const std::string m = test::thrown_message<Error>([&] { Checkpoint::read(file); });
  EXPECT_THAT(m, ::testing::HasSubstr("checkpoint '" + file.string() + "' is truncated or corrupt"));
  EXPECT_THAT(m, ::testing::HasSubstr("does not match its CRC-32"));
}

TEST(Checkpoint, NonFiniteModelIsNeverWrittenAndThePreviousFileSurvives) {
  test::TempDir dir;
  Net net;
  const fs::path file = dir.path() / "c.pt";
  save_checkpoint(file, net, nullptr, {}, Config::defaults());
  const std::string before = test::read_file(file);
  {
    torch::NoGradGuard g;
    net.fc->weight[0][0] = std::numeric_limits<float>::infinity();
  }
  const std::string m = test::thrown_message<Error>(
      [&] { save_checkpoint(file, net, nullptr, {}, Config::defaults()); });
  EXPECT_NE(m.find("fc.weight"), std::string::npos) << m;
  EXPECT_EQ(test::read_file(file), before);
  for (const auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename(), "c.pt") << "temporary left behind";
  }
}

TEST(Checkpoint, AnotherConfigIsRefusedWithTheKeysThatDiffer) {
  test::TempDir dir;
  Net net;
  const fs::path file = dir.path() / "c.pt";
  save_checkpoint(file, net, nullptr, {}, Config::defaults({"train.lr=0.001"}));
  const Checkpoint c = Checkpoint::read(file);
  c.require_same_config(Config::defaults({"train.lr=0.001"}));
  const std::string m = test::thrown_message<ConfigError>([&] {
    c.require_same_config(Config::defaults({"train.lr=0.002", "data.batch_size=3"}));
  });
  EXPECT_NE(m.find("train.lr"), std::string::npos) << m;
  EXPECT_NE(m.find("data.batch_size"), std::string::npos) << m;
  EXPECT_EQ(m.find("train.weight_decay"), std::string::npos) << m;
}

TEST(Checkpoint, LoadStateReportsMismatchesAndPrefixedLoading) {
  Net a;
  std::map<std::string, at::Tensor> state = model_state(a);
  state["fc.weight"] = torch::zeros({5, 5});
  state["extra"] = torch::zeros({1});
  state.erase("fc.bias");
  Net b;
  const std::string m =
      test::thrown_message<Error>([&] { load_model_state(b, state, "file.pt"); });
  EXPECT_NE(m.find("file.pt"), std::string::npos);
  EXPECT_NE(m.find("fc.weight [5, 5] (model [2, 3])"), std::string::npos) << m;
  EXPECT_NE(m.find("missing: fc.bias"), std::string::npos) << m;
  EXPECT_NE(m.find("unexpected: extra"), std::string::npos) << m;
}

TEST(CheckpointDir, KeepsTheNewestAndListsInOrder) {
  test::TempDir dir;
  CheckpointDir ckpts(dir.path() / "checkpoints", 2);
  EXPECT_FALSE(ckpts.latest());
  Net net;
  for (std::int64_t it : {5, 10, 100, 20}) {
    save_checkpoint(ckpts.path_for(it), net, nullptr, {}, Config::defaults());
  }
  ckpts.prune();
  const auto all = ckpts.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].filename(), "iter_00000020.pt");
  EXPECT_EQ(ckpts.latest()->filename(), "iter_00000100.pt");
}

}  // namespace
}  // namespace wico::train
