// Migration: `kiln migrate NAME --to ssh://HOST`, xm migrate for kiln's own
// qemu instances, from this kiln host to another over ssh.
//
// The source asks the target what it lacks (`kiln migrate-target probe`),
// sends the image files it does not have yet (runtime/image_transfer), then
// opens the receiving end (`kiln migrate-target receive`): the instance's
// record and seed disk go first, the target makes the instance (its own
// overlay over its copy of the image) and starts qemu waiting for the
// stream on a unix socket, which the ssh connection forwards to this host.
// qemu's migration then carries memory, devices and the data the guest
// wrote to its overlay (incremental block migration: only what is over
// the image both hosts have). The guest arrives paused; the source commits,
// the target runs it, and only then does the source end its own copy. Up
// to the commit a failure leaves the guest running here and removes what
// was made there.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/reporter.h"
#include "runtime/instance_store.h"

namespace kiln {

struct MigrationOutcome {
  std::string target;
  std::vector<std::string> sent_files;  // image files the target lacked
  uint64_t image_bytes_sent = 0;
  double total_ms = 0;          // from connecting to the guest running there
  double stream_ms = 0;         // qemu's migration, from start to end
  double qemu_downtime_ms = 0;  // qemu's: from the source's stop to the stream's end
  double handover_ms = 0;       // from there to the guest running on the target
  uint64_t ram_bytes = 0;
  uint64_t disk_bytes = 0;
  // libvirt moved it: the downtime and stream are libvirt's figures, and
  // the files are volumes.
  bool by_libvirt = false;
  double downtime_ms() const { return qemu_downtime_ms + handover_ms; }
};

// Moves instance `name` to the kiln host at `uri` (ssh://...). `live`: the
// guest runs on while its memory goes; else it is stopped first.
Result<MigrationOutcome> migrate_instance(const InstanceStore& store, const std::string& name, const std::string& uri,
                                          bool live, Reporter& reporter);

// The target's side, run there by the source over ssh.
// probe: prints what this host lacks for the instance (JSON on stdout).
Result<std::string> probe_migration_target(const InstanceStore& store, const std::string& name, bool kvm,
                                           const std::vector<std::string>& image_hashes);
// receive: the instance's header and seed disk on `in`, replies on `out`.
Result<> receive_migration(const InstanceStore& store, int in, int out, Reporter& reporter);

}  // namespace kiln
