// GuestConsole: starts a VM for a test with its serial console going to a
// file, and waits for a line to appear there (a login prompt), so tests can
// say "the image boots" with the real kernel and init.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/test_support.h"

namespace kiln::testing {

class GuestConsole {
 public:
  // argv is the hypervisor command line; its serial console must be written
  // to `log`.
  GuestConsole(std::vector<std::string> argv, std::filesystem::path log) : log_(std::move(log)) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      std::vector<char*> args;
      for (auto& arg : argv) args.push_back(arg.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      _exit(127);
    }
  }
  ~GuestConsole() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      int status;
      ::waitpid(pid_, &status, 0);
    }
  }

  // Seconds until `text` showed on the console, or -1 on timeout or exit.
  double wait_for(const std::string& text, std::chrono::seconds timeout) {
    auto start = std::chrono::steady_clock::now();
    bool shown = false;
    bool ended = testing::wait_for(
        [&] {
          shown = read_text(log_).find(text) != std::string::npos;
          return shown || exited();
        },
        timeout, [] { return std::string(); });
    if (!ended || !shown) return -1;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  std::string output() const { return read_text(log_); }

 private:
  bool exited() {
    int status;
    if (pid_ <= 0 || ::waitpid(pid_, &status, WNOHANG) != pid_) return pid_ <= 0;
    pid_ = -1;
    return true;
  }

  std::filesystem::path log_;
  pid_t pid_ = -1;
};

}  // namespace kiln::testing
