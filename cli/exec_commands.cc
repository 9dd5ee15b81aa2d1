// kiln exec | cp | run: commands in a running guest, files in and out of
// it, and the CI one-liner that boots an image, runs one command in it and
// throws the instance away. All of them go over the exec channel
// (runtime/guest_exec.h), which needs no guest network.
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>

#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/interrupt.h"
#include "cli/boot_flags.h"
#include "cli/command.h"
#include "runtime/guest_exec.h"
#include "runtime/guest_ssh.h"
#include "runtime/instance_manager.h"
#include "runtime/instance_runtime.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// kiln's own failures, as ssh has it: the command's codes are the command's.
constexpr int kExecFailed = 255;
// A command killed by --timeout, as timeout(1) has it.
constexpr int kTimedOut = 124;

constexpr const char* kExitCodes =
    "Exit code: the command's own (128+N when signal N killed it, 124 when --timeout did);\n"
    "255 when kiln could not run it (the message says why).";

int exec_failed(const Error& error) {
  report_error(error);
  return kExecFailed;
}

// The options that say how a command runs in the guest.
struct CommandFlags {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string user = "root";
  std::string workdir;
  unsigned timeout = 0;
  bool interactive = false;
  bool tty = false;
  int wait_ready = 0;

  void add_to(CLI::App* app, bool with_wait) {
    app->add_flag("--interactive,-i", interactive, "Forward standard input even from a terminal (a pipe or file is "
                                                   "always forwarded)");
    app->add_flag("--tty,-t", tty, "Run the command on a pseudo-terminal (its size follows this terminal's)");
    app->add_option("--user,-u", user, "Run as this user of the guest (default root)");
    app->add_option("--env,-e", env, "NAME=VALUE in the command's environment (repeatable)")
      ->allow_extra_args(false);
    app->add_option("--workdir,-w", workdir, "Working directory (default the user's home)");
    app->add_option("--timeout", timeout, "Kill the command's process group after SECONDS (exit code 124)");
    if (with_wait)
      app->add_flag("--wait-ready{120}", wait_ready,
                    "Wait for an instance that is still booting (default up to 120 s; --wait-ready=SECONDS)");
  }

  ExecRequest request() const {
    ExecRequest r;
    r.argv = argv;
    r.env = env;
    r.user = user;
    r.workdir = workdir;
    r.tty = tty;
    r.timeout_seconds = timeout;
    return r;
  }
};

Result<> write_out(int fd, std::string_view bytes) { return write_all(fd, bytes.data(), bytes.size(), "output"); }

std::pair<uint16_t, uint16_t> terminal_size() {
  winsize size{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) != 0 || size.ws_row == 0) return {24, 80};
  return {size.ws_row, size.ws_col};
}

// The local terminal for a -t command, restored on the way out: raw when
// its input goes to the guest; otherwise only its output processing is
// off, since the guest's pty has already turned \n into \r\n (and Ctrl-C
// still interrupts kiln).
class RawTerminal {
 public:
  RawTerminal(int fd, bool input_too) : fd_(fd) {
    if (!::isatty(fd_) || ::tcgetattr(fd_, &saved_) != 0) return;
    termios raw = saved_;
    if (input_too) ::cfmakeraw(&raw);
    else raw.c_oflag &= ~OPOST;
    active_ = ::tcsetattr(fd_, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(fd_, TCSANOW, &saved_);
  }

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

// Runs the command with this process's stdin, stdout and stderr; the exit
// code is kiln's.
int run_command(ExecTarget& target, const std::string& name, const CommandFlags& flags, ExecWait wait) {
  ExecRequest request = flags.request();
  ExecIo io;
  bool stdin_is_terminal = ::isatty(STDIN_FILENO);
  if (flags.interactive || !stdin_is_terminal) io.stdin_fd = STDIN_FILENO;
  io.out = [](std::string_view bytes) { return write_out(STDOUT_FILENO, bytes); };
  io.err = [](std::string_view bytes) { return write_out(STDERR_FILENO, bytes); };
  UniqueFd resize;
  std::optional<RawTerminal> raw;
  if (flags.tty) {
    std::tie(request.rows, request.cols) = terminal_size();
    sigset_t winch;
    sigemptyset(&winch);
    sigaddset(&winch, SIGWINCH);
    ::sigprocmask(SIG_BLOCK, &winch, nullptr);
    resize = UniqueFd(::signalfd(-1, &winch, SFD_CLOEXEC | SFD_NONBLOCK));
    io.resize_fd = resize.get();
    io.window_size = terminal_size;
    if (io.stdin_fd == STDIN_FILENO && stdin_is_terminal) raw.emplace(STDIN_FILENO, true);
    else raw.emplace(STDOUT_FILENO, false);
  }
  auto exit = exec_in_instance(target, name, request, io, wait);
  raw.reset();
  if (!exit) return exec_failed(exit.error());
  if (exit->timed_out) {
    fmt::print(stderr, "kiln: {}: the command ran out of its {} s and was killed\n", name, flags.timeout);
    return kTimedOut;
  }
  return shell_exit_code(*exit);
}

// "NAME:PATH" as the guest side of a copy; a host path with a colon can be
// written ./a:b.
std::optional<std::pair<std::string, std::string>> guest_side(const std::string& text) {
  size_t colon = text.find(':');
  if (colon == std::string::npos || colon == 0 || text.substr(0, colon).find('/') != std::string::npos)
    return std::nullopt;
  return std::pair{text.substr(0, colon), text.substr(colon + 1)};
}

Result<CopyRequest> copy_request(const std::string& source, const std::string& target, bool recursive) {
  auto from = guest_side(source);
  auto to = guest_side(target);
  if (from.has_value() == to.has_value())
    return fail(ErrorKind::kBadInput, "kiln cp {} {}: exactly one side must be NAME:PATH in the guest", source, target);
  CopyRequest request;
  request.recursive = recursive;
  request.to_guest = to.has_value();
  const auto& guest = to ? *to : *from;
  request.instance = guest.first;
  request.guest_path = guest.second;
  request.host_path = to ? source : target;
  if (request.guest_path.empty()) return fail(ErrorKind::kBadInput, "{}: no path in the guest", to ? target : source);
  return request;
}

void register_exec(CLI::App& root, Registry& registry) {
  auto name = std::make_shared<std::string>();
  auto flags = std::make_shared<CommandFlags>();
  CLI::App* app = root.add_subcommand("exec", "Run a command in a running instance (no guest network needed)");
  app->add_option("name", *name, "Instance name")->required();
  flags->add_to(app, true);
  app->add_option("command", flags->argv, "The command and its arguments, after --")->required();
  auto connect = add_connect(app);
  app->footer(std::string("Example: kiln exec web1 -- systemctl is-system-running\n") + kExitCodes);
  registry.push_back({app, [name, flags, connect] {
                        auto target = instance_runtime(*connect)->exec_target();
                        return run_command(*target, *name, *flags, ExecWait{std::chrono::seconds(flags->wait_ready)});
                      }});
}

void register_cp(CLI::App& root, Registry& registry) {
  auto source = std::make_shared<std::string>();
  auto target = std::make_shared<std::string>();
  auto recursive = std::make_shared<bool>(false);
  auto wait_ready = std::make_shared<int>(0);
  CLI::App* app = root.add_subcommand("cp", "Copy files between the host and a running instance");
  app->add_option("source", *source, "HOST-PATH or NAME:GUEST-PATH")->required();
  app->add_option("target", *target, "NAME:GUEST-PATH or HOST-PATH")->required();
  app->add_flag("--recursive,-r", *recursive, "Copy directories, with everything in them");
  app->add_flag("--wait-ready{120}", *wait_ready, "Wait for an instance that is still booting (up to 120 s)");
  auto connect = add_connect(app);
  app->footer(
      "Modes are kept. The copy is written under a temporary name beside its destination and renamed\n"
      "into place once complete; a failure (a full disk, say) leaves nothing under the final name.\n"
      "A destination that is a directory receives the source under its own name, as cp does.");
  registry.push_back({app, [=] {
                        auto request = copy_request(*source, *target, *recursive);
                        if (!request) return report_error(request.error());
                        auto target = instance_runtime(*connect)->exec_target();
                        return finish(copy_with_guest(*target, *request, ExecWait{std::chrono::seconds(*wait_ready)}),
                                      [] {});
                      }});
}

// Replaces kiln with ssh, so that the terminal and the exit code are ssh's.
int run_ssh(const std::string& name, const std::string& user, const std::vector<std::string>& extra, int wait_ready) {
  InstanceStore store = InstanceStore::open();
  auto record = wait_ready > 0 ? kiln::wait_ready(store, name, std::chrono::seconds(wait_ready)) : store.load(name);
  if (!record) return exec_failed(record.error());
  std::filesystem::path known_hosts = store.paths(name).state_dir / "known_hosts";
  auto ssh = plan_ssh(*record, known_hosts, user, extra);
  if (!ssh) return exec_failed(ssh.error());
  if (auto written = write_file_atomic(known_hosts, ssh->known_hosts, 0600); !written)
    return exec_failed(written.error());
  std::vector<char*> argv;
  for (std::string& word : ssh->argv) argv.push_back(word.data());
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  return exec_failed(Error{ErrorKind::kMissingTool,
                           fmt::format("cannot run ssh: {} (Debian package openssh-client)", std::strerror(errno))});
}

void register_ssh(CLI::App& root, Registry& registry) {
  auto name = std::make_shared<std::string>();
  auto user = std::make_shared<std::string>("root");
  auto extra = std::make_shared<std::vector<std::string>>();
  auto wait = std::make_shared<int>(0);
  CLI::App* app = root.add_subcommand("ssh", "ssh into an instance, trusting only the host keys kiln made for it");
  app->add_option("name", *name, "Instance name")->required();
  app->add_option("--login,-l", *user, "The guest user (default root)");
  app->add_flag("--wait-ready{120}", *wait, "Wait for an instance that is still booting (up to 120 s)");
  app->add_option("ssh-args", *extra, "ssh options, then a command, after --");
  app->footer(
      "Needs user networking with a forwarded port (kiln boot --ssh-port PORT) and an image whose sshd\n"
      "serves the host keys kiln made (kiln's images do). The keys go to a known_hosts file of the\n"
      "instance's own, which ssh insists on: no first connection is taken on trust.\n"
      "Example: kiln ssh web1 -- -i ~/.ssh/id_ed25519 uptime\n"
      "Exit code: ssh's own; 255 when kiln could not start it.");
  registry.push_back({app, [=] { return run_ssh(*name, *user, *extra, *wait); }});
}

struct RunFlags {
  BootFlags boot;
  CommandFlags command;
  std::vector<std::string> copies;    // HOST:GUEST, in before the command
  std::vector<std::string> collects;  // GUEST:HOST, out after it
  bool keep = false;
  bool json = false;
  int wait_ready = 300;
};

// Splits "A:B" at its last colon (a guest path never needs one; a host path
// with one is written ./a:b).
Result<std::pair<std::string, std::string>> pair_of(const std::string& text, const char* option) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return fail(ErrorKind::kBadInput, "{} {}: expected FROM:TO", option, text);
  return std::pair{text.substr(0, colon), text.substr(colon + 1)};
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Removes the instance on the way out, Ctrl-C included, unless --keep.
struct EphemeralInstance {
  const InstanceStore& store;
  std::string name;
  bool keep = false;
  ~EphemeralInstance() {
    if (keep) {
      fmt::print(stderr, "kiln: {} is left running (--keep): `kiln destroy {}` when done\n", name, name);
      return;
    }
    clear_interrupt();
    // One that crashed may be gone already (on_crash = destroy), its log kept.
    if (!std::filesystem::exists(store.paths(name).record)) return;
    if (auto gone = destroy_instance(store, name); !gone) report_error(gone.error());
  }
};

int run_run(RunFlags& flags) {
  if (auto ok = apply_flags(flags.boot); !ok) return exec_failed(ok.error());
  BootRequest& request = flags.boot.request;
  if (request.name.empty()) request.name = "run-" + random_hex(4);
  std::vector<CopyRequest> copies, collects;
  for (const std::string& text : flags.copies) {
    auto pair = pair_of(text, "--copy");
    if (!pair) return exec_failed(pair.error());
    copies.push_back({request.name, pair->first, pair->second, true, true});
  }
  for (const std::string& text : flags.collects) {
    auto pair = pair_of(text, "--collect");
    if (!pair) return exec_failed(pair.error());
    collects.push_back({request.name, pair->second, pair->first, false, true});
  }
  Reporter reporter(Reporter::detect(false));
  InstanceStore store = InstanceStore::open();
  auto start = Clock::now();
  auto outcome = start_instance(store, flags.boot, reporter);
  if (!outcome) return exec_failed(outcome.error());
  double booted = seconds_since(start);
  EphemeralInstance instance{store, request.name, flags.keep};
  fmt::print(stderr, "kiln: {}: {}\n", request.name, outcome->backend_choice);
  ExecWait wait{std::chrono::seconds(flags.wait_ready)};
  OwnExecTarget target(store);
  auto ready = wait_ready(store, request.name, wait.ready);
  if (!ready) return exec_failed(ready.error());
  double ready_at = seconds_since(start);
  for (const CopyRequest& copy : copies)
    if (auto done = copy_with_guest(target, copy, wait); !done) return exec_failed(done.error());
  auto command_start = Clock::now();
  int code = run_command(target, request.name, flags.command, wait);
  double command_seconds = seconds_since(command_start);
  for (const CopyRequest& collect : collects)
    if (auto done = copy_with_guest(target, collect, wait); !done) {
      report_error(done.error());
      if (code == 0) code = kExecFailed;
    }
  if (flags.json)
    fmt::print(stderr, "{}\n",
               nlohmann::json{{"name", request.name},
                              {"backend", backend_name(ready->spec.backend)},
                              {"boot_seconds", booted},
                              {"ready_seconds", ready_at},
                              {"command_seconds", command_seconds},
                              {"total_seconds", seconds_since(start)},
                              {"exit_code", code}}
                   .dump());
  return code;
}

void register_run(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<RunFlags>();
  CLI::App* app = root.add_subcommand(
      "run", "Boot an image, run one command in it, copy results out, and remove the instance");
  add_instance_options(app, flags->boot);
  flags->command.add_to(app, false);
  app->add_option("--copy", flags->copies, "HOST-PATH:GUEST-PATH copied in (files or directories) before the command "
                                          "(repeatable)")
      ->allow_extra_args(false);
  app->add_option("--collect", flags->collects, "GUEST-PATH:HOST-PATH copied out after the command, whatever its "
                                                "exit code (repeatable)")
      ->allow_extra_args(false);
  app->add_flag("--keep", flags->keep, "Leave the instance running afterwards, for a look inside");
  app->add_option("--wait-ready", flags->wait_ready, "Seconds to wait for the guest to be ready (default 300)");
  app->add_flag("--json", flags->json, "Write a report (boot, ready and command times, exit code) to stderr as JSON");
  app->add_option("command", flags->command.argv, "The command and its arguments, after --")->required();
  app->footer(std::string("Example: kiln run out/debian-12-minimal --copy ./tests:/root/tests -- /root/tests/run.sh\n"
                          "Ctrl-C removes the instance too.\n") +
              kExitCodes);
  registry.push_back({app, [flags] { return run_run(*flags); }});
}

}  // namespace

void register_exec_commands(CLI::App& root, Registry& registry) {
  register_exec(root, registry);
  register_cp(root, registry);
  register_ssh(root, registry);
  register_run(root, registry);
}

}  // namespace kiln::cli
