// Shared helpers for kiln's tests: scratch directories, paths into the source
// tree, running the built `kiln` binary the way a user would, and waiting
// for what an event brings.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace kiln::testing {

namespace fs = std::filesystem;

// A fresh directory under the build's temporary area, removed afterwards.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

// Held by tests that use one thing of the whole host, e.g. a bridge named
// xenbr0 (one test makes it, another needs it absent): they take turns,
// whichever test processes ctest runs at once.
class HostWideLock {
 public:
  explicit HostWideLock(const std::string& what);
  ~HostWideLock();
  HostWideLock(const HostWideLock&) = delete;
  HostWideLock& operator=(const HostWideLock&) = delete;

 private:
  int fd_ = -1;
};

fs::path source_path(const std::string& relative);
std::string kiln_binary();

struct ProcessResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a program (argv, no shell) and captures its output.
ProcessResult run_program(const std::vector<std::string>& argv,
                          const std::vector<std::string>& env = {});
// The JSON object on the last line of `out` (kiln's --json outcome comes
// after its progress lines); a discarded value when it is not JSON.
nlohmann::json last_json_line(const std::string& out);

// Runs build/kiln with the given arguments.
ProcessResult run_kiln(const std::vector<std::string>& args,
                       const std::vector<std::string>& env = {});

std::string read_text(const fs::path& path);
void write_text(const fs::path& path, const std::string& text);

// Names every file under `dir`, relative, sorted: for "nothing left behind".
std::vector<std::string> list_tree(const fs::path& dir);

// Polls `condition` until it holds, for at most `timeout`. For anything that
// arrives after an event (a console line, a state in a record, processes
// gone): no fixed sleep guarantees it, on a loaded machine least of all,
// and neither does an earlier sign such as "ready". The timeout is a bound
// for a broken run, not a pace. On failure the message shows what `seen`
// returned last, so that the log says what was there instead.
::testing::AssertionResult wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                                    const std::function<std::string()>& seen);

// The live processes (zombies have ended) whose command line or open files
// mention one of `needles`, as "PID: command line": for "nothing of it is
// left running", seen from outside kiln.
std::vector<std::string> processes_naming(const std::vector<std::string>& needles);

// Guest-side shell snippets for network tests. guest_listener: a TCP
// listener that greets each connection with `greeting` and a line break
// (the image's perl: Debian's minbase has perl-base); the snippet ends once
// it listens. first_line_from: a connection that prints the first line it
// is sent.
std::string guest_listener(int port, const std::string& greeting);
std::string first_line_from(const std::string& host, int port);
// A TCP port on 127.0.0.1 that no one held a moment ago.
uint16_t free_loopback_port();

// The last `max` characters of `text`: for failure messages.
std::string tail(const std::string& text, size_t max = 3000);

}  // namespace kiln::testing
