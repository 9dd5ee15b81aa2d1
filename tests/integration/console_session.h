// ConsoleSession: `kiln console NAME` on pipes, driven like a person at
// the keyboard: it waits for what the guest prints before typing, so a slow
// guest only makes the test slower, never wrong.
#pragma once

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln::testing {

class ConsoleSession {
 public:
  // `args` follow `kiln console`: the instance's name, and --connect URI.
  ConsoleSession(const std::vector<std::string>& args, const std::vector<std::string>& env) {
    std::vector<std::string> argv = {kiln_binary(), "console"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> pointers;
    for (std::string& arg : argv) pointers.push_back(arg.data());
    pointers.push_back(nullptr);
    int in[2], out[2];
    EXPECT_EQ(::pipe(in), 0);
    EXPECT_EQ(::pipe(out), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      for (int fd : {in[0], in[1], out[0], out[1]}) ::close(fd);
      for (const std::string& variable : env) ::putenv(strdup(variable.c_str()));
      ::execv(pointers[0], pointers.data());
      _exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    to_ = in[1];
    from_ = out[0];
  }
  ~ConsoleSession() {
    ::close(to_);
    ::close(from_);
    if (pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  void type(const std::string& keys) { EXPECT_EQ(::write(to_, keys.data(), keys.size()), ssize_t(keys.size())); }

  // Reads until `text` shows up after what was already seen, typing `nudge`
  // every two seconds of silence (a getty prints its prompt again on Enter).
  bool wait_for(const std::string& text, const std::string& nudge, int seconds) {
    size_t from = seen_;
    for (int waited = 0; waited < seconds * 10; ++waited) {
      if (output_.find(text, from) != std::string::npos) {
        seen_ = output_.size();
        return true;
      }
      pollfd fd{from_, POLLIN, 0};
      if (::poll(&fd, 1, 100) == 1) {
        char buffer[4096];
        ssize_t got = ::read(from_, buffer, sizeof buffer);
        if (got <= 0) return false;
        output_.append(buffer, size_t(got));
      } else if (!nudge.empty() && waited % 20 == 19) {
        type(nudge);
      }
    }
    return false;
  }

  int wait_exit(int seconds) {
    int status = 0;
    for (int i = 0; i < seconds * 10; ++i) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return -1;
  }

  const std::string& output() const { return output_; }

 private:
  pid_t pid_ = -1;
  int to_ = -1;
  int from_ = -1;
  std::string output_;
  size_t seen_ = 0;
};

}  // namespace kiln::testing
