// SeedDisk: the small disk that carries an instance's personality to the
// guest without touching the shared base image, the way the Xen-era tools
// kept a domain's identity out of its canned filesystem. It is an ext2
// filesystem written with libext2fs in a few milliseconds; kiln's guest
// agent (builder/guest_agent.cc) reads it early in boot. Its label and the
// files it holds are part of the guest protocol (formats/image/guest_protocol.h).
#pragma once

#include <filesystem>
#include <string_view>

#include "base/error.h"
#include "runtime/instance.h"

namespace kiln {

// Writes the seed disk. When the personality is small, it starts from a
// formatted empty filesystem kept in `template_dir` (made on first use), so
// that an instance costs no mke2fs run. `hosts`: /etc/hosts lines naming
// the instances on its socket networks (runtime/network_manager.h).
Result<> write_seed_disk(const std::filesystem::path& image, const InstanceSpec& spec, std::string_view hosts,
                         const std::filesystem::path& template_dir);

// The size write_seed_disk gives the seed disk of `spec`: a small template's
// unless the personality's files need more. (An instance resuming from a
// snapshot needs the size the snapshot's own seed disk had.)
uint64_t seed_disk_size(const InstanceSpec& spec);

// The systemd-networkd file that gives a NIC with a static address that
// address in the guest, matched by the NIC's MAC.
std::string static_network_file(const NicSpec& nic);

}  // namespace kiln
