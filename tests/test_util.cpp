#include "test_util.h"

#include <ATen/Parallel.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace wico::test {

IntraOpThreads::IntraOpThreads(int threads) : previous_(at::get_num_threads()) {
  at::set_num_threads(threads);
}

IntraOpThreads::~IntraOpThreads() { at::set_num_threads(previous_); }

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("wico_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + "_" +
           std::to_string(rd() % 100000));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path TempDir::write(const std::string& relative, const std::string& content) const {
  const auto file = path_ / relative;
  std::filesystem::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + file.string());
  return file;
}

CommandResult run_wico(const std::string& arguments, const std::filesystem::path& working_dir) {
  std::string command;
  if (!working_dir.empty()) command = "cd '" + working_dir.string() + "' && ";
  return run_command(command + "'" + WICO_TOOL_PATH + "' " + arguments);
}

CommandResult run_command(const std::string& shell_command) {
  const std::string command = shell_command + " 2>&1";
  CommandResult result;
  std::FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + command);
  std::array<char, 4096> buffer{};
  while (std::fgets(buffer.data(), buffer.size(), pipe)) result.output += buffer.data();
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace wico::test
