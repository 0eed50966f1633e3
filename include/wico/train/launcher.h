// A one-machine torchrun: starts one worker process per rank and supervises them.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace wico::train {

struct LaunchOptions {
  int master_port = 0;  // 0: a free port, chosen by binding port 0
  // After the first failure the others get SIGTERM, then SIGKILL once this has passed.
  std::chrono::milliseconds kill_grace{std::chrono::seconds(10)};
};

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
int find_free_port();

// Starts `nproc` copies of argv[0] (an executable path, run with execve, no PATH search) with the
// arguments argv[1..], each with RANK = LOCAL_RANK = i, WORLD_SIZE = LOCAL_WORLD_SIZE = nproc,
// MASTER_ADDR = 127.0.0.1 and MASTER_PORT added to this process's environment, then waits for
// them. SIGINT and SIGTERM received meanwhile are forwarded to every worker. Workers die with this
// process's (calling thread's) death (PR_SET_PDEATHSIG), so none outlives a crashed launcher.
//
// The first worker to exit non-zero or by a signal is logged (rank, exit code or signal); the
// others then get SIGTERM, and SIGKILL after options.kill_grace. Returns that first failure's exit
// code (128 + signal number for a signal), or 0 when every worker exits 0. Throws ConfigError for
// nproc < 1 or an empty argv, and Error when a worker cannot be started (the ones already started
// are stopped first).
int launch_local_workers(int nproc, const std::vector<std::string>& argv,
                         const LaunchOptions& options = {});

}  // namespace wico::train
