#include "wico/train/distributed.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <torch/nn/modules/linear.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "test_util.h"
#include "train/dist_cases.h"
#include "wico/core/error.h"
#include "wico/train/launcher.h"

namespace fs = std::filesystem;

namespace wico::train {
namespace {

using test::read_results;
using test::TempDir;
using test::thrown_message;
using ::testing::AllOf;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---- DistributedEnv ---------------------------------------------------------------------------

TEST(DistributedEnv, NoVariablesMeanOneProcess) {
  const DistributedEnv env = DistributedEnv::from_variables({});
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.world_size, 1);
  EXPECT_EQ(env.local_rank, 0);
  EXPECT_FALSE(env.enabled());
}

TEST(DistributedEnv, ReadsTheTorchrunVariables) {
  const DistributedEnv env = DistributedEnv::from_variables({{"RANK", "3"},
                                                             {"WORLD_SIZE", "4"},
                                                             {"LOCAL_RANK", "1"},
                                                             {"MASTER_ADDR", "10.0.0.2"},
                                                             {"MASTER_PORT", "1234"}});
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.master_addr, "10.0.0.2");
  EXPECT_EQ(env.master_port, 1234);
  EXPECT_TRUE(env.enabled());
  // One node: the local rank is the rank unless told otherwise.
  EXPECT_EQ(DistributedEnv::from_variables({{"RANK", "2"}, {"WORLD_SIZE", "3"}}).local_rank, 2);
}

TEST(DistributedEnv, MalformedValuesNameTheVariableAndTheExpectation) {
  struct Case {
    std::map<std::string, std::string> variables;
    std::string variable, expected;
  };
  const std::vector<Case> cases = {
      {{{"WORLD_SIZE", "two"}}, "WORLD_SIZE='two'", "integer >= 1"},
      {{{"WORLD_SIZE", "0"}}, "WORLD_SIZE='0'", "integer >= 1"},
      {{{"WORLD_SIZE", "2"}, {"RANK", "2"}}, "RANK='2'", "[0, 1]"},
      {{{"WORLD_SIZE", "2"}, {"RANK", "-1"}}, "RANK='-1'", "[0, 1]"},
      {{{"WORLD_SIZE", "2"}, {"RANK", "1x"}}, "RANK='1x'", "[0, 1]"},
      {{{"WORLD_SIZE", "2"}}, "RANK is not set", "WORLD_SIZE=2"},
      {{{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"LOCAL_RANK", "-3"}}, "LOCAL_RANK='-3'", "[0, 1]"},
      {{{"MASTER_PORT", "70000"}}, "MASTER_PORT='70000'", "[1, 65535]"},
      {{{"MASTER_PORT", "0"}}, "MASTER_PORT='0'", "[1, 65535]"},
      {{{"MASTER_PORT", ""}}, "MASTER_PORT=''", "[1, 65535]"},
      {{{"MASTER_ADDR", ""}}, "MASTER_ADDR is empty", "host name"},
  };
  for (const Case& c : cases) {
    const std::string message =
        thrown_message<ConfigError>([&] { DistributedEnv::from_variables(c.variables); });
    EXPECT_THAT(message, AllOf(HasSubstr(c.variable), HasSubstr(c.expected)));
  }
}

// ---- one process and rendezvous failures ------------------------------------------------------

TEST(Distributed, OneProcessCollectivesLeaveValuesAlone) {
  Distributed dist(DistributedEnv{}, c10::kCPU);
  EXPECT_TRUE(dist.is_main());
  EXPECT_EQ(dist.world_size(), 1);
  at::Tensor t = at::tensor({1.0, 2.0});
  dist.all_reduce_sum(t);
  dist.broadcast(t, 0);
  EXPECT_TRUE(at::equal(t, at::tensor({1.0, 2.0})));
  EXPECT_EQ(dist.all_reduce_sum(2.5), 2.5);
  EXPECT_TRUE(dist.any(true));
  EXPECT_FALSE(dist.any(false));
  dist.barrier();
  at::Tensor p = at::zeros({2}).requires_grad_(true);
  p.mutable_grad() = at::tensor({3.0f, 4.0f});
  dist.average_gradients({p});
  EXPECT_TRUE(at::equal(p.grad(), at::tensor({3.0f, 4.0f})));
  torch::nn::Linear linear(2, 2);
  const at::Tensor before = linear->weight.clone();
  dist.broadcast_parameters(*linear);
  EXPECT_TRUE(at::equal(linear->weight, before));
}

DistributedEnv two_ranks(int rank, int port) {
  DistributedEnv env;
  env.rank = rank;
  env.world_size = 2;
  env.local_rank = rank;
  env.master_port = port;
  return env;
}

TEST(Distributed, MissingPeerFailsWithinTheTimeoutNamingTheMaster) {
  const int port = find_free_port();
  // Asked for less, the rendezvous still waits 1 s (c10d counts its socket timeouts in seconds).
  const std::chrono::milliseconds timeout(200);
  for (const int rank : {0, 1}) {  // rank 0 waits for its peer; rank 1 finds no store
    const auto start = Clock::now();
    const std::string message =
        thrown_message<Error>([&] { Distributed dist(two_ranks(rank, port), c10::kCPU, timeout); });
    EXPECT_THAT(message,
                AllOf(HasSubstr("127.0.0.1:" + std::to_string(port)),
                      HasSubstr("rank " + std::to_string(rank)), HasSubstr("world size 2")));
    EXPECT_LT(seconds_since(start), 5.0) << "rank " << rank;
    if (rank == 0) {
      EXPECT_THAT(message, HasSubstr("only 1 of 2 ranks arrived"));
      EXPECT_GE(seconds_since(start), 0.9);
    }
  }
}

TEST(Distributed, PortInUseIsARendezvousError) {
  // Hold a listening socket on the port, as another job would.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const int port = ntohs(address.sin_port);
  const auto start = Clock::now();
  const std::string message = thrown_message<Error>(
      [&] { Distributed dist(two_ranks(0, port), c10::kCPU, std::chrono::milliseconds(300)); });
  ::close(fd);
  EXPECT_THAT(message, AllOf(HasSubstr("127.0.0.1:" + std::to_string(port)), HasSubstr("rank 0"),
                             HasSubstr("world size 2")));
  EXPECT_LT(seconds_since(start), 10.0);
}

TEST(Distributed, CudaWithoutNcclIsAClearError) {
  if (Distributed::has_backend(c10::DeviceType::CUDA)) GTEST_SKIP() << "this build has NCCL";
  EXPECT_THAT(thrown_message<Error>(
                  [] { Distributed dist(two_ranks(0, 29500), c10::Device(c10::kCUDA, 0)); }),
              HasSubstr("needs NCCL"));
  EXPECT_TRUE(Distributed::has_backend(c10::DeviceType::CPU));
}

// ---- sync_batch_norm in one process: must be at::batch_norm -----------------------------------

struct BatchNormRun {
  at::Tensor output, grad_input, grad_weight, grad_bias, running_mean, running_var;
};

// Two training steps and one evaluation step, through sync_batch_norm or at::batch_norm.
BatchNormRun run_batch_norm(bool sync, at::IntArrayRef shape, bool affine, at::ScalarType dtype) {
  Distributed dist(DistributedEnv{}, c10::kCPU);
  const std::int64_t channels = shape[1];
  at::Tensor weight, bias;
  if (affine) {
    weight = test::random_tensor(2, {channels}, dtype).requires_grad_(true);
    bias = test::random_tensor(3, {channels}, dtype).requires_grad_(true);
  }
  at::Tensor running_mean = at::zeros({channels}, dtype), running_var = at::ones({channels}, dtype);
  BatchNormRun run;
  for (std::uint64_t step = 0; step < 2; ++step) {
    at::Tensor input = (test::random_tensor(10 + step, shape, dtype) * 3 - 1).requires_grad_(true);
    const at::Tensor grad_output = test::random_tensor(20 + step, shape, dtype);
    at::Tensor output = sync ? sync_batch_norm(input, weight, bias, running_mean, running_var, true,
                                               0.1, 1e-5, dist)
                             : at::batch_norm(input, weight, bias, running_mean, running_var, true,
                                              0.1, 1e-5, false);
    (output * grad_output).sum().backward();
    run.output = output.detach();
    run.grad_input = input.grad();
  }
  if (affine) {
    run.grad_weight = weight.grad();
    run.grad_bias = bias.grad();
  }
  run.running_mean = running_mean;
  run.running_var = running_var;
  const at::Tensor eval_input = test::random_tensor(30, shape, dtype);
  const at::Tensor eval = sync ? sync_batch_norm(eval_input, weight, bias, running_mean,
                                                 running_var, false, 0.1, 1e-5, dist)
                               : at::batch_norm(eval_input, weight, bias, running_mean, running_var,
                                                false, 0.1, 1e-5, false);
  EXPECT_TRUE(running_mean.equal(run.running_mean)) << "evaluation must not update statistics";
  run.output = at::cat({run.output.flatten(), eval.detach().flatten()});
  return run;
}

void expect_close(const at::Tensor& actual, const at::Tensor& expected, const std::string& what,
                  double tolerance) {
  ASSERT_EQ(actual.defined(), expected.defined()) << what;
  if (!expected.defined()) return;
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double error =
      (actual.to(at::kDouble) - expected.to(at::kDouble)).abs().max().item<double>();
  EXPECT_LE(error, tolerance) << what << ": largest difference " << error;
}

void expect_same_batch_norm(at::IntArrayRef shape, bool affine, at::ScalarType dtype,
                            double tolerance) {
  const BatchNormRun ours = run_batch_norm(true, shape, affine, dtype);
  const BatchNormRun reference = run_batch_norm(false, shape, affine, dtype);
  expect_close(ours.output, reference.output, "output", tolerance);
  expect_close(ours.grad_input, reference.grad_input, "grad input", tolerance);
  expect_close(ours.grad_weight, reference.grad_weight, "grad weight", tolerance);
  expect_close(ours.grad_bias, reference.grad_bias, "grad bias", tolerance);
  expect_close(ours.running_mean, reference.running_mean, "running mean", tolerance);
  expect_close(ours.running_var, reference.running_var, "running var", tolerance);
}

TEST(SyncBatchNorm, OneProcessEqualsBatchNorm) {
  expect_same_batch_norm({4, 3, 5, 5}, true, at::kFloat, 1e-4);
  expect_same_batch_norm({4, 3, 5, 5}, true, at::kDouble, 1e-10);
  expect_same_batch_norm({6, 5}, true, at::kFloat, 1e-4);
  expect_same_batch_norm({2, 3, 4, 2, 3}, false, at::kFloat, 1e-4);
}

TEST(SyncBatchNorm, OneValuePerChannelIsAnError) {
  Distributed dist(DistributedEnv{}, c10::kCPU);
  EXPECT_THAT(thrown_message<Error>([&] {
                sync_batch_norm(at::ones({1, 3}), {}, {}, {}, {}, true, 0.1, 1e-5, dist);
              }),
              HasSubstr("more than 1 value per channel"));
}

// ---- two processes over loopback --------------------------------------------------------------

// One launch of two wico_dist_worker ranks serves every test of the suite (each start loads
// LibTorch); the tests check what the ranks wrote.
class DistributedWorkers : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    port_ = find_free_port();
    LaunchOptions options;
    options.master_port = port_;
    options.kill_grace = std::chrono::seconds(2);
    exit_code_ = launch_local_workers(2, {WICO_DIST_WORKER_PATH, dir_->path().string()}, options);
    for (int rank = 0; rank < 2; ++rank) {
      const fs::path file = dir_->path() / ("rank" + std::to_string(rank) + ".txt");
      if (fs::exists(file)) results_[rank] = read_results(file);
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_EQ(exit_code_, 0) << "a worker failed (its error is in the output above)";
  }
  static const at::Tensor& result(int rank, const std::string& name) {
    const auto it = results_[rank].find(name);
    if (it == results_[rank].end()) throw std::runtime_error("rank has no result " + name);
    return it->second;
  }

  static inline TempDir* dir_ = nullptr;
  static inline int port_ = 0;
  static inline int exit_code_ = -1;
  static inline std::map<std::string, at::Tensor> results_[2];
};

TEST_F(DistributedWorkers, EnvironmentComesFromTheLauncher) {
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_TRUE(at::equal(result(rank, "env"),
                          at::tensor({1.0 * rank, 2.0, 1.0 * rank, 1.0 * port_}, at::kDouble)));
  }
}

TEST_F(DistributedWorkers, CollectivesSumAnyAndBroadcast) {
  for (int rank = 0; rank < 2; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    // Rank r contributed {r+1, 10(r+1), -r}.
    EXPECT_TRUE(at::equal(result(rank, "sum_tensor"), at::tensor({3.0, 30.0, -1.0}, at::kDouble)));
    // (r+1) * [[0,1,2],[3,4,5]]^T summed over r = 3 * the same.
    EXPECT_TRUE(at::equal(result(rank, "sum_strided"),
                          at::tensor({0.0, 9.0, 3.0, 12.0, 6.0, 15.0}, at::kDouble).view({3, 2})));
    EXPECT_EQ(result(rank, "sum_double").item<double>(), 2.0);  // 0.5 + 1.5
    EXPECT_EQ(result(rank, "any_one").item<double>(), 1.0);
    EXPECT_EQ(result(rank, "any_none").item<double>(), 0.0);
    EXPECT_TRUE(at::equal(result(rank, "broadcast_from_1"),
                          at::tensor({100.0, 101.0, 102.0, 103.0}, at::kDouble)));
  }
}

TEST_F(DistributedWorkers, AverageGradientsIsTheMeanOverRanks) {
  const auto cases = test::grad_cases();
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("parameter " + std::to_string(i));
    for (int rank = 0; rank < 2; ++rank) {
      EXPECT_EQ(result(rank, "grad_defined" + std::to_string(i)).item<double>(),
                cases[i].frozen ? 0.0 : 1.0);
    }
    if (cases[i].frozen) continue;
    at::Tensor expected = at::zeros(cases[i].shape, at::kDouble);
    for (int rank = 0; rank < 2; ++rank) {
      if (cases[i].missing_on_rank != rank) {
        expected += test::rank_gradient(rank, i).to(at::kDouble);
      }
    }
    expected /= 2;
    const double tolerance = cases[i].dtype == at::kDouble ? 1e-12 : 1e-6;
    for (int rank = 0; rank < 2; ++rank) {
      expect_close(result(rank, "grad" + std::to_string(i)), expected,
                   "rank " + std::to_string(rank), tolerance);
    }
  }
}

TEST_F(DistributedWorkers, BroadcastParametersCopiesRankZero) {
  const std::vector<std::string> names = {"linear.weight",
                                          "linear.bias",
                                          "norm.weight",
                                          "norm.bias",
                                          "norm.running_mean",
                                          "norm.running_var",
                                          "norm.num_batches_tracked"};
  // The modules started different (else the test proves nothing).
  EXPECT_FALSE(at::equal(result(0, "before.linear.weight"), result(1, "before.linear.weight")));
  EXPECT_FALSE(
      at::equal(result(0, "before.norm.running_mean"), result(1, "before.norm.running_mean")));
  EXPECT_FALSE(at::equal(result(0, "before.norm.num_batches_tracked"),
                         result(1, "before.norm.num_batches_tracked")));
  for (const std::string& name : names) {
    for (int rank = 0; rank < 2; ++rank) {
      EXPECT_TRUE(at::equal(result(rank, "after." + name), result(0, "before." + name)))
          << name << " on rank " << rank;
    }
  }
}

TEST_F(DistributedWorkers, SyncBatchNormMatchesBatchNormOnTheFullBatch) {
  const test::SyncBnCase c = test::sync_bn_case();
  const at::Tensor input = c.input.clone().requires_grad_(true);
  const at::Tensor weight = c.weight.clone().requires_grad_(true);
  const at::Tensor bias = c.bias.clone().requires_grad_(true);
  at::Tensor running_mean = at::zeros({3}), running_var = at::ones({3});
  const at::Tensor output = at::batch_norm(input, weight, bias, running_mean, running_var, true,
                                           c.momentum, c.eps, false);
  (output * c.grad_output).sum().backward();

  for (int rank = 0; rank < 2; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    const std::int64_t begin = test::sync_bn_begin(rank), rows = test::sync_bn_rows(rank);
    expect_close(result(rank, "bn_output"), output.detach().narrow(0, begin, rows), "output", 1e-5);
    expect_close(result(rank, "bn_grad_input"), input.grad().narrow(0, begin, rows), "grad input",
                 1e-5);
    expect_close(result(rank, "bn_running_mean"), running_mean, "running mean", 1e-6);
    expect_close(result(rank, "bn_running_var"), running_var, "running var", 1e-6);
  }
  // Each rank holds its share of the parameter gradients; together they are the full batch's.
  expect_close(result(0, "bn_grad_weight") + result(1, "bn_grad_weight"), weight.grad(),
               "grad weight", 1e-5);
  expect_close(result(0, "bn_grad_bias") + result(1, "bn_grad_bias"), bias.grad(), "grad bias",
               1e-5);
}

// ---- launcher ---------------------------------------------------------------------------------

// A worker written in sh: starts in a millisecond, and `exec` keeps one process per rank.
std::vector<std::string> shell(const std::string& script) { return {"/bin/sh", "-c", script}; }

TEST(Launcher, WorkersGetTheirRanksAndSuccessIsZero) {
  TempDir dir;
  LaunchOptions options;
  options.master_port = find_free_port();
  const std::string script = "echo $RANK $LOCAL_RANK $WORLD_SIZE $MASTER_ADDR $MASTER_PORT > '" +
                             dir.path().string() + "/env'$RANK";
  EXPECT_EQ(launch_local_workers(3, shell(script), options), 0);
  for (int rank = 0; rank < 3; ++rank) {
    const std::string r = std::to_string(rank);
    EXPECT_EQ(test::read_file(dir.path() / ("env" + r)),
              r + " " + r + " 3 127.0.0.1 " + std::to_string(options.master_port) + "\n");
  }
  // Without a port in the options, one is chosen.
  EXPECT_EQ(launch_local_workers(1, shell("test \"$MASTER_PORT\" -gt 0")), 0);
}

TEST(Launcher, FirstFailureStopsTheOthersAndGivesItsExitCode) {
  TempDir dir;
  const std::string ready = "'" + dir.path().string() + "/ready'";
  // Rank 1 fails once rank 0 has started a long sleep.
  const std::string script = "if [ $RANK = 1 ]; then while [ ! -e " + ready +
                             " ]; do sleep 0.01; done; exit 3; fi; touch " + ready +
                             "; exec sleep 60";
  const auto start = Clock::now();
  EXPECT_EQ(launch_local_workers(2, shell(script)), 3);
  EXPECT_LT(seconds_since(start), 10.0);
}

TEST(Launcher, AWorkerKilledBySignalGives128PlusTheSignal) {
  const auto start = Clock::now();
  EXPECT_EQ(launch_local_workers(2, shell("if [ $RANK = 0 ]; then kill -9 $$; fi; exec sleep 60")),
            128 + SIGKILL);
  EXPECT_LT(seconds_since(start), 10.0);
}

TEST(Launcher, AWorkerIgnoringSigtermIsKilledAfterTheGrace) {
  TempDir dir;
  const std::string ready = "'" + dir.path().string() + "/ready'";
  const std::string script = "if [ $RANK = 1 ]; then while [ ! -e " + ready +
                             " ]; do sleep 0.01; done; exit 3; fi; trap '' TERM; touch " + ready +
                             "; exec sleep 60";
  LaunchOptions options;
  options.kill_grace = std::chrono::milliseconds(300);
  const auto start = Clock::now();
  EXPECT_EQ(launch_local_workers(2, shell(script), options), 3);
  const double elapsed = seconds_since(start);
  EXPECT_GE(elapsed, 0.3);
  EXPECT_LT(elapsed, 10.0);
}

TEST(Launcher, ForwardsSigintToTheWorkers) {
  TempDir dir;
  const std::string script = "touch '" + dir.path().string() + "/ready'$RANK; exec sleep 60";
  // Interrupt this process once both workers run; the launcher's handler takes the signal.
  std::atomic<bool> done{false};
  std::thread interrupter([&] {
    const auto start = Clock::now();
    while (!done && seconds_since(start) < 20) {
      if (fs::exists(dir.path() / "ready0") && fs::exists(dir.path() / "ready1")) {
        ::kill(::getpid(), SIGINT);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  const auto start = Clock::now();
  const int code = launch_local_workers(2, shell(script));
  done = true;
  interrupter.join();
  EXPECT_EQ(code, 128 + SIGINT);
  EXPECT_LT(seconds_since(start), 10.0);
}

TEST(Launcher, BadArgumentsAreErrors) {
  EXPECT_THAT(thrown_message<ConfigError>([] { launch_local_workers(0, {"/bin/true"}); }),
              HasSubstr("nproc"));
  EXPECT_THAT(thrown_message<ConfigError>([] { launch_local_workers(2, {}); }),
              HasSubstr("no program"));
  EXPECT_THAT(thrown_message<Error>([] { launch_local_workers(2, {"/no/such/program"}); }),
              HasSubstr("/no/such/program"));
}

}  // namespace
}  // namespace wico::train
