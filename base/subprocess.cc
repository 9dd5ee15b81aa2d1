#include "base/subprocess.h"

#include <filesystem>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>

#include "base/interrupt.h"

extern char** environ;

namespace kiln {
namespace {

using Clock = std::chrono::steady_clock;

struct ProgramPackage {
  std::string_view program;
  std::string_view package;
};

constexpr std::array kProgramPackages = {
    ProgramPackage{"mmdebstrap", "mmdebstrap"},
    ProgramPackage{"debootstrap", "debootstrap"},
    ProgramPackage{"mke2fs", "e2fsprogs"},
    ProgramPackage{"e2fsck", "e2fsprogs"},
    ProgramPackage{"debugfs", "e2fsprogs"},
    ProgramPackage{"mformat", "mtools"},
    ProgramPackage{"mcopy", "mtools"},
    ProgramPackage{"mmd", "mtools"},
    ProgramPackage{"sfdisk", "fdisk"},
    ProgramPackage{"qemu-img", "qemu-utils"},
    ProgramPackage{"qemu-system-x86_64", "qemu-system-x86"},
    ProgramPackage{"qemu-system-i386", "qemu-system-x86"},
    ProgramPackage{"qemu-system-aarch64", "qemu-system-arm"},
    ProgramPackage{"qemu-system-arm", "qemu-system-arm"},
    ProgramPackage{"linux.uml", "user-mode-linux"},
    ProgramPackage{"uml_mconsole", "uml-utilities"},
    ProgramPackage{"gpg", "gnupg"},
    ProgramPackage{"lvm", "lvm2"},
    ProgramPackage{"cryptsetup", "cryptsetup-bin"},
    ProgramPackage{"virt-make-fs", "libguestfs-tools"},
    ProgramPackage{"virt-builder", "libguestfs-tools"},
    ProgramPackage{"xz", "xz-utils"},
    ProgramPackage{"zstd", "zstd"},
    ProgramPackage{"pigz", "pigz"},
    ProgramPackage{"xmllint", "libxml2-utils"},
    ProgramPackage{"tar", "tar"},
    ProgramPackage{"nft", "nftables"},
    ProgramPackage{"dnsmasq", "dnsmasq-base"},
    ProgramPackage{"ip", "iproute2"},
    ProgramPackage{"slirp", "slirp"},
};

// Builds "NAME=VALUE" strings: the inherited environment with overrides.
std::vector<std::string> merged_environment(const std::vector<std::string>& extra, bool clear) {
  std::map<std::string, std::string> vars;
  for (char** entry = clear ? nullptr : environ; entry && *entry; ++entry) {
    std::string_view text(*entry);
    auto eq = text.find('=');
    if (eq == std::string_view::npos) continue;
    vars[std::string(text.substr(0, eq))] = std::string(text.substr(eq + 1));
  }
  for (const std::string& text : extra) {
    auto eq = text.find('=');
    if (eq == std::string::npos) {
      vars.erase(text);  // "NAME" alone removes NAME
    } else {
      vars[text.substr(0, eq)] = text.substr(eq + 1);
    }
  }
  std::vector<std::string> out;
  for (auto& [name, value] : vars) out.push_back(name + "=" + value);
  return out;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

class Pipe {
 public:
  Pipe() {
    if (pipe2(fds_, O_CLOEXEC) != 0) fds_[0] = fds_[1] = -1;
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  bool ok() const { return fds_[0] >= 0; }
  int read_end() const { return fds_[0]; }
  int write_end() const { return fds_[1]; }
  void close_read() { close_fd(fds_[0]); }
  void close_write() { close_fd(fds_[1]); }

 private:
  static void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  int fds_[2];
};

// Kills the child's process group: politely first, then for good.
void terminate_group(pid_t pid) {
  ::kill(-pid, SIGTERM);
  for (int i = 0; i < 50; ++i) {
    int status;
    if (::waitpid(pid, &status, WNOHANG) == pid) return;
    ::usleep(100 * 1000);
  }
  ::kill(-pid, SIGKILL);
  int status;
  ::waitpid(pid, &status, 0);
}

// Appends output to `pending` and hands each complete line to `take`;
// false when `take` asked to stop.
template <class Take>
bool scan_lines(std::string& pending, std::string_view chunk, Take&& take) {
  pending.append(chunk);
  size_t newline;
  while ((newline = pending.find('\n')) != std::string::npos) {
    bool more = take(std::string_view(pending).substr(0, newline));
    pending.erase(0, newline + 1);
    if (!more) return false;
  }
  return true;
}

std::string display_name(const Command& command) {
  std::string_view name = command.argv.front();
  auto slash = name.rfind('/');
  return std::string(slash == std::string_view::npos ? name : name.substr(slash + 1));
}

}  // namespace

Result<std::string> program_identity(std::string_view name) {
  KILN_ASSIGN(std::string path, find_program(name));
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return fail_errno("cannot stat", path, errno);
  return fmt::format("{} {} {} {}.{:09}", path, st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

std::string_view debian_package_for(std::string_view program) {
  for (const auto& entry : kProgramPackages)
    if (entry.program == program) return entry.package;
  return {};
}

Result<std::string> find_program(std::string_view name) {
  if (name.find('/') != std::string_view::npos) {
    if (::access(std::string(name).c_str(), X_OK) == 0) return std::string(name);
  } else {
    const char* path_env = std::getenv("PATH");
    std::string search = path_env ? path_env : "/usr/bin:/bin";
    search += ":/usr/sbin:/sbin:/usr/local/sbin";
    size_t start = 0;
    while (start <= search.size()) {
      size_t end = search.find(':', start);
      if (end == std::string::npos) end = search.size();
      std::string dir = search.substr(start, end - start);
      start = end + 1;
      if (dir.empty()) continue;
      std::string candidate = dir + "/" + std::string(name);
      struct stat st;
      if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
          ::access(candidate.c_str(), X_OK) == 0)
        return candidate;
    }
  }
  std::string_view package = debian_package_for(name);
  if (package.empty()) return fail(ErrorKind::kMissingTool, "{} not found on PATH", name);
  return fail(ErrorKind::kMissingTool,
              "{} not found: install the Debian package '{}' (apt-get install {}), "
              "or run scripts/install-deps.sh",
              name, package, package);
}

std::string key_lines(std::string_view output, size_t max_lines) {
  std::vector<std::string_view> lines;
  while (!output.empty()) {
    auto newline = output.find('\n');
    std::string_view line = output.substr(0, newline);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    // A line quoted again further on, indented as a detail, is the same line.
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (!line.empty()) lines.push_back(line);
    if (newline == std::string_view::npos) break;
    output.remove_prefix(newline + 1);
  }
  auto is_key = [](std::string_view line) {
    std::string lower(line);
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    return line.starts_with("E:") || lower.find("error") != std::string::npos ||
           lower.find("fatal") != std::string::npos ||
           lower.find("unable to") != std::string::npos ||
           lower.find("failed") != std::string::npos;
  };
  std::vector<std::string_view> chosen;
  auto add = [&](std::string_view line) {
    if (std::find(chosen.begin(), chosen.end(), line) == chosen.end()) chosen.push_back(line);
  };
  for (auto line : lines)
    if (is_key(line) && chosen.size() + 3 < max_lines) add(line);
  size_t tail_start = lines.size() > 3 ? lines.size() - 3 : 0;
  for (size_t i = tail_start; i < lines.size(); ++i) add(lines[i]);
  if (chosen.size() > max_lines) chosen.erase(chosen.begin(), chosen.end() - max_lines);
  std::string out;
  for (auto line : chosen) {
    if (!out.empty()) out += '\n';
    out += line;
  }
  return out;
}

Result<Spawned> spawn(const Command& command) {
  if (command.argv.empty()) return fail(ErrorKind::kFailed, "spawn: empty command");
  KILN_ASSIGN(std::string program, find_program(command.argv.front()));
  std::vector<std::string> argv_strings = command.argv;
  std::vector<std::string> env_strings = merged_environment(command.env, command.clear_env);
  std::vector<char*> argv = c_strings(argv_strings);
  std::vector<char*> envp = c_strings(env_strings);
  Pipe in_pipe, out_pipe;
  if (!in_pipe.ok() || !out_pipe.ok()) return fail_errno("pipe", program, errno);
  pid_t pid = ::fork();
  if (pid < 0) return fail_errno("fork", program, errno);
  if (pid == 0) {
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(in_pipe.read_end(), 0);
    ::dup2(out_pipe.write_end(), 1);
    ::dup2(out_pipe.write_end(), 2);
    if (!command.cwd.empty() && ::chdir(command.cwd.c_str()) != 0) _exit(126);
    if (command.in_child && !command.in_child()) _exit(126);
    ::execve(program.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  ::setpgid(pid, pid);
  in_pipe.close_read();
  out_pipe.close_write();
  Spawned spawned;
  spawned.pid = pid;
  spawned.in = ::dup(in_pipe.write_end());
  spawned.out = ::dup(out_pipe.read_end());
  ::fcntl(spawned.in, F_SETFD, FD_CLOEXEC);
  ::fcntl(spawned.out, F_SETFD, FD_CLOEXEC);
  return spawned;
}

Result<Completed> run(std::vector<std::string> argv) {
  Command command;
  command.argv = std::move(argv);
  return run(command);
}

Result<Completed> run(const Command& command) {
  if (command.argv.empty()) return fail(ErrorKind::kFailed, "run: empty command");
  std::string program = command.argv.front();
  if (!command.resolve_in_child) {
    KILN_ASSIGN(program, find_program(command.argv.front()));
  }
  KILN_TRY(check_interrupted());

  std::vector<std::string> argv_strings = command.argv;
  std::vector<std::string> env_strings = merged_environment(command.env, command.clear_env);
  std::vector<char*> argv = c_strings(argv_strings);
  std::vector<char*> envp = c_strings(env_strings);

  Pipe out_pipe, err_pipe, in_pipe;
  if (!out_pipe.ok() || !err_pipe.ok() || !in_pipe.ok())
    return fail_errno("pipe", program, errno);
  bool capture_out = command.stdout_fd < 0;
  bool feed_in = command.stdin_text.has_value();

  pid_t pid = ::fork();
  if (pid < 0) return fail_errno("fork", program, errno);
  if (pid == 0) {
    ::setpgid(0, 0);
    ::signal(SIGPIPE, SIG_DFL);
    int in_fd = feed_in ? in_pipe.read_end()
                : command.stdin_fd >= 0 ? command.stdin_fd
                                        : ::open("/dev/null", O_RDONLY);
    int out_fd = capture_out ? out_pipe.write_end() : command.stdout_fd;
    ::dup2(in_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_pipe.write_end(), 2);
    if (!command.cwd.empty() && ::chdir(command.cwd.c_str()) != 0) _exit(126);
    if (command.in_child && !command.in_child()) {
      static constexpr char kMessage[] = "error: cannot set up the process environment (namespace, mounts, chroot)\n";
      [[maybe_unused]] auto written = ::write(2, kMessage, sizeof kMessage - 1);
      _exit(126);
    }
    if (command.resolve_in_child) {
      environ = envp.data();
      ::execvp(program.c_str(), argv.data());
    } else {
      ::execve(program.c_str(), argv.data(), envp.data());
    }
    _exit(127);
  }
  ::setpgid(pid, pid);
  out_pipe.close_write();
  err_pipe.close_write();
  in_pipe.close_read();
  if (!feed_in) in_pipe.close_write();

  Completed done;
  std::string err_line, out_line;
  size_t stdin_written = 0;
  auto deadline = Clock::now() + command.timeout;
  bool timed_out = false;
  bool stopped_by_us = false;

  while (true) {
    std::vector<pollfd> fds;
    if (capture_out && out_pipe.read_end() >= 0) fds.push_back({out_pipe.read_end(), POLLIN, 0});
    if (err_pipe.read_end() >= 0) fds.push_back({err_pipe.read_end(), POLLIN, 0});
    if (feed_in && in_pipe.write_end() >= 0) fds.push_back({in_pipe.write_end(), POLLOUT, 0});
    if (fds.empty()) break;
    int ready = ::poll(fds.data(), fds.size(), 100);
    if (interrupted() || (command.timeout.count() > 0 && Clock::now() > deadline)) {
      timed_out = !interrupted();
      stopped_by_us = true;
      terminate_group(pid);
      break;
    }
    if (ready <= 0) continue;
    for (const pollfd& p : fds) {
      if (p.revents == 0) continue;
      if (p.fd == in_pipe.write_end()) {
        const std::string& text = *command.stdin_text;
        ssize_t n = ::write(p.fd, text.data() + stdin_written, text.size() - stdin_written);
        if (n > 0) stdin_written += n;
        if (n < 0 || stdin_written == text.size()) in_pipe.close_write();
        continue;
      }
      char buffer[65536];
      ssize_t n = ::read(p.fd, buffer, sizeof buffer);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        if (p.fd == out_pipe.read_end()) out_pipe.close_read();
        else err_pipe.close_read();
        continue;
      }
      if (p.fd == out_pipe.read_end()) {
        done.out.append(buffer, n);
        if (command.on_stdout_line && !scan_lines(out_line, std::string_view(buffer, n), command.on_stdout_line)) {
          done.stopped_early = true;
          stopped_by_us = true;
          terminate_group(pid);
          break;
        }
      } else {
        done.err.append(buffer, n);
        if (command.on_stderr_line)
          scan_lines(err_line, std::string_view(buffer, n), [&](std::string_view line) {
            command.on_stderr_line(line);
            return true;
          });
      }
    }
    if (done.stopped_early) break;
  }

  if (done.stopped_early) return done;
  int status = 0;
  while (!stopped_by_us) {
    pid_t waited = ::waitpid(pid, &status, WNOHANG);
    if (waited == pid) break;
    if (waited < 0 && errno != EINTR) return fail_errno("waitpid", program, errno);
    if (interrupted() || (command.timeout.count() > 0 && Clock::now() > deadline)) {
      timed_out = !interrupted();
      stopped_by_us = true;
      terminate_group(pid);
      break;
    }
    ::usleep(2000);
  }
  std::string name = display_name(command);
  if (stopped_by_us && !timed_out) return fail(ErrorKind::kInterrupted, "interrupted while running {}", name);
  if (timed_out)
    return std::unexpected(Error{ErrorKind::kFailed,
                                 fmt::format("{} timed out after {} s", name,
                                             command.timeout.count() / 1000),
                                 {}, key_lines(done.err)});
  if (WIFSIGNALED(status))
    return std::unexpected(Error{ErrorKind::kFailed,
                                 fmt::format("{} was killed by signal {}", name,
                                             WTERMSIG(status)),
                                 {}, key_lines(done.err)});
  done.exit_code = WEXITSTATUS(status);
  if (done.exit_code == 127 && done.err.empty())
    return fail(ErrorKind::kMissingTool, "{}: could not execute {}", name, program);
  bool ok = done.exit_code == 0 ||
            std::find(command.ok_exit_codes.begin(), command.ok_exit_codes.end(),
                      done.exit_code) != command.ok_exit_codes.end();
  if (!ok) {
    // Some tools (debootstrap) report failures on stdout.
    std::string detail = key_lines(done.err + "\n" + done.out);
    return std::unexpected(Error{ErrorKind::kFailed,
                                 fmt::format("{} failed with exit code {}", name, done.exit_code),
                                 {}, detail});
  }
  return done;
}

namespace {

class SystemRunner : public CommandRunner {
 public:
  Result<Completed> run(const Command& command) override { return kiln::run(command); }
};

}  // namespace

CommandRunner& system_runner() {
  static SystemRunner runner;
  return runner;
}

Result<std::string> this_program() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return fail(ErrorKind::kFailed, "cannot find kiln's own executable: {}", ec.message());
  return self.string();
}

std::string shell_quoted(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                              "_-./=:,@+%") == std::string::npos)
    return word;
  std::string quoted = "'";
  for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

}  // namespace kiln
