// InstanceManager: the operations behind `kiln boot`, `list`, `console`,
// `shutdown`, `reboot`, `destroy`, `pause`, `unpause`, `save` and `restore`.
// Creating an instance is the cheap part (an overlay, a seed disk, a record:
// milliseconds); the supervisor process it starts owns the instance from
// then on, and the other operations are requests to that supervisor.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/reporter.h"
#include "runtime/instance.h"
#include "runtime/instance_plan.h"
#include "runtime/instance_store.h"
#include "runtime/snapshot.h"

namespace kiln {

struct BootOutcome {
  InstanceRecord record;
  std::string backend_choice;  // e.g. "uml: KVM does not work here (...)"
  double create_ms = 0;        // overlay, seed, record: the instance itself
};

Result<BootOutcome> boot_instance(const InstanceStore& store, const BootRequest& request, Reporter& reporter);
// `kiln boot --from-snapshot` (request.snapshots set): a new instance resumed
// from the image's snapshot (runtime/snapshot.h), made first if needed, and
// made itself by its agent; or, where no snapshot can serve it, booted,
// with a warning saying why.
Result<BootOutcome> resume_instance(const InstanceStore& store, const BootRequest& request, Reporter& reporter);

struct SnapshotMade {
  SnapshotEntry entry;
  bool made = false;  // false: it was there already, and its files check out
};

// `kiln snapshot make`: the snapshot instances of `request` (its image and
// VM shape) resume from, made now unless it is there and intact. Fails,
// saying why, where no snapshot can serve such an instance.
Result<SnapshotMade> make_instance_snapshot(const InstanceStore& store, const BootRequest& request,
                                            Reporter& reporter);

// Waits for the guest agent's readiness signal. It fails as soon as the
// instance crashes or stops, and when `timeout` runs out (keeping the
// console log then: see InstanceStore); the error shows what the console
// said last (the kernel's panic line, when it panicked) and where the log is
// kept.
Result<InstanceRecord> wait_ready(const InstanceStore& store, const std::string& name,
                                  std::chrono::milliseconds timeout);

// Every instance, after noticing the ones whose processes died (shown once
// as crashed, then cleaned up).
std::vector<InstanceRecord> list_instances(const InstanceStore& store);

// Sends a request ("pause", "shutdown"...) to the instance's supervisor.
Result<> request(const InstanceStore& store, const std::string& name, const std::string& line);
// The same, for a request that answers with a JSON object (its text).
Result<std::string> ask(const InstanceStore& store, const std::string& name, const std::string& line);

// Waits until the instance is gone (or preserved as stopped/crashed).
Result<> wait_gone(const InstanceStore& store, const std::string& name, std::chrono::milliseconds timeout);

// Removes an instance whatever its state: running, preserved or dead. A
// console log kept of it stays.
Result<> destroy_instance(const InstanceStore& store, const std::string& name);
// `kiln destroy`: the instance, if there is one, and the console log kept
// of an instance of the name, which may be gone already. Fails only when
// there is neither.
Result<> destroy_with_kept_log(const InstanceStore& store, const std::string& name);

// The console log `kiln console --log` shows: the instance's own while it
// exists, else the one kept of it.
struct ConsoleLog {
  std::filesystem::path path;
  std::optional<InstanceRecord> instance;  // when `path` is the instance's own
  std::filesystem::path also_kept;         // a kept log besides it, if any
};
Result<ConsoleLog> find_console_log(const InstanceStore& store, const std::string& name);

// The guest console on stdout; when `interactive`, stdin goes to the guest
// too and Ctrl-] detaches, leaving the instance running.
Result<> attach_console(const InstanceStore& store, const std::string& name, bool interactive);

// An instance arriving by live migration (runtime/migration): its record
// as its source had it, with this host's paths and a process mark of its
// own, and the files that make it itself, as they are there.
struct IncomingInstance {
  InstanceRecord record;
  std::string seed;       // the seed disk
  std::string ovmf_vars;  // UEFI's variables, for a guest booted by firmware
  std::filesystem::path socket;  // where qemu listens for the stream
};
// Creates the instance and starts qemu waiting for the stream; the
// supervisor takes it from there (SupervisorOptions::incoming_socket).
Result<BootOutcome> start_incoming(const InstanceStore& store, const IncomingInstance& incoming, Reporter& reporter);

Result<> save_instance(const InstanceStore& store, const std::string& name, const std::filesystem::path& file);
Result<BootOutcome> restore_instance(const InstanceStore& store, const std::filesystem::path& file,
                                     Reporter& reporter);

}  // namespace kiln
