// Supervisor: the process that owns one instance for its whole life, as
// xend did for a Xen domain. It holds the instance lock, starts the
// hypervisor with the guest console on a pipe, keeps console.log and serves
// `kiln console` clients, watches for the guest agent's readiness line,
// listens to QEMU's events, carries out requests (pause, shutdown, save...)
// sent on its control socket, and applies the on_poweroff / on_reboot /
// on_crash policies when the guest stops. It is the only writer of the
// instance record while it runs.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "crypto/secret.h"
#include "runtime/instance_store.h"

namespace kiln {

struct SupervisorOptions {
  std::string name;
  int lock_fd = -1;  // the instance lock, taken by `kiln boot` and inherited
  // Resume from a save file (qemu) instead of booting.
  std::optional<std::filesystem::path> restore_from;
  uint64_t restore_offset = 0;  // where the migration stream starts in it
  // The save file is a snapshot's: the instance is a new one, with disks of
  // its own, not one saved before.
  bool fresh_from_snapshot = false;
  // Receive a live migration (qemu) on this unix socket instead of
  // booting. The guest stays paused once it has arrived, until `unpause`
  // says that its source has let go; a migration that fails leaves
  // nothing of the instance here.
  std::optional<std::filesystem::path> incoming_socket;
  // Typed at the guest's "Please unlock disk" prompt, once per boot; it
  // reaches the supervisor through fork, never through a file or argv.
  std::shared_ptr<const Secret> unlock_passphrase;
  std::string unlock_passphrase_origin;  // the file it came from, for messages
};

// Runs until the instance is gone (or preserved); returns the exit code.
int run_supervisor(const InstanceStore& store, const SupervisorOptions& options);

// The control protocol: one request line, one reply line ("ok", "ok " and
// a JSON object, or "error: ..."), on the instance's control socket.
inline constexpr const char* kControlSocketName = "control.sock";
// What the record's last_event says while a migrated guest waits, paused,
// for its source to let go.
inline constexpr const char* kMigratedInEvent = "migrated in; paused until its source lets go";

}  // namespace kiln
