// LvmLayout: LVM metadata written by the real lvm2 tools into a byte range
// of an image file (a partition of disk.raw, or a plaintext staging file
// for LVM-on-LUKS), and where each logical volume's bytes are, so that
// filesystems can be written straight into them.
//
// The tools run on a loop device over that range, with activation off
// (`--driverloaded n -an -Zn`: no device-mapper needed) and a private lvm2
// configuration (LVM_SYSTEM_DIR) that sees only that loop device, keeps no
// backups or archives, writes no hints, and locks in a private directory:
// the host's LVM setup is neither read nor changed. They run in their own
// UTS namespace, so the metadata names the host "kiln", not the build host.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/subprocess.h"

namespace kiln {

// What lvm2's pvcreate puts before the first extent by default (its 1 MiB
// data alignment): an estimate for sizing; write_lvm_layout reports the
// real pe_start.
inline constexpr uint64_t kLvmDefaultMetadata = 1 << 20;

struct LogicalVolumeRequest {
  std::string name;
  uint64_t size = 0;  // bytes, rounded up to extents; 0: what the others leave
};

struct PlacedLogicalVolume {
  std::string name;
  std::string uuid;
  uint64_t offset = 0;  // from the start of the physical volume, in bytes
  uint64_t size = 0;
};

struct LvmLayout {
  std::string vg;
  std::string vg_uuid;
  std::string pv_uuid;
  uint64_t extent_size = 0;
  uint64_t pe_start = 0;  // bytes before the first extent (lvm2's metadata)
  uint64_t extent_count = 0;
  std::vector<PlacedLogicalVolume> volumes;  // in the order asked for
};

// Creates a physical volume on [offset, offset + size) of `image`, the
// volume group `vg` on it, and the logical volumes in order, each one
// contiguous. Needs root (loop devices).
Result<LvmLayout> write_lvm_layout(const std::filesystem::path& image, uint64_t offset, uint64_t size,
                                   std::string_view vg, uint64_t extent_size,
                                   std::span<const LogicalVolumeRequest> volumes);

// The same on `device` (the loop device write_lvm_layout attaches), with
// lvm2 run through `runner`: what kiln asks lvm2, and what it makes of the
// reports, tested without root or lvm2.
Result<LvmLayout> lay_out_volume_group(const std::string& device, std::string_view vg, uint64_t extent_size,
                                       std::span<const LogicalVolumeRequest> volumes, CommandRunner& runner);

}  // namespace kiln
