// `wico bench train`: training throughput of tiny LAVT (configs/tiny/lavt.yaml) on a synthetic
// set, in one process and in two processes over c10d/Gloo (`wico train --nproc 2`), measured in
// one run, with the share of step time spent in the gradient all-reduce. Runs the real tool, so
// it measures exactly what a user's `wico train` does (loader, model, optimiser, all-reduce).
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "wico/core/benchmark.h"
#include "wico/core/error.h"
#include "wico/core/runtime.h"
#include "wico/data/synthetic.h"

namespace wico {

namespace {

namespace fs = std::filesystem;


struct Measured {
  double samples_per_s = 0;
  std::map<std::string, double> seconds;  // data, compute, allreduce, optimizer
};

// Runs `wico train` and reads the last metrics record (the second half of the run: the first
// logging window holds the warm-up).
Measured run_training(const fs::path& root, const std::string& name, int nproc, int threads,
                      int iterations, const std::string& extra = "") {
  const std::string command = fmt::format(
      "'{}' train --config '{}/configs/tiny/lavt.yaml' --set data.root='{}' --set run.root='{}' "
      "--set run.name={} --set train.iterations={} --set train.log_every={} "
      "--set train.val_every=-1 --set runtime.threads={} --set log.progress=off "
      "--set log.level=warn --nproc {} {} > '{}/{}.log' 2>&1",
      own_executable(), fs::path(WICO_ASSETS_DIR).parent_path().string(), (root / "data").string(), (root / "runs").string(), name,
      iterations, iterations / 2, threads, nproc, extra, root.string(), name);
  const int status = std::system(command.c_str());
  if (status != 0) {
    throw Error("wico train (" + name + ") failed; see " + (root / (name + ".log")).string());
  }
  std::ifstream in(root / "runs" / name / "metrics.jsonl");
  nlohmann::json last;
  for (std::string line; std::getline(in, line);) last = nlohmann::json::parse(line);
  Measured m;
  m.samples_per_s = last.at("samples_per_s").get<double>();
  m.seconds = last.at("seconds").get<std::map<std::string, double>>();
  return m;
}

double share(const Measured& m, const std::string& part) {
  double total = 0;
  for (const auto& [name, s] : m.seconds) total += s;
  return total > 0 && m.seconds.count(part) ? m.seconds.at(part) / total : 0.0;
}

}  // namespace

nlohmann::json bench_train(const BenchContext& ctx) {
  const int iterations = ctx.quick ? 10 : 60;
  const ScratchDir scratch("train");
  const auto& root = scratch.path();
  data::generate_synthetic({root / "data", ctx.quick ? 40 : 200, 1, ctx.runtime.threads, false});
  const int cores = ctx.runtime.threads;
  const Measured one = run_training(root, "one", 1, cores, iterations);
  const Measured two = run_training(root, "two", 2, std::max(1, cores / 2), iterations);
  const double scaling = two.samples_per_s / one.samples_per_s;
  std::cout << fmt::format(
      "tiny LAVT (configs/tiny/lavt.yaml: nano Swin, tiny BERT, 128x128, batch 8 per process), "
      "{} steps, {} core(s)\n"
      "  1 process  x {} thread(s) {:8.1f} samples/s   (all-reduce {:4.1f}% of step time)\n"
      "  2 processes x {} thread(s) {:8.1f} samples/s   (all-reduce {:4.1f}% of step time)\n"
      "  2 processes / 1 process    {:8.2f}x\n",
      iterations, cores, cores, one.samples_per_s, 100 * share(one, "allreduce"),
      std::max(1, cores / 2), two.samples_per_s, 100 * share(two, "allreduce"), scaling);
  nlohmann::json result = {
      {"iterations", iterations},
      {"one_process", {{"samples_per_s", one.samples_per_s}, {"seconds", one.seconds}}},
      {"two_processes", {{"samples_per_s", two.samples_per_s}, {"seconds", two.seconds}}},
      {"scaling", scaling},
      {"allreduce_share_two", share(two, "allreduce")}};
  if (ctx.under_load) {
    // The competing load: one busy process per online core, so that every core the training
    // could use is wanted by someone else too (what a second job on a shared machine does).
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    const int busy = online > 0 ? static_cast<int>(online) : 1;
    const BusyProcesses load(busy);
    // Fewer steps: each is several times slower; the metrics keep the second half.
    const int loaded_iterations = std::max(10, iterations / 2);
    const Measured shared = run_training(root, "shared", 1, cores, loaded_iterations,
                                         "--set runtime.share_cores=true");
    const Measured fixed = run_training(root, "fixed", 1, cores, loaded_iterations,
                                        "--set runtime.share_cores=false");
    std::cout << fmt::format(
        "next to {} busy process(es) ({} steps):\n"
        "  runtime.share_cores true   {:8.1f} samples/s   {:5.1f}% of idle\n"
        "  runtime.share_cores false  {:8.1f} samples/s   {:5.1f}% of idle\n",
        busy, loaded_iterations, shared.samples_per_s,
        100 * shared.samples_per_s / one.samples_per_s, fixed.samples_per_s,
        100 * fixed.samples_per_s / one.samples_per_s);
    result["under_load"] = {{"busy_processes", busy},
                            {"iterations", loaded_iterations},
                            {"share_cores_samples_per_s", shared.samples_per_s},
                            {"fixed_threads_samples_per_s", fixed.samples_per_s},
                            {"share_cores_of_idle", shared.samples_per_s / one.samples_per_s},
                            {"fixed_threads_of_idle", fixed.samples_per_s / one.samples_per_s}};
  }
  return result;
}

}  // namespace wico
