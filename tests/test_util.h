// Helpers shared by the tests: temporary directories, files, running the `wico` tool.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace wico::test {

// A fresh directory under the system temp folder, removed when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  // Writes `content` to path()/relative (creating folders) and returns the full path.
  std::filesystem::path write(const std::string& relative, const std::string& content) const;

 private:
  std::filesystem::path path_;
};

// LibTorch's intra-op thread count set for one scope, then restored. Tests of code that runs in
// at::parallel_for set two or more: LibTorch's default can be a single thread (it is on the
// 2-core CI machine), and a body that only ever runs on the calling thread proves nothing about
// the others (it hid a thread-local-state bug in Swin's window attention).
class IntraOpThreads {
 public:
  explicit IntraOpThreads(int threads);
  ~IntraOpThreads();
  IntraOpThreads(const IntraOpThreads&) = delete;
  IntraOpThreads& operator=(const IntraOpThreads&) = delete;

 private:
  int previous_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs the built `wico` tool with `arguments` (a shell-quoted string) in `working_dir`.
CommandResult run_wico(const std::string& arguments, const std::filesystem::path& working_dir = {});
// Runs a shell command (stdout and stderr together).
CommandResult run_command(const std::string& shell_command);

std::string read_file(const std::filesystem::path& path);

// Runs `fn`, expecting it to throw an E; returns the message (and fails the test if it did not).
template <typename E, typename Fn>
std::string thrown_message(Fn&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception, none was thrown";
  return "";
}

}  // namespace wico::test
