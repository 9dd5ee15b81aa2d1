#include "runtime/instance_manager.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <thread>

#include "base/files.h"
#include "base/interrupt.h"
#include "base/size.h"
#include "base/subprocess.h"
#include "base/unix_socket.h"
#include "base/uuid.h"
#include "formats/image/guest_protocol.h"
#include "formats/disk/qcow2_overlay.h"
#include "runtime/boot_source.h"
#include "runtime/console_relay.h"
#include "runtime/console_scanner.h"
#include "runtime/hypervisor_command.h"
#include "runtime/instance_plan.h"
#include "runtime/instance_processes.h"
#include "runtime/network_manager.h"
#include "runtime/save_file.h"
#include "runtime/seed_disk.h"
#include "runtime/snapshot.h"
#include "runtime/supervisor.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Copy-on-write: the instance writes its own overlay, never the image.
Result<> make_overlays(const InstanceSpec& spec, const InstancePaths& paths) {
  std::error_code ec;
  fs::create_directories(paths.disk_dir, ec);
  if (ec) return fail_errno("cannot create", paths.disk_dir.string(), ec.value());
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    fs::path overlay = paths.overlay(i, spec.backend);
    bool reuse = spec.persistent && fs::exists(overlay);
    if (reuse) continue;
    fs::remove(overlay, ec);
    // UML makes its COW file itself on first use.
    if (spec.backend == BackendKind::kUml) continue;
    fs::path base = fs::absolute(spec.disks[i].base);
    if (spec.disks[i].qcow2) {
      KILN_ASSIGN(uint64_t size, qcow2_virtual_size(base));
      KILN_TRY(create_qcow2_overlay(overlay, base, size, "qcow2"));
      continue;
    }
    KILN_ASSIGN(UniqueFd fd, open_file(base, O_RDONLY));
    off_t size = ::lseek(fd.get(), 0, SEEK_END);  // block devices too
    if (size < 0) return fail_errno("cannot size", base.string(), errno);
    KILN_TRY(create_qcow2_overlay(overlay, base, static_cast<uint64_t>(size)));
  }
  if (spec.firmware) {
    KILN_ASSIGN(std::string vars, read_file(architecture_of(spec).firmware_vars));
    KILN_TRY(write_file_atomic(paths.state_dir / "OVMF_VARS.fd", vars, 0600));
  }
  return {};
}

// Starts the supervisor as a daemon (its own session, not our child) that
// inherits the instance lock.
Result<> start_supervisor(const InstanceStore& store, const InstancePaths& paths, SupervisorOptions options) {
  pid_t first = ::fork();
  if (first < 0) return fail_errno("fork", paths.state_dir.string(), errno);
  if (first == 0) {
    ::setsid();
    pid_t second = ::fork();
    if (second != 0) _exit(second < 0 ? 1 : 0);
    ::prctl(PR_SET_NAME, ("kiln:" + options.name).substr(0, 15).c_str());
    int null = ::open("/dev/null", O_RDWR);
    int log = ::open((paths.state_dir / "supervisor.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ::dup2(null, 0);
    ::dup2(log >= 0 ? log : null, 1);
    ::dup2(log >= 0 ? log : null, 2);
    _exit(run_supervisor(store, options));
  }
  int status = 0;
  ::waitpid(first, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return fail(ErrorKind::kFailed, "{}: could not start the supervisor", paths.state_dir.string());
  return {};
}

// Whether a console log was kept of the instance since `since` (unix
// seconds): one kept before is an earlier instance's of the name.
bool kept_log_since(const InstancePaths& paths, int64_t since) {
  struct stat st;
  return ::stat(paths.kept_console_log.c_str(), &st) == 0 && st.st_mtime >= since;
}

// The console log kept since `since`, if there is one.
std::optional<std::string> read_kept_log_since(const InstancePaths& paths, int64_t since) {
  if (!kept_log_since(paths, since)) return std::nullopt;
  return read_file(paths.kept_console_log).value_or("");
}

std::string kept_log_note(const InstancePaths& paths, const std::string& name) {
  return fmt::format("console log kept in {} (`kiln console --log {}`; `kiln destroy {}` removes it)",
                     paths.kept_console_log.string(), name, name);
}

// An error for an instance that ended or crashed before it was ready:
// what its console said last, and where its log is kept.
Error not_ready(const InstancePaths& paths, const std::string& name, std::string message, const std::string& console,
                bool kept) {
  std::string detail = crash_excerpt(console);
  if (kept) detail += (detail.empty() ? "" : "\n") + kept_log_note(paths, name);
  return Error{ErrorKind::kFailed, std::move(message), {}, std::move(detail)};
}

// Waits until the supervisor has the hypervisor running, or has given up.
Result<InstanceRecord> wait_started(const InstanceStore& store, const std::string& name) {
  InstancePaths paths = store.paths(name);
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    KILN_TRY(check_interrupted());
    auto record = store.load(name);
    if (record && record->state != InstanceState::kStarting && record->hypervisor_pid > 0) return *record;
    if (record && record->state == InstanceState::kCrashed) {
      std::string console = read_file(paths.console_log).value_or("");
      bool kept = kept_log_since(paths, record->created_at);
      (void)store.remove(name, record->spec.persistent);
      leave_networks(store, record->spec);
      std::string detail = key_lines(console);
      if (kept) detail += "\n" + kept_log_note(paths, name);
      return std::unexpected(
          Error{ErrorKind::kFailed, fmt::format("{} did not start: {}", name, record->last_event), {}, detail});
    }
    if (!record && !fs::exists(paths.state_dir))
      return fail(ErrorKind::kFailed, "{} stopped as soon as it started", name);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return fail(ErrorKind::kFailed, "{} did not start within 60 s", name);
}

// The record an instance starts with: a new one, or for one migrated in,
// what its source knew of the guest (its readiness and reports).
InstanceRecord first_record(const InstanceSpec& spec, const IncomingInstance* incoming) {
  InstanceRecord record;
  if (incoming) {
    const InstanceRecord& carried = incoming->record;
    record.ready_seconds = carried.ready_seconds;
    record.restarts = carried.restarts;
    record.crashes = carried.crashes;
    record.guest_hostname = carried.guest_hostname;
    record.guest_machine_id = carried.guest_machine_id;
    record.guest_mac = carried.guest_mac;
    record.guest_ssh_host_keys = carried.guest_ssh_host_keys;
    record.guest_exec = carried.guest_exec;
    record.process_mark = carried.process_mark;
  }
  record.spec = spec;
  record.created_at = static_cast<int64_t>(std::time(nullptr));
  return record;
}

// The seed disk (and UEFI variables): made for a new instance, as they
// were on the source for one migrated in (its private host keys are on
// its seed disk only).
Result<> write_personality(const InstanceStore& store, const InstanceSpec& spec, const InstancePaths& paths,
                           const IncomingInstance* incoming) {
  if (!incoming) return write_seed_disk(paths.seed, spec, guest_hosts(store, spec), store.state_root());
  KILN_TRY(write_file_atomic(paths.seed, incoming->seed, 0600));
  if (spec.firmware) KILN_TRY(write_file_atomic(paths.state_dir / "OVMF_VARS.fd", incoming->ovmf_vars, 0600));
  return {};
}

Result<BootOutcome> create_and_start(const InstanceStore& store, InstanceSpec spec, const std::string& backend_choice,
                                     SupervisorOptions supervisor, Reporter& reporter,
                                     const IncomingInstance* incoming = nullptr) {
  auto started = Clock::now();
  InstancePaths paths = store.paths(spec.name);
  if (fs::exists(paths.record) && !InstanceLock::is_held(paths)) {
    auto old = store.load(spec.name);
    return fail(ErrorKind::kBadInput, "an instance named {} exists ({}): `kiln destroy {}` first", spec.name,
                old ? std::string(state_name(old->state)) : "damaged", spec.name);
  }
  if (!supervisor.restore_from) {
    if (auto saved = store.load_saved(spec.name))
      return fail(ErrorKind::kBadInput, "an instance named {} is saved in {}: `kiln restore {}` to go on with it, or "
                  "`kiln destroy {}` to drop its disks", spec.name, saved->saved_to, saved->saved_to, spec.name);
  }
  KILN_ASSIGN(InstanceLock lock, InstanceLock::acquire(paths, spec.name));
  // From here on, a failure removes what was made.
  struct Cleanup {
    const InstanceStore& store;
    const InstanceSpec& spec;
    bool keep_disks;
    bool armed = true;
    ~Cleanup() {
      if (!armed) return;
      (void)store.remove(spec.name, keep_disks);
      leave_networks(store, spec);
    }
  } cleanup{store, spec,
            !incoming && (spec.persistent || (supervisor.restore_from.has_value() && !supervisor.fresh_from_snapshot))};
  KILN_TRY(make_overlays(spec, paths));
  KILN_TRY(write_personality(store, spec, paths, incoming));
  InstanceRecord record = first_record(spec, incoming);
  KILN_TRY(store.save(record));
  // With its record saved, its addresses count as taken.
  KILN_TRY(join_networks(store, spec));
  double create_ms = ms_since(started);
  reporter.event("created", {{"name", spec.name}, {"milliseconds", create_ms}});
  supervisor.name = spec.name;
  supervisor.lock_fd = lock.fd();
  KILN_TRY(start_supervisor(store, paths, supervisor));
  cleanup.armed = false;  // the supervisor owns the instance now
  KILN_ASSIGN(record, wait_started(store, spec.name));
  return BootOutcome{record, backend_choice, create_ms};
}

// The CLI's side of ending an instance's processes, for when its
// supervisor is gone: they are init's children then, and init reaps them.
constexpr std::chrono::seconds kEndProcessesTimeout{20};

// Ends what is left of an instance's processes; the error names it.
Result<> end_processes(const InstanceRecord& record) {
  auto ended = end_instance_processes(record.mark(), kEndProcessesTimeout);
  if (!ended) return std::unexpected(std::move(ended.error()).with_context(record.spec.name));
  return {};
}

}  // namespace

Result<BootOutcome> boot_instance(const InstanceStore& store, const BootRequest& request, Reporter& reporter) {
  BootSourceOptions options;
  options.boot_files_dir = store.state_root() / "boot-files";
  options.warn = [&reporter](const std::string& warning) { reporter.warn(warning); };
  KILN_ASSIGN(BootSource source, read_boot_source(request.source, options));
  SupervisorOptions supervisor;
  if (!request.luks_passphrase_file.empty()) {
    if (source.root_encryption.empty())
      return fail(ErrorKind::kBadInput, "--luks-passphrase-file: the root of {} is not encrypted; nothing to unlock",
                  source.description);
    auto passphrase = Secret::passphrase_file(request.luks_passphrase_file);
    if (!passphrase)
      return fail(ErrorKind::kBadInput, "--luks-passphrase-file: {}", passphrase.error().message);
    supervisor.unlock_passphrase = std::make_shared<const Secret>(std::move(*passphrase));
    supervisor.unlock_passphrase_origin = request.luks_passphrase_file.string();
  }
  auto host = real_host(store);
  // Held until the instance's record is saved: its NICs' addresses are
  // picked from those the records hold.
  KILN_ASSIGN(NetworkStore::Lock network_lock, NetworkStore::under(store.state_root()).lock_if_any());
  KILN_ASSIGN(BackendChoice backend, choose_backend(request, source, *host));
  KILN_ASSIGN(InstanceSpec spec, plan_instance(request, source, backend, *host));
  if (spec.backend == BackendKind::kUml && source.kernel_key)
    reporter.warn(fmt::format("{}: 'kernel' and 'ramdisk' are not used by the uml backend, which boots its own "
                              "kernel (linux.uml); ignored",
                              source.kernel_key->to_string()));
  if (spec.backend == BackendKind::kUml && spec.vcpus > 1) {
    if (request.vcpus)
      reporter.warn(fmt::format("the uml backend runs one virtual CPU; --vcpus {} ignored", spec.vcpus));
    spec.vcpus = 1;
  }
  if (request.snapshot_machine) {
    spec.generation_id = Uuid::random().to_string();
    spec.nic_slots = kSnapshotNicSlots;
  }
  return create_and_start(store, std::move(spec), backend.why, std::move(supervisor), reporter);
}

namespace {

// Why `request` cannot resume from a snapshot, before it is planned ("" if
// it may).
std::string request_refusal(const BootRequest& request, const BootSource& source) {
  if (request.backend == "uml") return "snapshots are resumed by qemu, and --backend uml was asked for";
  if (!source.root_encryption.empty()) return "an encrypted root is not resumed from a snapshot";
  if (request.persistent) return "a --persistent instance keeps its own disk; it is not resumed from a snapshot";
  return {};
}

// An instance of `request` as qemu would run it, and whether a snapshot may
// serve it.
struct SnapshotCandidate {
  BootRequest request;  // as qemu runs it
  BootSource source;
  BackendChoice backend;
  InstanceSpec shape;   // its snapshot's machine: the instance without NICs
  std::string refusal;  // why no snapshot can serve it; "" when one may
  std::string key;      // the snapshot's key, when one may
};

// The snapshot's machine is planned without the NICs, which need the
// network lock (their addresses) and are no part of it; so a snapshot can
// be made (by booting) with no lock held.
Result<SnapshotCandidate> snapshot_candidate(const InstanceStore& store, const BootRequest& request,
                                             const FileHashCache& hashes, Reporter& reporter) {
  BootSourceOptions options;
  options.boot_files_dir = store.state_root() / "boot-files";
  options.warn = [&reporter](const std::string& warning) { reporter.warn(warning); };
  SnapshotCandidate candidate;
  KILN_ASSIGN(candidate.source, read_boot_source(request.source, options));
  candidate.refusal = request_refusal(request, candidate.source);
  if (!candidate.refusal.empty()) return candidate;
  candidate.request = request;
  if (candidate.request.backend == "auto") candidate.request.backend = "qemu";
  BootRequest shape = candidate.request;
  shape.networks = {"none"};
  shape.publish.clear();
  shape.ssh_port = 0;
  auto host = real_host(store);
  KILN_ASSIGN(candidate.backend, choose_backend(shape, candidate.source, *host));
  KILN_ASSIGN(candidate.shape, plan_instance(shape, candidate.source, candidate.backend, *host));
  candidate.refusal = snapshot_refusal(candidate.shape);
  if (candidate.refusal.empty()) {
    KILN_ASSIGN(candidate.key, snapshot_key(candidate.shape, hashes));
  }
  return candidate;
}

// Makes the snapshot of `candidate` (the store's lock for its key held).
Result<SnapshotEntry> make_candidate_snapshot(const InstanceStore& store, const SnapshotStore& snapshots,
                                              const BootRequest& request, const SnapshotCandidate& candidate,
                                              Reporter& reporter) {
  BootRequest shape;
  shape.source = request.source;
  shape.memory_mib = candidate.shape.memory_mib;
  shape.vcpus = candidate.shape.vcpus;
  return make_snapshot(store, snapshots, shape, candidate.key, reporter);
}

// The snapshot `request` resumes from, made first if there is none; or
// nullopt, with a warning saying why the instance boots instead.
Result<std::optional<SnapshotEntry>> snapshot_for(const InstanceStore& store, const BootRequest& request,
                                                  const SnapshotCandidate& candidate, const FileHashCache& hashes,
                                                  Reporter& reporter) {
  auto refuse = [&](const std::string& why) -> Result<std::optional<SnapshotEntry>> {
    reporter.warn(fmt::format("--from-snapshot: {}; booting instead", why));
    return std::optional<SnapshotEntry>();
  };
  if (!candidate.refusal.empty()) return refuse(candidate.refusal);
  SnapshotStore snapshots(request.snapshots);
  KILN_ASSIGN(SnapshotLock lock, snapshots.lock(candidate.key));
  std::optional<SnapshotEntry> entry = snapshots.find(candidate.key);
  if (entry) {
    if (auto verified = verify_snapshot(*entry, hashes); !verified) {
      (void)snapshots.remove(candidate.key);
      return refuse(verified.error().message + "; it is removed");
    }
  } else {
    KILN_ASSIGN(entry, make_candidate_snapshot(store, snapshots, request, candidate, reporter));
  }
  return entry;
}

// Why the instance planned as `spec` cannot resume from `snapshot` ("" if
// it can).
std::string resumed_refusal(const InstanceSpec& spec, const SnapshotEntry& snapshot) {
  if (std::string refusal = snapshot_refusal(spec); !refusal.empty()) return refusal;
  if (uint64_t seed = seed_disk_size(spec); seed != snapshot.seed_size)
    return fmt::format("this instance's files need a {} seed disk, and snapshot {} was made with {}", format_size(seed),
                       snapshot.key.substr(0, 12), format_size(snapshot.seed_size));
  return {};
}

// Starts the instance of `candidate` from `snapshot`; nullopt, with a
// warning saying why, where the planned instance does not fit it.
Result<std::optional<BootOutcome>> start_resumed(const InstanceStore& store, const SnapshotCandidate& candidate,
                                                 const SnapshotEntry& snapshot, Reporter& reporter) {
  // Held until the instance's record is saved: its NICs' addresses are
  // picked from those the records hold.
  KILN_ASSIGN(NetworkStore::Lock network_lock, NetworkStore::under(store.state_root()).lock_if_any());
  KILN_ASSIGN(InstanceSpec spec, plan_instance(candidate.request, candidate.source, candidate.backend,
                                               *real_host(store)));
  if (std::string refusal = resumed_refusal(spec, snapshot); !refusal.empty()) {
    reporter.warn(fmt::format("--from-snapshot: {}; booting instead", refusal));
    return std::optional<BootOutcome>();
  }
  KILN_ASSIGN(SaveHeader header, read_save_header(snapshot.state()));
  spec.disks.front().base = snapshot.disk();
  spec.disks.front().qcow2 = true;
  spec.generation_id = Uuid::random().to_string();
  spec.nic_slots = kSnapshotNicSlots;
  SupervisorOptions supervisor;
  supervisor.restore_from = snapshot.state();
  supervisor.restore_offset = header.stream_offset;
  supervisor.fresh_from_snapshot = true;
  std::string why = fmt::format("{}; resumed from snapshot {}", candidate.backend.why, snapshot.key.substr(0, 12));
  return create_and_start(store, std::move(spec), why, std::move(supervisor), reporter);
}

}  // namespace

Result<SnapshotMade> make_instance_snapshot(const InstanceStore& store, const BootRequest& request,
                                            Reporter& reporter) {
  FileHashCache hashes = store.file_hashes();
  KILN_ASSIGN(SnapshotCandidate candidate, snapshot_candidate(store, request, hashes, reporter));
  if (!candidate.refusal.empty())
    return fail(ErrorKind::kBadInput, "{}: no snapshot can serve this instance: {}", request.source,
                candidate.refusal);
  SnapshotStore snapshots(request.snapshots);
  KILN_ASSIGN(SnapshotLock lock, snapshots.lock(candidate.key));
  if (std::optional<SnapshotEntry> entry = snapshots.find(candidate.key)) {
    auto verified = verify_snapshot(*entry, hashes);
    if (verified) return SnapshotMade{std::move(*entry), false};
    reporter.warn(verified.error().message + "; making it again");
    KILN_TRY(snapshots.remove(candidate.key));
  }
  KILN_ASSIGN(SnapshotEntry made, make_candidate_snapshot(store, snapshots, request, candidate, reporter));
  return SnapshotMade{std::move(made), true};
}

Result<BootOutcome> resume_instance(const InstanceStore& store, const BootRequest& request, Reporter& reporter) {
  BootRequest plain = request;
  plain.snapshots.clear();
  FileHashCache hashes = store.file_hashes();
  KILN_ASSIGN(SnapshotCandidate candidate, snapshot_candidate(store, request, hashes, reporter));
  KILN_ASSIGN(std::optional<SnapshotEntry> snapshot, snapshot_for(store, request, candidate, hashes, reporter));
  if (!snapshot) return boot_instance(store, plain, reporter);
  KILN_ASSIGN(std::optional<BootOutcome> resumed, start_resumed(store, candidate, *snapshot, reporter));
  if (!resumed) return boot_instance(store, plain, reporter);
  BootOutcome outcome = std::move(*resumed);
  // Until its agent has made it this instance, it is the snapshot's machine:
  // one that cannot become itself does not stay.
  if (auto became = become_instance(store, outcome.record.spec); !became) {
    (void)destroy_instance(store, outcome.record.spec.name);
    return std::unexpected(std::move(became).error());
  }
  return outcome;
}

Result<InstanceRecord> wait_ready(const InstanceStore& store, const std::string& name,
                                  std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  InstancePaths paths = store.paths(name);
  std::optional<InstanceRecord> first;  // as it was when the wait began
  while (true) {
    KILN_TRY(check_interrupted());
    // Looked at before the record: the supervisor holds the lock until it
    // exits, so a lock file not held, then a record not yet settled, is an
    // instance whose supervisor died. (One that ends an instance removes
    // the lock file while it holds it.)
    bool orphaned = fs::exists(paths.lock) && !InstanceLock::is_held(paths);
    auto record = store.load(name);
    if (!record) {
      // Gone: the supervisor ended it, and kept its log if it crashed or
      // ended by itself, saying why as its last word there.
      auto kept = read_kept_log_since(paths, first ? first->created_at : 0);
      if (!kept) return fail(ErrorKind::kFailed, "{} stopped before it was ready", name);
      std::string why = last_kiln_line(*kept);
      return std::unexpected(not_ready(paths, name,
                                       fmt::format("{} {} before it was ready{}{}", name,
                                                   has_kernel_panic(*kept) ? "crashed" : "stopped",
                                                   why.empty() ? "" : ": ", why),
                                       *kept, true));
    }
    if (!first) first = *record;
    if (record->ready_seconds) return *record;
    if (!record->waiting_for.empty())
      return fail(ErrorKind::kFailed, "{} is waiting for {}; it is still running: `kiln console {}` to answer, or "
                  "`kiln destroy {}`", name, record->waiting_for, name, name);
    bool crashed = record->state == InstanceState::kCrashed || record->crashes > first->crashes;
    if (crashed || record->state == InstanceState::kStopped) {
      auto kept = read_kept_log_since(paths, record->created_at);
      std::string console = kept ? *kept : read_file(paths.console_log).value_or("");
      std::string what;
      if (crashed && record->spec.on_crash == LifecyclePolicy::kRestart)
        what = "; on_crash = restart: it starts again";
      else if (crashed && record->spec.on_crash == LifecyclePolicy::kPreserve)
        what = fmt::format("; on_crash = preserve: it is kept as it is until `kiln destroy {}`", name);
      return std::unexpected(not_ready(
          paths, name,
          fmt::format("{} {} before it was ready: {}{}", name, crashed ? "crashed" : "stopped", record->last_event,
                      what),
          console, kept.has_value()));
    }
    if (orphaned)
      return fail(ErrorKind::kFailed, "{} stopped before it was ready: its supervisor process died", name);
    if (Clock::now() > deadline) {
      // Whatever becomes of the instance now (`kiln run` removes it), its
      // log stays to say how far it got.
      auto kept = store.keep_console_log(name);
      return std::unexpected(not_ready(
          paths, name,
          fmt::format("{} was not ready within {} s (no {} from the guest agent); it is still running: see "
                      "`kiln console {}`; the console ended with",
                      name, std::chrono::duration_cast<std::chrono::seconds>(timeout).count(), kReadyKeyword, name),
          read_file(paths.console_log).value_or(""), kept.has_value()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::vector<InstanceRecord> list_instances(const InstanceStore& store) {
  std::vector<InstanceRecord> out;
  for (const std::string& name : store.names()) {
    auto record = store.load(name);
    if (!record) continue;
    InstancePaths paths = store.paths(name);
    bool settled = record->state == InstanceState::kCrashed || record->state == InstanceState::kStopped ||
                   record->state == InstanceState::kSaved;
    if (!settled && !InstanceLock::is_held(paths)) {
      // The supervisor died (killed from outside): say so once, then clean
      // up, unless some process of it would not end: then the record stays
      // for `kiln destroy` to try again.
      auto ended = end_processes(*record);
      record->state = InstanceState::kCrashed;
      record->last_event = "its supervisor process died";
      if (ended) {
        (void)store.keep_console_log(name);
        (void)store.remove(name, record->spec.persistent);
        leave_networks(store, record->spec);
      }
      else record->last_event += "; " + ended.error().message;
    }
    out.push_back(std::move(*record));
  }
  return out;
}

Result<std::string> ask(const InstanceStore& store, const std::string& name, const std::string& line) {
  InstancePaths paths = store.paths(name);
  auto record = store.load(name);
  if (!record) return std::unexpected(record.error());
  if (!InstanceLock::is_held(paths))
    return fail(ErrorKind::kBadInput, "{} is not running (state: {})", name, state_name(record->state));
  KILN_ASSIGN(UniqueFd socket, connect_unix(paths.state_dir / kControlSocketName));
  std::string text = line + "\n";
  KILN_TRY(write_all(socket.get(), text.data(), text.size(), "control"));
  std::string reply;
  char c;
  while (::read(socket.get(), &c, 1) == 1 && c != '\n') reply += c;
  if (reply == "ok") return std::string();
  if (reply.starts_with("ok ")) return reply.substr(3);
  if (reply.starts_with("error: ")) return fail(ErrorKind::kFailed, "{}: {}", name, reply.substr(7));
  return fail(ErrorKind::kFailed, "{}: the supervisor did not answer", name);
}

Result<> request(const InstanceStore& store, const std::string& name, const std::string& line) {
  KILN_TRY(ask(store, name, line));
  return {};
}

Result<> wait_gone(const InstanceStore& store, const std::string& name, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  InstancePaths paths = store.paths(name);
  while (Clock::now() < deadline) {
    KILN_TRY(check_interrupted());
    if (!InstanceLock::is_held(paths)) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return fail(ErrorKind::kFailed, "{} is still running after {} s", name,
              std::chrono::duration_cast<std::chrono::seconds>(timeout).count());
}

Result<> destroy_instance(const InstanceStore& store, const std::string& name) {
  InstancePaths paths = store.paths(name);
  KILN_ASSIGN(InstanceRecord record, store.load(name));
  if (InstanceLock::is_held(paths)) {
    auto asked = request(store, name, "destroy");
    if (asked) {
      KILN_TRY(wait_gone(store, name, std::chrono::seconds(30)));
      // The supervisor tells the instance's networks too, but it may not
      // have yet when the instance is gone: the destroy is over only once
      // they know.
      leave_networks(store, record.spec);
      // The supervisor ended them; this is for one that died meanwhile.
      return end_processes(record);
    }
    // A supervisor whose guest had just stopped under a preserve policy
    // exits without serving the request (seen: a crashed UML guest's); once
    // it has, the instance is removed here like any other that is down.
    if (!wait_gone(store, name, std::chrono::seconds(30))) return asked;
  }
  KILN_TRY(end_processes(record));
  // A saved instance's overlays go too: its save file cannot be restored
  // without them.
  KILN_TRY(store.forget_saved(name));
  KILN_TRY(store.remove(name, record.spec.persistent));
  leave_networks(store, record.spec);
  return {};
}

Result<> destroy_with_kept_log(const InstanceStore& store, const std::string& name) {
  InstancePaths paths = store.paths(name);
  bool instance = fs::exists(paths.record) || fs::exists(paths.saved_record);
  if (instance) KILN_TRY(destroy_instance(store, name));
  KILN_ASSIGN(bool removed, store.remove_kept_console_log(name));
  if (!instance && !removed)
    return fail(ErrorKind::kBadInput, "no instance named {}, and no console log kept of one (see `kiln list`)", name);
  return {};
}

Result<ConsoleLog> find_console_log(const InstanceStore& store, const std::string& name) {
  KILN_TRY(check_instance_name(name));
  InstancePaths paths = store.paths(name);
  ConsoleLog log;
  if (auto record = store.load(name); record && fs::exists(paths.console_log)) {
    log.path = paths.console_log;
    log.instance = std::move(*record);
  }
  if (fs::exists(paths.kept_console_log)) {
    (log.path.empty() ? log.path : log.also_kept) = paths.kept_console_log;
  }
  if (log.path.empty())
    return fail(ErrorKind::kBadInput, "{} has no console log: no instance of that name runs, and none kept one "
                "(see `kiln list`)", name);
  return log;
}

Result<> attach_console(const InstanceStore& store, const std::string& name, bool interactive) {
  InstancePaths paths = store.paths(name);
  auto found = store.load(name);
  if (!found && fs::exists(paths.kept_console_log))
    return fail(ErrorKind::kBadInput, "{} is gone; `kiln console --log {}` shows the console log kept of it", name,
                name);
  KILN_ASSIGN(InstanceRecord record, std::move(found));
  if (!InstanceLock::is_held(paths) || record.hypervisor_pid == 0) {
    bool logged = fs::exists(paths.console_log) || fs::exists(paths.kept_console_log);
    return fail(ErrorKind::kBadInput, "{} is not running (state: {}); there is no console to attach to{}", name,
                state_name(record.state), logged ? fmt::format(" (`kiln console --log {}` shows its log)", name) : "");
  }
  KILN_ASSIGN(UniqueFd socket, connect_unix(paths.console_socket));
  relay_console(socket.get(), name, interactive);
  return {};
}

Result<> save_instance(const InstanceStore& store, const std::string& name, const fs::path& file) {
  KILN_TRY(request(store, name, "save " + fs::absolute(file).string()));
  return wait_gone(store, name, std::chrono::seconds(60));
}

Result<BootOutcome> start_incoming(const InstanceStore& store, const IncomingInstance& incoming, Reporter& reporter) {
  SupervisorOptions options;
  options.incoming_socket = incoming.socket;
  return create_and_start(store, incoming.record.spec, "qemu: migrated in", options, reporter, &incoming);
}

Result<BootOutcome> restore_instance(const InstanceStore& store, const fs::path& file, Reporter& reporter) {
  KILN_ASSIGN(SaveHeader header, read_save_header(file));
  InstanceSpec spec = header.record.spec;
  InstancePaths paths = store.paths(spec.name);
  // The memory in the file goes only with the disks as they were when it
  // was saved: not once a restore ran on from them, nor a new instance.
  auto saved = store.load_saved(spec.name);
  if (!saved || saved->save_id != header.record.save_id)
    return fail(ErrorKind::kBadInput, "{}: {} cannot be restored from it, as its disks are no longer the ones saved "
                "with it ({})", file.string(), spec.name,
                saved ? fmt::format("they go with {}, saved since", saved->saved_to) : saved.error().message);
  for (size_t i = 0; i < spec.disks.size(); ++i)
    if (!fs::exists(paths.overlay(i, spec.backend)))
      return fail(ErrorKind::kBadInput, "{}: the instance's disk {} is gone; it cannot be restored",
                  file.string(), paths.overlay(i, spec.backend).string());
  SupervisorOptions options;
  options.restore_from = fs::absolute(file);
  options.restore_offset = header.stream_offset;
  return create_and_start(store, spec, "restored", options, reporter);
}

}  // namespace kiln
