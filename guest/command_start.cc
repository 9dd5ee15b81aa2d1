// Starting an exec session's command (see command_start.h): the user's
// account and environment, pipes or a pty, and the child's setup between
// fork and exec.
#include "guest/command_start.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "guest/accounts.h"

namespace kiln::agent {
namespace {

constexpr const char* kRootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr const char* kUserPath = "/usr/local/bin:/usr/bin:/bin";

// What the child needs, made before fork: between fork and exec the child
// only copies and calls.
struct ChildPlan {
  Account account;
  std::string workdir;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  int pty_slave = -1;  // on pipes, none
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;  // the child's ends of the pipes
};

// The user's login environment, then the request's entries over it.
std::vector<std::string> environment(const ExecRequest& request, const Account& account) {
  std::vector<std::string> env = {"HOME=" + account.home,      "USER=" + account.name,
                                  "LOGNAME=" + account.name,   "SHELL=" + account.shell,
                                  std::string("PATH=") + (account.uid == 0 ? kRootPath : kUserPath)};
  if (request.tty) env.push_back("TERM=xterm-256color");
  for (const std::string& entry : request.env) {
    std::string_view name = std::string_view(entry).substr(0, entry.find('=') + 1);
    std::erase_if(env, [&](const std::string& old) { return old.starts_with(name); });
    env.push_back(entry);
  }
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& words) {
  std::vector<char*> out;
  for (std::string& word : words) out.push_back(word.data());
  out.push_back(nullptr);
  return out;
}

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Says why on the command's stderr and ends the child, with the codes a
// shell uses: 127 for a command not found, 126 for one that cannot run.
[[noreturn]] void fail_child(const std::string& what, int error) {
  std::string message = "kiln-exec-agent: " + what + ": " + std::strerror(error) + "\n";
  [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, message.data(), message.size());
  ::_exit(error == ENOENT ? 127 : 126);
}

void attach_pty(int slave) {
  for (int fd = 0; fd < 3; ++fd) ::dup2(slave, fd);
  if (::ioctl(STDIN_FILENO, TIOCSCTTY, 0) != 0) fail_child("the pty as controlling terminal", errno);
}

void attach_pipes(const ChildPlan& plan) {
  // dup2 clears close-on-exec on the copies; the originals close at exec.
  ::dup2(plan.stdin_fd, STDIN_FILENO);
  ::dup2(plan.stdout_fd, STDOUT_FILENO);
  ::dup2(plan.stderr_fd, STDERR_FILENO);
}

// The agent blocks SIGCHLD (it reads it from a signalfd) and ignores
// SIGPIPE; exec keeps both, and a command must not inherit either.
void default_signals() {
  for (int signal = 1; signal < NSIG; ++signal) ::signal(signal, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

[[noreturn]] void run_child(ChildPlan& plan) {
  ::setsid();
  if (plan.pty_slave < 0)
    attach_pipes(plan);
  else
    attach_pty(plan.pty_slave);
  const Account& account = plan.account;
  if (::setgroups(account.groups.size(), account.groups.data()) != 0) fail_child("setgroups", errno);
  if (::setgid(account.gid) != 0) fail_child("setgid", errno);
  if (::setuid(account.uid) != 0) fail_child("setuid", errno);
  if (!plan.workdir.empty()) {
    if (::chdir(plan.workdir.c_str()) != 0) fail_child(plan.workdir, errno);
  } else if (::chdir(account.home.c_str()) != 0) {
    ::chdir("/");  // a user without a home starts at the root, as login does
  }
  std::vector<char*> env = c_strings(plan.env);
  environ = env.data();  // execvp looks the command up on this PATH
  default_signals();
  std::vector<char*> argv = c_strings(plan.argv);
  ::execvp(argv[0], argv.data());
  fail_child(plan.argv[0], errno);
}

std::expected<void, std::string> check_workdir(const std::string& workdir) {
  if (workdir.empty()) return {};
  struct stat info{};
  if (::stat(workdir.c_str(), &info) != 0)
    return std::unexpected("working directory " + workdir + ": " + std::strerror(errno));
  if (!S_ISDIR(info.st_mode)) return std::unexpected("working directory " + workdir + ": not a directory");
  return {};
}

struct Pty {
  Fd master, slave;
};

// A pty of the request's size. The slave is opened here rather than in the
// child, so that failing to open it is an error the host hears of, not a
// command that exits 126 without a word.
std::expected<Pty, std::string> open_pty(const ExecRequest& request) {
  Fd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  char name[128];
  if (!master || ::grantpt(master.get()) != 0 || ::unlockpt(master.get()) != 0 ||
      ::ptsname_r(master.get(), name, sizeof name) != 0)
    return std::unexpected(std::string("cannot open a pty: ") + std::strerror(errno));
  Fd slave(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!slave) return std::unexpected(std::string("cannot open a pty: ") + name + ": " + std::strerror(errno));
  winsize size{};
  size.ws_row = request.rows;
  size.ws_col = request.cols;
  ::ioctl(master.get(), TIOCSWINSZ, &size);
  set_nonblocking(master.get());
  return Pty{std::move(master), std::move(slave)};
}

struct Pipe {
  Fd read, write;
};

std::expected<Pipe, std::string> make_pipe() {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) return std::unexpected(std::string("pipe: ") + std::strerror(errno));
  return Pipe{Fd(ends[0]), Fd(ends[1])};
}

// Forks the child. The agent keeps `command`'s descriptors; the child's
// ends, which the caller holds, close in the agent when the caller returns.
std::expected<StartedCommand, std::string> fork_child(ChildPlan& plan, StartedCommand command) {
  pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) run_child(plan);
  command.pid = pid;
  return command;
}

std::expected<StartedCommand, std::string> start_on_pty(ChildPlan& plan, const ExecRequest& request) {
  auto pty = open_pty(request);
  if (!pty) return std::unexpected(pty.error());
  plan.pty_slave = pty->slave.get();
  StartedCommand command;
  command.input = Fd(::fcntl(pty->master.get(), F_DUPFD_CLOEXEC, 0));
  command.output = std::move(pty->master);
  return fork_child(plan, std::move(command));
}

std::expected<StartedCommand, std::string> start_on_pipes(ChildPlan& plan) {
  auto in = make_pipe(), out = make_pipe(), err = make_pipe();
  if (!in || !out || !err) return std::unexpected(!in ? in.error() : !out ? out.error() : err.error());
  plan.stdin_fd = in->read.get();
  plan.stdout_fd = out->write.get();
  plan.stderr_fd = err->write.get();
  for (const Fd* fd : {&in->write, &out->read, &err->read}) set_nonblocking(fd->get());
  StartedCommand command;
  command.input = std::move(in->write);
  command.output = std::move(out->read);
  command.errors = std::move(err->read);
  return fork_child(plan, std::move(command));
}

}  // namespace

std::expected<StartedCommand, std::string> start_command(const ExecRequest& request) {
  auto account = find_account(request.user);
  if (!account) return std::unexpected(account.error());
  if (auto workdir = check_workdir(request.workdir); !workdir) return std::unexpected(workdir.error());
  ChildPlan plan{*account, request.workdir, request.argv, environment(request, *account)};
  return request.tty ? start_on_pty(plan, request) : start_on_pipes(plan);
}

void signal_command(pid_t pid, int signal) {
  if (::kill(-pid, signal) != 0 && errno == ESRCH) ::kill(pid, signal);
}

}  // namespace kiln::agent
