#include "wico/train/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "wico/core/error.h"

extern char** environ;

namespace wico::train {

int find_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("find_free_port: socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  const int error = errno;
  ::close(fd);
  if (!ok) throw Error(std::string("find_free_port: cannot bind a port: ") + std::strerror(error));
  return ntohs(address.sin_port);
}

namespace {

// The signal a handler caught while workers run (0: none). One launch at a time per process.
std::atomic<int> g_received_signal{0};
std::mutex g_launch_mutex;

extern "C" void remember_signal(int signal_number) { g_received_signal.store(signal_number); }

// Installs the forwarding handlers for SIGINT and SIGTERM and restores the previous ones after.
class SignalForwarding {
 public:
  SignalForwarding() {
    g_received_signal.store(0);
    struct sigaction action {};
    action.sa_handler = remember_signal;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, &old_int_);
    ::sigaction(SIGTERM, &action, &old_term_);
  }
  ~SignalForwarding() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
    // A signal that came after the last worker ended was never forwarded: act on it now.
    if (const int sig = g_received_signal.exchange(0)) ::raise(sig);
  }
  SignalForwarding(const SignalForwarding&) = delete;
  SignalForwarding& operator=(const SignalForwarding&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

struct Worker {
  pid_t pid = -1;
  bool running = false;
};

std::string describe(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return "exited with code " + std::to_string(WEXITSTATUS(status));
}

void signal_running(std::vector<Worker>& workers, int signal_number) {
  for (const Worker& w : workers) {
    if (w.running) ::kill(w.pid, signal_number);
  }
}

// Blocks until every started worker has been reaped, killing them first.
void kill_and_reap(std::vector<Worker>& workers) {
  signal_running(workers, SIGKILL);
  for (Worker& w : workers) {
    if (!w.running) continue;
    int status = 0;
    while (::waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
    }
    w.running = false;
  }
}

}  // namespace

int launch_local_workers(int nproc, const std::vector<std::string>& argv,
                         const LaunchOptions& options) {
  if (nproc < 1) throw ConfigError("launch: nproc must be >= 1, got " + std::to_string(nproc));
  if (argv.empty() || argv[0].empty()) throw ConfigError("launch: no program to run");
  if (::access(argv[0].c_str(), X_OK) != 0) {
    throw Error("launch: cannot execute '" + argv[0] + "': " + std::strerror(errno));
  }
  const int port = options.master_port != 0 ? options.master_port : find_free_port();
  std::unique_lock<std::mutex> one_launch(g_launch_mutex, std::try_to_lock);
  if (!one_launch.owns_lock()) throw Error("launch: another launch is running in this process");

  // Everything the child needs is built before fork: between fork and exec only
  // async-signal-safe calls are allowed (the parent has other threads).
  const std::set<std::string> ours{"RANK",        "LOCAL_RANK",       "WORLD_SIZE",
                                   "MASTER_ADDR", "LOCAL_WORLD_SIZE", "MASTER_PORT"};
  std::vector<std::string> inherited;
  for (char** e = environ; *e; ++e) {
    const std::string entry(*e);
    if (!ours.count(entry.substr(0, entry.find('=')))) inherited.push_back(entry);
  }
  std::vector<std::vector<std::string>> environments(static_cast<std::size_t>(nproc), inherited);
  for (int rank = 0; rank < nproc; ++rank) {
    auto& env = environments[static_cast<std::size_t>(rank)];
    env.push_back("RANK=" + std::to_string(rank));
    env.push_back("LOCAL_RANK=" + std::to_string(rank));
    env.push_back("WORLD_SIZE=" + std::to_string(nproc));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string(port));
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  spdlog::info("launch: {} worker(s) of {} (MASTER_PORT {})", nproc, argv[0], port);
  SignalForwarding forwarding;
  std::vector<Worker> workers(static_cast<std::size_t>(nproc));
  const pid_t launcher_pid = ::getpid();
  for (int rank = 0; rank < nproc; ++rank) {
    std::vector<char*> envp;
    for (const std::string& e : environments[static_cast<std::size_t>(rank)]) {
      envp.push_back(const_cast<char*>(e.c_str()));
    }
    envp.push_back(nullptr);
    // SIGINT/SIGTERM stay blocked across fork: a child must not run the launcher's handler (the
    // signal would be lost); it restores the default action, then takes any pending signal.
    sigset_t stop_signals, previous;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &stop_signals, &previous);
    const pid_t pid = ::fork();
    if (pid == 0) {
      // A worker must not outlive the launcher; the check closes the race with its exit.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != launcher_pid) ::_exit(1);
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execve(args[0], args.data(), envp.data());
      ::_exit(127);
    }
    const int fork_error = errno;
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    if (pid < 0) {
      kill_and_reap(workers);
      throw Error("launch: cannot start worker " + std::to_string(rank) + ": " +
                  std::strerror(fork_error));
    }
    workers[static_cast<std::size_t>(rank)] = {pid, true};
  }

  std::optional<int> first_failure;
  using Clock = std::chrono::steady_clock;
  Clock::time_point kill_at = Clock::time_point::max();  // set at the first failure
  int running = nproc;
  try {
    while (running > 0) {
      if (const int sig = g_received_signal.exchange(0)) {
        spdlog::warn("launch: received signal {} ({}), forwarding it to the workers", sig,
                     strsignal(sig));
        signal_running(workers, sig);
      }
      for (int rank = 0; rank < nproc; ++rank) {
        Worker& w = workers[static_cast<std::size_t>(rank)];
        if (!w.running) continue;
        int status = 0;
        if (::waitpid(w.pid, &status, WNOHANG) != w.pid) continue;
        w.running = false;
        --running;
        const bool failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
        if (!failed || first_failure) continue;
        first_failure = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        spdlog::error("launch: worker rank {} (pid {}) {}; stopping the {} other worker(s)", rank,
                      w.pid, describe(status), running);
        signal_running(workers, SIGTERM);
        kill_at = Clock::now() + options.kill_grace;
      }
      if (running == 0) break;
      if (Clock::now() >= kill_at) {
        spdlog::error("launch: {} worker(s) still running {} ms after SIGTERM, sending SIGKILL",
                      running, options.kill_grace.count());
        signal_running(workers, SIGKILL);
        kill_at = Clock::time_point::max();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  } catch (...) {
    kill_and_reap(workers);  // never leave workers behind
    throw;
  }
  return first_failure.value_or(0);
}

}  // namespace wico::train
