// Configuration keys of the core component: runs, runtime, logging.
#include "wico/core/runtime.h"
#include "wico/core/schema.h"

namespace wico {

void add_core_keys(Schema& schema) {
  schema.text("run.name", "", "run directory name under run.root; empty: the config file's name")
      .text("run.root", "runs", "directory that holds the run directories")
      .integer("run.seed", 0, "seed of every random generator (weights, sampling, data order)", 0,
               2147483647.0)
      .integer("runtime.threads", 0, "CPU threads for LibTorch, OpenMP and BLAS; 0: all cores",
               0, 1024)
      .flag("runtime.share_cores", true,
            "when other processes keep cores busy, train and evaluate on the cores left over "
            "(fewer threads, measured every 2 s); false: always runtime.threads (bit-identical "
            "reruns whatever the load)")
      .text("runtime.conv_algorithm", "auto",
            "3x3 stride-1 CPU convolutions: auto (Winograd where it pays: oneDNN's on AVX-512 "
            "CPUs, else ours), direct (LibTorch's kernel, as the Python originals), winograd "
            "(ours, any size), onednn_winograd (oneDNN's, wherever it takes the shape)",
            {"auto", "direct", "winograd", "onednn_winograd"})
      .text("runtime.linear_backend", "auto",
            "inference-time Linear layers on the CPU: auto (oneDNN's matmul on AVX-512 CPUs, "
            "else the BLAS), blas (LibTorch's at::linear, as the Python originals), onednn",
            {"auto", "blas", "onednn"})
      .integer("runtime.cpu_cache_mb", -1,
               "released CPU tensor memory kept for reuse (blocks of 256 KB and more), in MB: "
               "saves the page faults of fresh large blocks; -1: a quarter of the machine's "
               "memory, 0: off (LibTorch's own allocator)",
               -1, 1048576)
      .add({"runtime.device", ValueType::kString, std::string("auto"),
            "auto | cpu | cuda | cuda:N (auto: CUDA when available, else CPU)", {}, {}, {},
            [](const Value& v) { return check_device_name(std::get<std::string>(v)); }})
      .text("log.level", "info", "console and log.txt verbosity",
            {"trace", "debug", "info", "warn", "error"})
      .text("log.progress", "auto",
            "progress display: a bar on a terminal, plain lines otherwise (auto), or forced",
            {"auto", "bar", "plain", "off"});
}

}  // namespace wico
