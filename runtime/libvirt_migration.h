// LibvirtMigration: `kiln migrate NAME --connect URI --to URI2`, a kiln
// instance on one libvirt host moved to another by libvirt's own migration
// (virDomainMigrate3, with kiln holding a connection to each host, as
// `virsh migrate` does without --p2p).
//
// The hosts share no storage. Before the guest moves, the target gets the
// volumes it needs in kiln's pool there, from the source's pool (streamed
// through this machine, holes left out): the image volumes, by their
// content names, only when it lacks them, and the instance's seed disk;
// and an empty overlay of the instance's over its copy of the image. Then
// libvirt copies the overlay's data (copy-storage-inc: only what the guest
// wrote over the image both hosts have), memory and devices. The domain is
// defined on the target and undefined here only once it runs there; a
// failure before that leaves it running here, and removes the instance's
// volumes made on the target (image volumes that arrived whole stay, by
// content, for the next attempt).
#pragma once

#include <string>

#include "base/error.h"
#include "base/reporter.h"
#include "runtime/migration.h"

namespace kiln {

// Moves instance `name` from the libvirt host at `from` to the one at
// `to`. `live`: the guest runs on while its memory goes; else it is paused
// for all of it.
Result<MigrationOutcome> migrate_libvirt_instance(const std::string& from, const std::string& name,
                                                  const std::string& to, bool live, Reporter& reporter);

// The host part of a libvirt URI ("host2" of qemu+ssh://root@host2:22/system),
// "" when it names none (qemu:///system).
std::string libvirt_uri_host(const std::string& uri);

}  // namespace kiln
