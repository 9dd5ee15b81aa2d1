#include "runtime/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <optional>

#include "base/files.h"
#include "base/subprocess.h"
#include "base/unix_socket.h"
#include "formats/image/guest_protocol.h"
#include "runtime/agent_relay.h"
#include "runtime/guest_hosts_sync.h"
#include "runtime/network_manager.h"
#include "runtime/uml_sandbox.h"
#include "runtime/console_scanner.h"
#include "runtime/hypervisor_command.h"
#include "runtime/instance_processes.h"
#include "runtime/mconsole_client.h"
#include "runtime/qmp_client.h"
#include "runtime/save_file.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr size_t kConsoleHistory = 64 * 1024;
constexpr uint64_t kConsoleLogLimit = 16 * 1024 * 1024;
// How long SIGKILLed hypervisor processes get to go (one in the middle of
// disk I/O ends only when that I/O does).
constexpr std::chrono::seconds kEndProcessesTimeout{20};
// How long a panicking kernel gets to finish its report (the stack trace,
// then "end Kernel panic") before kiln stops the guest: it goes into the
// kept log. Under TCG the report takes a few hundred milliseconds.
constexpr std::chrono::milliseconds kPanicReportTime{1500};

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Why the hypervisor stopped, as far as the supervisor can tell.
enum class StopCause { kPowerOff, kReboot, kCrash };

// What the supervisor was asked to do, which decides what a stop means.
// kMigrated: the guest's state went whole to another host, where it runs
// once this one lets go.
enum class Intent { kNone, kDestroy, kSave, kMigrated };

class Supervisor {
 public:
  Supervisor(const InstanceStore& store, SupervisorOptions options)
      : store_(store), options_(std::move(options)), paths_(store.paths(options_.name)) {}

  int run() {
    auto record = store_.load(options_.name);
    if (!record) return fatal(record.error());
    record_ = std::move(*record);
    record_.supervisor_pid = ::getpid();
    if (auto ready = setup(); !ready) return fatal(ready.error());
    bool incoming = options_.restore_from.has_value() || options_.incoming_socket.has_value();
    while (true) {
      if (auto launched = launch(incoming); !launched) {
        if (options_.incoming_socket) return discard(launched.error());
        return fatal(launched.error());
      }
      incoming = false;
      StopCause cause = serve();
      if (intent_ == Intent::kDestroy) return finish(false, "destroyed");
      if (arriving_ || !arrival_failure_.empty())
        return discard(Error{ErrorKind::kFailed, "the migration did not arrive: " +
                                                     (arrival_failure_.empty() ? record_.last_event : arrival_failure_),
                             {}, {}});
      if (intent_ == Intent::kSave) return finish_saved();
      if (intent_ == Intent::kMigrated) return finish_migrated();
      LifecyclePolicy policy = cause == StopCause::kPowerOff ? record_.spec.on_poweroff
                               : cause == StopCause::kReboot ? record_.spec.on_reboot
                                                             : record_.spec.on_crash;
      if (policy == LifecyclePolicy::kRestart) {
        ++record_.restarts;
        continue;
      }
      if (policy == LifecyclePolicy::kPreserve) {
        record_.state = cause == StopCause::kCrash ? InstanceState::kCrashed : InstanceState::kStopped;
        record_.hypervisor_pid = 0;
        save_record();
        return 0;
      }
      // The console log says why the guest crashed, or never got ready:
      // it outlives the instance (kept again, now with its last lines).
      return finish(false, record_.last_event, cause == StopCause::kCrash || !record_.ready_seconds);
    }
  }

 private:
  int fatal(const Error& error) {
    log("supervisor error: " + error.to_string());
    // One line, for kiln list; the detail is in the console log above.
    record_.last_event = error.message;
    if (child_ > 0) {
      kill_child();
      reap_children(Clock::now() + kEndProcessesTimeout);
    }
    keep_console_log();
    record_.state = InstanceState::kCrashed;
    record_.hypervisor_pid = 0;
    save_record();
    return error.exit_code();
  }

  // A migration that did not arrive: nothing of the instance stays here,
  // not even its console log (its source runs on, and keeps its own).
  int discard(const Error& error) {
    log("migration in failed: " + error.to_string());
    if (child_ > 0) {
      kill_child();
      reap_children(Clock::now() + kEndProcessesTimeout);
    }
    (void)store_.remove(record_.spec.name, /*keep_disks=*/false);
    return error.exit_code();
  }

  void log(const std::string& text) {
    // On a line of its own, also after a prompt that ended none.
    std::string line = fmt::format("{}{}{}\n", console_line_ended_ ? "" : "\n", kKilnLinePrefix, text);
    append_console(line);
  }

  Result<> setup() {
    sigset_t signals;
    sigemptyset(&signals);
    for (int signal : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, signal);
    ::sigprocmask(SIG_BLOCK, &signals, nullptr);
    signal_fd_ = UniqueFd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signal_fd_) return fail_errno("signalfd", paths_.state_dir.string(), errno);
    // The hypervisor's helpers outlive a killed main process; as their
    // reaper the supervisor gets them back, to end and reap, instead of init.
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return fail_errno("prctl", "PR_SET_CHILD_SUBREAPER", errno);
    KILN_ASSIGN(UniqueFd log, open_file(paths_.console_log, O_WRONLY | O_CREAT | O_APPEND, 0600));
    console_log_ = std::move(log);
    KILN_ASSIGN(console_listener_, listen_unix(paths_.console_socket));
    KILN_ASSIGN(control_listener_, listen_unix(paths_.state_dir / kControlSocketName));
    KILN_ASSIGN(agent_relay_, AgentRelay::start(paths_.exec_socket));
    if (auto sources = socket_hosts_files(store_, record_.spec); !sources.empty())
      hosts_sync_.emplace(std::move(sources), paths_.exec_socket);
    return {};
  }

  Result<> launch(bool incoming) {
    const InstanceSpec& spec = record_.spec;
    std::vector<std::string> argv;
    if (spec.backend == BackendKind::kQemu) {
      LaunchOptions launch{.incoming = incoming,
                           .start_paused = incoming && options_.incoming_socket,
                           .nics_later = incoming && options_.fresh_from_snapshot};
      KILN_ASSIGN(argv, qemu_command(spec, paths_, launch));
    } else {
      KILN_ASSIGN(argv, uml_command(spec, paths_));
    }
    ::unlink(paths_.qmp_events_socket.c_str());
    Command command;
    command.argv = argv;
    command.env = {instance_marker(record_.mark())};
    UniqueFd guest_end, host_end;
    if (spec.backend == BackendKind::kUml) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(uml_host_cpu(allowed_cpus(), spec.id), &one);
      int pair[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        return fail_errno("socketpair", "the exec channel", errno);
      host_end = UniqueFd(pair[0]);
      guest_end = UniqueFd(pair[1]);
      // UML's helper processes inherit the CPU. Should the kernel refuse,
      // UML still runs, only slower. dup2 leaves the channel open across exec.
      std::vector<std::string> programs = {argv[0]};
      if (!spec.network.nics.empty() && spec.network.nics.front().kind == NetworkKind::kUser) {
        KILN_ASSIGN(std::string slirp, find_program("slirp"));
        programs.push_back(slirp);
      }
      KILN_ASSIGN(UmlSandbox sandbox, UmlSandbox::prepare(spec, paths_, programs));
      uml_sandbox_ = std::move(sandbox);
      command.env.push_back("TMPDIR=" + uml_sandbox_->memory_dir().string());
      command.in_child = [one, channel = guest_end.get(), sandbox = &*uml_sandbox_] {
        ::sched_setaffinity(0, sizeof one, &one);
        return ::dup2(channel, kUmlAgentChannelFd) == kUmlAgentChannelFd && sandbox->enter();
      };
    }
    KILN_ASSIGN(Spawned spawned, spawn(command));
    guest_end = UniqueFd();
    if (host_end) agent_relay_->attach(std::move(host_end), kSerialLineWindow);
    child_ = spawned.pid;
    console_in_ = UniqueFd(spawned.in);
    console_out_ = UniqueFd(spawned.out);
    ::fcntl(console_out_.get(), F_SETFL, O_NONBLOCK);
    record_.hypervisor_pid = child_;
    record_.started_at_ms = now_ms();
    // A restored guest is as ready as it was when saved.
    if (!incoming) record_.ready_seconds.reset();
    record_.state = InstanceState::kStarting;
    stop_reason_.clear();
    panicked_ = false;
    panic_.clear();
    panic_report_ends_.reset();
    crash_recorded_ = false;
    rebooting_ = false;
    unlock_prompts_ = 0;
    record_.waiting_for.clear();
    save_record();
    // qemu counts as running once it answers on QMP, so that one that exits
    // at once (an image it cannot open, say) fails `kiln boot` itself.
    if (spec.backend == BackendKind::kQemu) {
      auto qmp = QmpClient::connect(paths_.qmp_events_socket, std::chrono::seconds(20));
      if (!qmp) {
        drain_console();
        return std::unexpected(Error{ErrorKind::kFailed, "qemu did not start: " + qmp.error().message, {},
                                     key_lines(history_)});
      }
      qmp_.emplace(std::move(*qmp));
      // qemu made the port's socket before it answered on QMP.
      KILN_ASSIGN(UniqueFd channel, connect_unix(paths_.agent_socket));
      agent_relay_->attach(std::move(channel), kVirtioPortWindow, /*ask_hello=*/incoming);
    }
    record_.state = InstanceState::kRunning;
    save_record();
    if (incoming) KILN_TRY(receive_migration());
    return {};
  }

  // Restore: QEMU reads the saved state from the save file, then runs on.
  Result<> receive_migration() {
    if (options_.incoming_socket) return receive_live_migration();
    KILN_ASSIGN(UniqueFd file, open_file(*options_.restore_from, O_RDONLY));
    if (::lseek(file.get(), static_cast<off_t>(options_.restore_offset), SEEK_SET) < 0)
      return fail_errno("seek", options_.restore_from->string(), errno);
    KILN_TRY(qmp_->execute_with_fd("getfd", {{"fdname", "restore"}}, file.get()));
    KILN_TRY(qmp_->execute("migrate-incoming", {{"uri", "fd:restore"}}));
    auto deadline = Clock::now() + std::chrono::minutes(10);
    while (Clock::now() < deadline) {
      KILN_ASSIGN(nlohmann::json status, qmp_->execute("query-status"));
      std::string state = status.value("status", "");
      if (state == "paused" || state == "postmigrate" || state == "running") break;
      if (state == "internal-error" || state == "shutdown")
        return fail(ErrorKind::kFailed, "qemu could not load {}: state {}", options_.restore_from->string(), state);
      ::usleep(50 * 1000);
    }
    if (options_.fresh_from_snapshot) KILN_TRY(plug_nics());
    KILN_TRY(qmp_->execute("cont"));
    record_.state = InstanceState::kRunning;
    record_.saved_to.clear();
    record_.save_id.clear();
    record_.last_event.clear();
    save_record();
    // Running again from the save, the instance owns its overlays again.
    return store_.forget_saved(record_.spec.name);
  }

  // A snapshot's machine was saved without NICs: this instance's go into
  // the hotplug slots it kept free, with the words they would have had on
  // qemu's command line (the human monitor takes those as they are).
  Result<> plug_nics() {
    for (const QemuNic& nic : qemu_nics(record_.spec.network, record_.spec.nic_slots)) {
      for (const std::string& line : {"netdev_add " + nic.netdev, "device_add " + nic.device}) {
        KILN_ASSIGN(nlohmann::json said, qmp_->execute("human-monitor-command", {{"command-line", line}}));
        // The human monitor answers an error as text, and success with none.
        if (said.is_string() && !said.get<std::string>().empty())
          return fail(ErrorKind::kFailed, "qemu would not plug in a NIC ({}): {}", line, said.get<std::string>());
      }
    }
    return {};
  }

  // Migrate: QEMU listens where the source's stream is forwarded to, and
  // holds the guest paused once all of it is here (check_arrival). The
  // supervisor serves requests meanwhile (`kiln destroy`: the receiving
  // end of `kiln migrate` ends the instance when its source gives up).
  Result<> receive_live_migration() {
    record_.state = InstanceState::kPaused;
    record_.last_event = "receiving a migration";
    save_record();
    KILN_TRY(qmp_->execute("migrate-incoming", {{"uri", "unix:" + options_.incoming_socket->string()}}));
    arriving_ = true;
    return {};
  }

  void check_arrival() {
    auto status = qmp_execute("query-status");
    std::string state = status ? status->value("status", "") : "gone";
    if (state == "inmigrate") return;
    arriving_ = false;
    if (state != "paused" && state != "running") {
      // qemu ends an incoming migration that failed by itself; this one
      // it is ended here.
      arrival_failure_ = "qemu is " + state;
      kill_child();
      return;
    }
    record_.state = InstanceState::kPaused;
    record_.last_event = kMigratedInEvent;
    save_record();
  }

  // Serves the running instance until its hypervisor exits.
  StopCause serve() {
    while (true) {
      std::vector<pollfd> fds;
      fds.push_back({signal_fd_.get(), POLLIN, 0});
      fds.push_back({console_listener_.get(), POLLIN, 0});
      fds.push_back({control_listener_.get(), POLLIN, 0});
      if (console_out_) fds.push_back({console_out_.get(), POLLIN, 0});
      if (qmp_) fds.push_back({qmp_->fd(), POLLIN, 0});
      for (const UniqueFd& client : console_clients_) fds.push_back({client.get(), POLLIN, 0});
      ::poll(fds.data(), fds.size(), poll_timeout_ms());
      for (const pollfd& p : fds) {
        if (p.revents == 0) continue;
        if (p.fd == signal_fd_.get()) handle_signals();
        else if (p.fd == console_listener_.get()) accept_console();
        else if (p.fd == control_listener_.get()) accept_control();
        else if (console_out_ && p.fd == console_out_.get()) read_console();
        else if (qmp_ && p.fd == qmp_->fd()) read_events();
        else forward_input(p.fd);
      }
      std::erase_if(console_clients_, [](const UniqueFd& fd) { return !fd; });
      if (child_exited_) return stop_cause();
      if (hosts_sync_) hosts_sync_->poll(record_.ready_seconds && record_.guest_exec != "none" && !record_.guest_exec.empty());
      if (panic_report_ends_ && Clock::now() >= *panic_report_ends_) act_on_panic();
      if (arriving_) check_arrival();
      if (agent_relay_->take_lost_channel()) reconnect_agent_channel();
    }
  }

  // qemu's socket for the exec channel takes a new connection when the
  // last one closed; UML's line is gone with its socket pair. An attempt
  // while qemu is on its way out fails quietly: SIGCHLD follows.
  void reconnect_agent_channel() {
    if (record_.spec.backend != BackendKind::kQemu || !qmp_) return;
    auto channel = connect_unix(paths_.agent_socket);
    if (!channel) return;
    log("the exec channel closed; connected to it again");
    agent_relay_->attach(std::move(*channel), kVirtioPortWindow, /*ask_hello=*/true);
  }

  // Half a second, or less while a panic report is coming out.
  int poll_timeout_ms() const {
    auto timeout = std::chrono::milliseconds(arriving_ ? 20 : 500);
    if (panic_report_ends_)
      timeout = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(*panic_report_ends_ - Clock::now()),
                           std::chrono::milliseconds(0), timeout);
    return static_cast<int>(timeout.count());
  }

  StopCause stop_cause() {
    agent_relay_->detach("the instance stopped while the command ran");
    drain_console();
    end_leftovers();
    qmp_.reset();
    console_in_ = UniqueFd();
    console_out_ = UniqueFd();
    record_.hypervisor_pid = 0;
    child_ = -1;
    child_exited_ = false;
    // Asked for: its run here is over, and nothing went wrong.
    if (intent_ == Intent::kSave || intent_ == Intent::kMigrated) return StopCause::kPowerOff;
    // A guest that never arrived did not crash here: run() discards it,
    // keeping no console log (its source runs on).
    if (arriving_ || !arrival_failure_.empty()) return StopCause::kCrash;
    if (panicked_) {
      record_crash(panic_event());
      return StopCause::kCrash;
    }
    if (stop_reason_ == "guest-reset" || rebooting_) {
      record_.last_event = "the guest rebooted";
      return StopCause::kReboot;
    }
    if (stop_reason_ == "guest-shutdown" || stop_reason_ == "host-qmp-system-powerdown" ||
        (record_.spec.backend == BackendKind::kUml && WIFEXITED(child_status_) && WEXITSTATUS(child_status_) == 0)) {
      record_.last_event = "the guest powered off";
      return StopCause::kPowerOff;
    }
    record_crash(WIFSIGNALED(child_status_)
                     ? fmt::format("the hypervisor was killed by signal {}", WTERMSIG(child_status_))
                     : fmt::format("the hypervisor exited with code {}", WEXITSTATUS(child_status_)));
    return StopCause::kCrash;
  }

  void handle_signals() {
    signalfd_siginfo info;
    while (::read(signal_fd_.get(), &info, sizeof info) == sizeof info) {
      if (info.ssi_signo == SIGCHLD) {
        int status;
        pid_t pid;
        while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
          if (pid == child_) {
            child_status_ = status;
            child_exited_ = true;
          }
        }
      } else {
        intent_ = Intent::kDestroy;
        kill_child();
      }
    }
  }

  void accept_console() {
    int fd = ::accept4(console_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    UniqueFd client(fd);
    // A new viewer first sees what scrolled by recently.
    if (!history_.empty()) (void)::send(client.get(), history_.data(), history_.size(), MSG_NOSIGNAL);
    console_clients_.push_back(std::move(client));
  }

  void forward_input(int fd) {
    char buffer[4096];
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) {
      for (UniqueFd& client : console_clients_)
        if (client.get() == fd) client = UniqueFd();
      return;
    }
    if (console_in_) (void)write_all(console_in_.get(), buffer, static_cast<size_t>(n), "console");
  }

  void read_console() {
    char buffer[65536];
    while (true) {
      ssize_t n = ::read(console_out_.get(), buffer, sizeof buffer);
      if (n > 0) {
        on_console(std::string_view(buffer, static_cast<size_t>(n)));
        continue;
      }
      if (n == 0) console_out_ = UniqueFd();
      return;
    }
  }

  void drain_console() {
    if (!console_out_) return;
    int flags = ::fcntl(console_out_.get(), F_GETFL);
    ::fcntl(console_out_.get(), F_SETFL, flags | O_NONBLOCK);
    read_console();
  }

  void append_console(std::string_view data) {
    if (console_log_) {
      struct stat st;
      if (::fstat(console_log_.get(), &st) == 0 && static_cast<uint64_t>(st.st_size) > kConsoleLogLimit)
        (void)::ftruncate(console_log_.get(), 0);
      (void)write_all(console_log_.get(), data.data(), data.size(), "console.log");
    }
    if (!data.empty()) console_line_ended_ = data.back() == '\n';
    history_.append(data);
    if (history_.size() > kConsoleHistory) history_.erase(0, history_.size() - kConsoleHistory);
    for (UniqueFd& client : console_clients_)
      if (::send(client.get(), data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN)
        client = UniqueFd();
  }

  void on_console(std::string_view data) {
    append_console(data);
    for (const ConsoleEvent& event : console_scanner_.feed(data)) {
      switch (event.kind) {
        case ConsoleEvent::Kind::kReady: on_ready(event.ready); break;
        case ConsoleEvent::Kind::kUnlockPrompt: on_unlock_prompt(event.disk); break;
        case ConsoleEvent::Kind::kKernelPanic: on_kernel_panic(event.panic); break;
        case ConsoleEvent::Kind::kKernelPanicEnd:
          if (panic_report_ends_) act_on_panic();
          break;
        case ConsoleEvent::Kind::kKernelRestart: on_kernel_restart(); break;
      }
    }
  }

  // The passphrase is typed once per boot: a second prompt means it was
  // wrong, and typing it again would only spend the guest's retries.
  void on_unlock_prompt(const std::string& disk) {
    const auto& passphrase = options_.unlock_passphrase;
    const std::string& origin = options_.unlock_passphrase_origin;
    if (!passphrase) {
      record_.waiting_for = fmt::format(
          "the passphrase for {} (give --luks-passphrase-file to kiln boot, or type it on the console)", disk);
    } else if (++unlock_prompts_ > 1) {
      record_.waiting_for = fmt::format("the passphrase for {}: the one in {} did not unlock it", disk, origin);
    } else {
      auto typed = write_all(console_in_.get(), passphrase->data(), passphrase->size(), "console");
      if (typed) typed = write_all(console_in_.get(), "\n", 1, "console");
      if (typed) {
        log(fmt::format("typed the passphrase for {} from {}", disk, origin));
        return;
      }
      record_.waiting_for =
          fmt::format("the passphrase for {}: the one in {} could not be typed ({})", disk, origin, typed.error().message);
    }
    log("waiting for " + record_.waiting_for);
    save_record();
  }

  void on_ready(const ReadyLine& ready) {
    if (ready.id != record_.spec.id || record_.ready_seconds) return;
    record_.ready_seconds = static_cast<double>(now_ms() - record_.started_at_ms) / 1000.0;
    record_.waiting_for.clear();
    record_.guest_hostname = ready.hostname;
    record_.guest_machine_id = ready.machine_id;
    record_.guest_mac = ready.mac;
    record_.guest_ssh_host_keys = ready.ssh_host_keys;
    record_.guest_exec = ready.exec;
    save_record();
  }

  // The kernel's panic line. UML has no other word of a panic, and neither
  // has a qemu guest whose pvpanic driver is not loaded yet (a panic in
  // early boot, init failing): Debian builds it as a module. The report
  // goes on for a moment after this line; kiln acts on it once it ends.
  void on_kernel_panic(const std::string& why) {
    if (panicked_) return;
    panicked_ = true;
    panic_ = why;
    panic_report_ends_ = Clock::now() + kPanicReportTime;
  }

  // The guest panicked: keep it as it is (on_crash = preserve: a qemu guest
  // is stopped, and stays for inspection), or end it, for run() to apply
  // the policy once the hypervisor has exited. A kernel left to itself
  // (panic=0) would never end.
  void act_on_panic() {
    panic_report_ends_.reset();
    if (crash_recorded_) return;
    bool qemu = record_.spec.backend == BackendKind::kQemu;
    bool preserve = record_.spec.on_crash == LifecyclePolicy::kPreserve;
    if (qemu && preserve) (void)qmp_execute("stop");
    drain_console();
    record_crash(panic_event());
    if (preserve) return;
    if (!qemu || !qmp_execute("quit")) kill_child();
  }

  std::string panic_event() const {
    return panic_.empty() ? "the guest kernel panicked" : "the guest kernel panicked: " + panic_;
  }

  // Once per run of the hypervisor. The console log is kept before the
  // record says "crashed": whoever reads that finds the log in its place.
  void record_crash(const std::string& why) {
    if (crash_recorded_) return;
    crash_recorded_ = true;
    record_.last_event = why;
    ++record_.crashes;
    log(why);
    keep_console_log();
    record_.state = InstanceState::kCrashed;
    save_record();
  }

  void keep_console_log() {
    if (auto kept = store_.keep_console_log(record_.spec.name); !kept)
      log("cannot keep the console log: " + kept.error().message);
  }

  // UML restarts itself in place; honour a policy that says otherwise.
  void on_kernel_restart() {
    if (record_.spec.backend != BackendKind::kUml) return;
    rebooting_ = true;
    if (record_.spec.on_reboot != LifecyclePolicy::kRestart) {
      kill_child();
    } else {
      ++record_.restarts;
      record_.ready_seconds.reset();
      record_.started_at_ms = now_ms();
      rebooting_ = false;
      save_record();
    }
  }

  void read_events() {
    if (!qmp_->poll(std::chrono::milliseconds(0))) {
      qmp_.reset();  // QEMU is going away; SIGCHLD follows
      return;
    }
    for (const nlohmann::json& event : qmp_->take_events()) {
      std::string name = event.value("event", "");
      if (name == "STOP" && record_.state == InstanceState::kRunning && intent_ != Intent::kSave) {
        record_.state = InstanceState::kPaused;
      } else if (name == "RESUME") {
        record_.state = InstanceState::kRunning;
      } else if (name == "SHUTDOWN") {
        stop_reason_ = event["data"].value("reason", "");
        record_.state = InstanceState::kShuttingDown;
      } else if (name == "GUEST_PANICKED") {
        // pvpanic: qemu has paused the guest (-action panic=pause), after
        // the kernel's report.
        panicked_ = true;
        act_on_panic();
      } else {
        continue;
      }
      save_record();
    }
  }

  void accept_control() {
    int fd = ::accept4(control_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    UniqueFd client(fd);
    timeval timeout{5, 0};
    ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    std::string request;
    char c;
    while (request.size() < 4096 && ::read(client.get(), &c, 1) == 1 && c != '\n') request += c;
    auto done = handle_request(request);
    std::string reply = !done ? "error: " + done.error().message + "\n" : done->empty() ? "ok\n" : "ok " + *done + "\n";
    (void)write_all(client.get(), reply.data(), reply.size(), "control");
  }

  // An answer's JSON, for the requests that have one; "" for the others.
  Result<std::string> handle_request(const std::string& request) {
    std::string verb = request.substr(0, request.find(' '));
    std::string argument = request.size() > verb.size() ? request.substr(verb.size() + 1) : "";
    bool qemu = record_.spec.backend == BackendKind::kQemu;
    MconsoleClient mconsole(paths_.uml_dir / record_.spec.name / "mconsole");
    if (child_ <= 0) return fail(ErrorKind::kFailed, "the instance is not running");
    if (verb == "pause") {
      if (qemu) KILN_TRY(qmp_execute("stop"));
      else KILN_TRY(mconsole.command("stop"));
      return set_state(InstanceState::kPaused);
    }
    if (verb == "unpause") {
      if (qemu) KILN_TRY(qmp_execute("cont"));
      else KILN_TRY(mconsole.command("go"));
      // Here on, whatever became of the migration, the guest runs here.
      intent_ = Intent::kNone;
      if (record_.last_event == kMigratedInEvent) record_.last_event.clear();
      return set_state(InstanceState::kRunning);
    }
    if (verb == "shutdown" || verb == "reboot") {
      if (record_.state == InstanceState::kPaused)
        return fail(ErrorKind::kFailed, "the instance is paused; unpause it first");
      if (qemu) {
        if (verb == "shutdown") KILN_TRY(qmp_execute("system_powerdown"));
        else KILN_TRY(qmp_execute("send-key", {{"keys", {{{"type", "qcode"}, {"data", "ctrl"}},
                                                        {{"type", "qcode"}, {"data", "alt"}},
                                                        {{"type", "qcode"}, {"data", "delete"}}}}}));
      } else if (verb == "shutdown") {
        // UML has no ACPI: kiln boots it with Ctrl-Alt-Del meaning power off
        // (builder/guest_agent.cc).
        KILN_TRY(mconsole.command("cad"));
      } else {
        // And so no graceful reboot: sync and remount read-only, then reset.
        KILN_TRY(mconsole.command("sysrq s"));
        KILN_TRY(mconsole.command("sysrq u"));
        if (record_.spec.on_reboot == LifecyclePolicy::kRestart) {
          KILN_TRY(mconsole.command("reboot"));
        } else {
          // The policy says the reboot ends the instance: end it here.
          rebooting_ = true;
          kill_child();
        }
      }
      if (verb == "shutdown") return set_state(InstanceState::kShuttingDown);
      return {};
    }
    if (verb == "destroy") {
      intent_ = Intent::kDestroy;
      kill_child();
      return {};
    }
    if (verb == "save") {
      if (!qemu) return fail(ErrorKind::kBadInput, "save is not supported by the uml backend (it has no way to "
                                                   "write out a guest's memory); use the qemu backend");
      KILN_TRY(save_to(argument));
      return {};
    }
    if (verb == "migrate-live" || verb == "migrate-stopped") {
      if (!qemu) return fail(ErrorKind::kBadInput, "the uml backend cannot migrate (it has no way to move a "
                                                   "running guest); boot with --backend qemu to migrate it");
      return migrate_to(argument, verb == "migrate-live");
    }
    if (verb == "let-go") {
      if (intent_ != Intent::kMigrated) return fail(ErrorKind::kBadInput, "the instance has not migrated away");
      (void)qmp_execute("quit");
      return {};
    }
    return fail(ErrorKind::kBadInput, "unknown request \"{}\"", verb);
  }

  Result<nlohmann::json> qmp_execute(const std::string& command, const nlohmann::json& arguments = nullptr) {
    if (!qmp_) return fail(ErrorKind::kFailed, "qemu's control socket is gone");
    return qmp_->execute(command, arguments);
  }

  Result<std::string> set_state(InstanceState state) {
    record_.state = state;
    save_record();
    return {};
  }

  // Follows qemu's migration until it completes; on the way the console
  // is kept read, so that a guest writing to it is not held up. Returns
  // qemu's last report.
  Result<nlohmann::json> await_migration(const std::string& what) {
    while (true) {
      KILN_ASSIGN(nlohmann::json status, qmp_execute("query-migrate"));
      std::string state = status.value("status", "");
      if (state == "completed") return status;
      if (state == "failed" || state == "cancelled")
        return fail(ErrorKind::kFailed, "{} failed: migration {}", what, status.value("error-desc", state));
      drain_console();
      ::usleep(20 * 1000);
    }
  }

  // Sends the whole guest (memory, devices, and the data it wrote to its
  // overlays: qemu's incremental block migration, over the image both
  // hosts have) to `uri`. Live: the guest runs on while its memory goes,
  // and stops only for the last of it. Once complete the guest stays
  // stopped here until `let-go` (it runs there now) or `unpause` (it does
  // not). A migration that fails leaves the guest running here as it was.
  Result<std::string> migrate_to(const std::string& uri, bool live) {
    if (intent_ != Intent::kNone) return fail(ErrorKind::kFailed, "the instance is being saved or migrated already");
    bool was_running = record_.state == InstanceState::kRunning;
    if (!live) KILN_TRY(qmp_execute("stop"));
    KILN_TRY(qmp_execute("migrate", {{"uri", uri}, {"blk", true}, {"inc", true}}));
    auto done = await_migration("migrating to " + uri);
    if (!done) {
      if (!live && was_running) (void)qmp_execute("cont");
      return std::unexpected(done.error());
    }
    intent_ = Intent::kMigrated;
    record_.last_event = "migrated away; ends once the target runs it";
    save_record();
    nlohmann::json report = {{"total_ms", done->value("total-time", 0)}, {"downtime_ms", done->value("downtime", 0)}};
    if (done->contains("ram")) report["ram_bytes"] = (*done)["ram"].value("transferred", 0);
    if (done->contains("disk")) report["disk_bytes"] = (*done)["disk"].value("transferred", 0);
    return report.dump();
  }

  // Writes the guest's memory and devices after a header into `path`, then
  // stops the instance; its overlays stay for `kiln restore`.
  Result<> save_to(const std::string& path) {
    KILN_ASSIGN(AtomicFile file, AtomicFile::create(path, 0600));
    InstanceRecord saved = record_;
    saved.state = InstanceState::kSaved;
    saved.hypervisor_pid = 0;
    saved.saved_to = path;
    saved.save_id = random_hex(8);
    saved.last_event = "saved to " + path;
    KILN_TRY(write_save_header(file.fd(), saved, path));
    intent_ = Intent::kSave;
    KILN_TRY(qmp_execute("stop"));
    KILN_TRY(qmp_->execute_with_fd("getfd", {{"fdname", "save"}}, file.fd()));
    KILN_TRY(qmp_execute("migrate", {{"uri", "fd:save"}}));
    if (auto done = await_migration("saving to " + path); !done) {
      intent_ = Intent::kNone;
      (void)qmp_execute("cont");
      return std::unexpected(done.error());
    }
    KILN_TRY(hand_over_to(file, std::move(saved)));
    save_record();
    (void)qmp_execute("quit");
    return {};
  }

  // The overlays now belong to the save file, and a record beside them says
  // so: to `kiln list`, to `kiln restore`, which takes them back, and to
  // `kiln destroy`, which removes them. Either both the record and the file
  // are made, or neither is and the guest runs on.
  Result<> hand_over_to(AtomicFile& file, InstanceRecord saved) {
    Result<> done = store_.mark_saved(saved);
    if (done) done = file.commit();
    if (!done) {
      (void)store_.forget_saved(record_.spec.name);
      intent_ = Intent::kNone;
      (void)qmp_execute("cont");
      return done;
    }
    record_ = std::move(saved);
    return {};
  }

  // Ends the hypervisor, every process of it.
  void kill_child() {
    if (child_ <= 0) return;
    if (auto ended = end_instance_processes(record_.mark(), kEndProcessesTimeout); !ended)
      log(ended.error().message);
  }

  // Once the hypervisor's main process has exited: ends and reaps what it
  // left running (UML's helpers, when it was killed from outside).
  void end_leftovers() {
    auto ended = end_instance_processes(record_.mark(), kEndProcessesTimeout);
    if (!ended) log(ended.error().message);
    else if (*ended > 0) log(fmt::format("ended {} processes the hypervisor left running", *ended));
    reap_children(Clock::now() + kEndProcessesTimeout);
  }

  // Waits for every child (the hypervisor's processes, made ours by
  // PR_SET_CHILD_SUBREAPER) to end, and reaps it, so that none is left a
  // zombie for an init that may never reap.
  void reap_children(Clock::time_point deadline) {
    while (Clock::now() < deadline) {
      int status;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid < 0 && errno != EINTR) return;  // ECHILD: none left
      if (pid == 0) ::usleep(5 * 1000);
    }
  }

  void save_record() { (void)store_.save(record_); }

  int finish(bool keep_disks, const std::string& why, bool keep_log = false) {
    log(why);
    if (keep_log) keep_console_log();
    for (const UniqueFd& client : console_clients_) ::shutdown(client.get(), SHUT_RDWR);
    bool keep = keep_disks || record_.spec.persistent;
    (void)store_.remove(record_.spec.name, keep);
    leave_networks(store_, record_.spec);
    return 0;
  }

  // The guest runs on another host now: nothing of it stays here, its
  // disks not even when it was persistent, nor its console log.
  int finish_migrated() {
    log(record_.last_event);
    for (const UniqueFd& client : console_clients_) ::shutdown(client.get(), SHUT_RDWR);
    (void)store_.remove(record_.spec.name, /*keep_disks=*/false);
    leave_networks(store_, record_.spec);
    return 0;
  }

  int finish_saved() {
    log(record_.last_event);
    (void)store_.remove(record_.spec.name, /*keep_disks=*/true);
    leave_networks(store_, record_.spec);
    return 0;
  }

  const InstanceStore& store_;
  SupervisorOptions options_;
  InstancePaths paths_;
  InstanceRecord record_;
  UniqueFd signal_fd_, console_log_, console_listener_, control_listener_;
  UniqueFd console_in_, console_out_;
  std::vector<UniqueFd> console_clients_;
  std::optional<QmpClient> qmp_;
  std::unique_ptr<AgentRelay> agent_relay_;
  std::optional<UmlSandbox> uml_sandbox_;  // UML's fence, for the hypervisor now running
  std::optional<GuestHostsSync> hosts_sync_;  // on socket networks: the neighbours' names
  std::string history_, stop_reason_;
  ConsoleScanner console_scanner_;
  pid_t child_ = -1;
  int child_status_ = 0;
  bool child_exited_ = false;
  bool panicked_ = false;                               // the kernel said so, on the console or QMP
  std::string panic_;                                   // what it said after "not syncing: "
  std::optional<Clock::time_point> panic_report_ends_;  // when to act on it at the latest
  bool crash_recorded_ = false;                         // this run's crash is in the record
  bool rebooting_ = false;
  bool console_line_ended_ = true;  // the console log's last byte is a line end
  int unlock_prompts_ = 0;  // passphrase prompts seen since the last (re)start
  Intent intent_ = Intent::kNone;
  bool arriving_ = false;         // a migration is coming in
  std::string arrival_failure_;  // why it did not arrive
};

}  // namespace

int run_supervisor(const InstanceStore& store, const SupervisorOptions& options) {
  Supervisor supervisor(store, options);
  return supervisor.run();
}

}  // namespace kiln
