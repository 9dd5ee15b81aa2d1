#include "runtime/instance_processes.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>
#include <thread>

#include "base/files.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

bool all_digits(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isdigit(c); });
}

// Whether the process's environment holds `marker` as a whole entry. A
// process we may not read, or one that has ended, holds nothing.
bool carries(pid_t pid, std::string_view marker) {
  auto environment = read_file(fmt::format("/proc/{}/environ", pid));
  if (!environment) return false;
  std::string_view rest = *environment;
  while (!rest.empty()) {
    size_t end = rest.find('\0');
    if (rest.substr(0, end) == marker) return true;
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  return false;
}

// Kills `pid` only if it still is the marked process: the descriptor pins
// the process, so a pid reused since the scan is checked, not killed.
// (Through syscall(): Debian 12's glibc declares the wrappers without C
// linkage for C++.)
void kill_if_marked(pid_t pid, std::string_view marker) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return;  // gone already
  if (carries(pid, marker)) (void)::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0);
  ::close(fd);
}

std::string joined(const std::vector<pid_t>& pids) {
  std::string out;
  for (pid_t pid : pids) out += (out.empty() ? "" : ", ") + std::to_string(pid);
  return out;
}

}  // namespace

std::string instance_marker(std::string_view instance_id) { return fmt::format("KILN_INSTANCE={}", instance_id); }

std::vector<pid_t> find_instance_processes(std::string_view instance_id) {
  std::string marker = instance_marker(instance_id);
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    std::string name = entry.path().filename().string();
    if (!all_digits(name)) continue;
    pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid != ::getpid() && carries(pid, marker)) out.push_back(pid);
  }
  return out;
}

Result<size_t> end_instance_processes(std::string_view instance_id, std::chrono::milliseconds timeout) {
  std::string marker = instance_marker(instance_id);
  auto deadline = Clock::now() + timeout;
  std::set<pid_t> killed;
  while (true) {
    std::vector<pid_t> alive = find_instance_processes(instance_id);
    if (alive.empty()) return killed.size();
    if (Clock::now() > deadline)
      return fail(ErrorKind::kFailed, "processes {} of instance {} still run {} ms after SIGKILL", joined(alive),
                  instance_id, timeout.count());
    for (pid_t pid : alive) {
      kill_if_marked(pid, marker);
      killed.insert(pid);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace kiln
