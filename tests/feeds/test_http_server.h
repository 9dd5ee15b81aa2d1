// TestHttpServer: runs tests/feeds/http_server.py in the background on a
// free port of 127.0.0.1, serving a directory (GET) and receiving uploads
// into it (PUT), for the duration of a test. The feeds and container tests
// share it. See the script for its Range support and its truncation fault.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "tests/test_support.h"

namespace kiln::testing {

class TestHttpServer {
 public:
  TestHttpServer(const std::filesystem::path& root, const std::filesystem::path& log) : log_(log) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
    std::string script = source_path("tests/feeds/http_server.py").string();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::close(out[0]);
      ::close(out[1]);
      ::execlp("python3", "python3", script.c_str(), root.c_str(), log.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(out[1]);
    std::string line;
    char c;
    while (::read(out[0], &c, 1) == 1 && c != '\n') line += c;
    ::close(out[0]);
    if (line.empty()) throw std::runtime_error("the test HTTP server did not start (is python3 installed?)");
    port_ = std::stoi(line);
  }
  ~TestHttpServer() {
    ::kill(pid_, SIGTERM);
    int status;
    ::waitpid(pid_, &status, 0);
  }
  TestHttpServer(const TestHttpServer&) = delete;
  TestHttpServer& operator=(const TestHttpServer&) = delete;

  std::string url(const std::string& path = "") const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + path;
  }
  // One "METHOD PATH RANGE" line per request so far ("GET /a.xvm -").
  std::string requests() const { return read_text(log_); }

 private:
  std::filesystem::path log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace kiln::testing
