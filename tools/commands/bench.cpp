// `wico bench NAME`: runs a benchmark of the library and prints its figures (ratios measured in
// the same run); --json keeps them for docs/performance.md.
#include <fstream>
#include <iostream>

#include "../commands.h"
#include "wico/core/benchmark.h"
#include "wico/core/error.h"
#include "wico/core/runtime.h"

namespace wico::tool {

Action add_bench_command(CLI::App& app) {
  auto* sub = app.add_subcommand("bench", "run a benchmark: " + [] {
    std::string names;
    for (const auto& n : benchmark_registry().names()) names += (names.empty() ? "" : ", ") + n;
    return names;
  }());
  struct Options {
    ConfigOptions config;
    std::string name;
    int repeats = 5;
    int warmup = 1;
    std::string python = "/usr/bin/python3";
    std::string json;
    bool quick = false;
    bool list = false;
    std::string against;
    bool under_load = false;
  };
  auto o = std::make_shared<Options>();
  sub->add_option("name", o->name, "benchmark to run (--list shows them)");
  o->config.add_to(*sub, false);
  sub->add_option("--repeats", o->repeats, "timed runs; the median is reported")
      ->check(CLI::Range(1, 1000));
  sub->add_option("--warmup", o->warmup, "untimed runs first")->check(CLI::Range(0, 100));
  sub->add_option("--python", o->python, "Python with Debian's python3-torch, for comparisons");
  sub->add_option("--json", o->json, "also write the figures to this JSON file");
  sub->add_flag("--quick", o->quick, "small sizes: a smoke run, not figures to report");
  sub->add_flag("--list", o->list, "list the benchmarks");
  sub->add_option("--against", o->against,
                  "an original's checkout to run beside ours (lavt: LAVT-RIS; cris: CRIS.pytorch)");
  sub->add_flag("--under-load", o->under_load,
                "train: also measure next to busy processes on every core, with and without "
                "runtime.share_cores");
  return [o]() {
    auto& registry = benchmark_registry();
    if (o->list || o->name.empty()) {
      for (const auto& n : registry.names()) std::cout << n << "  " << registry.doc(n) << "\n";
      return o->list ? 0 : 2;
    }
    const Benchmark& bench = registry.get(o->name);
    const Config config = o->config.load();
    BenchContext ctx{config,   apply_runtime(config), o->repeats, o->warmup,
                     o->python, o->quick,             o->against, o->under_load};
    const nlohmann::json result = bench(ctx);
    if (!o->json.empty()) {
      std::ofstream out(o->json);
      out << result.dump(2) << "\n";
      if (!out) throw Error("cannot write '" + o->json + "'");
    }
    return 0;
  };
}

}  // namespace wico::tool
