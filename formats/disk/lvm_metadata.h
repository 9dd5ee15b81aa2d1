// LvmMetadata: what an LVM2 physical volume says about its volume group,
// read from the bytes of an image with no lvm2 and no device-mapper (the
// host kernel has none): the label in the volume's first four sectors, the
// metadata area's header, and the newest text metadata it points to, its
// checksum checked. From that, where each logical volume's bytes are, so
// that `kiln import` can look into a root on LVM as it does into a
// partition. lvm_layout.h is the writing side, through the real tools.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/byte_range.h"
#include "base/error.h"

namespace kiln {

struct LvmSegment {
  uint64_t start_extent = 0;  // in the logical volume
  uint64_t extent_count = 0;
  std::string type;  // "striped" (one stripe: linear), "linear", "mirror", "raid1", "thin"...
  // Each stripe: the physical volume's name in the metadata ("pv0") and its first extent there.
  std::vector<std::pair<std::string, uint64_t>> stripes;
};

struct LvmLogicalVolume {
  std::string name;
  std::string uuid;
  bool visible = false;  // false for the hidden parts of thin pools, mirrors and snapshots
  std::vector<LvmSegment> segments;
};

struct LvmPhysicalVolume {
  std::string name;  // "pv0": how segments refer to it
  std::string uuid;  // with lvm2's dashes
  uint64_t pe_start = 0;  // bytes before its first extent
  uint64_t pe_count = 0;
};

struct LvmVolumeGroup {
  std::string name;
  std::string uuid;
  uint64_t seqno = 0;
  uint64_t extent_size = 0;  // bytes
  std::vector<LvmPhysicalVolume> physical_volumes;
  std::vector<LvmLogicalVolume> logical_volumes;
  // The physical volume that was read (read_lvm_physical_volume), else "".
  std::string this_volume;

  const LvmPhysicalVolume* find_physical_volume(std::string_view name) const;
};

// Whether `image` has an LVM2 label in one of the four sectors from `offset`.
Result<bool> has_lvm_label(const std::filesystem::path& image, uint64_t offset);

// Reads the physical volume [offset, offset + size) of `image`; `description`
// ("disk.raw partition 2") names it in errors.
Result<LvmVolumeGroup> read_lvm_physical_volume(const std::filesystem::path& image, uint64_t offset, uint64_t size,
                                                const std::string& description);

// Parses the text metadata (lvm2's "Text Format Volume Group"); `source`
// names it in errors, which carry its line and column.
Result<LvmVolumeGroup> parse_lvm_metadata(std::string_view text, const std::string& source);

// Where `volume`'s bytes are on the physical volume that was read, from its
// start: one range, when every segment is linear on that volume and each
// follows the last; else an error saying why kiln cannot read it in place.
Result<ByteRange> lvm_volume_range(const LvmVolumeGroup& group, const LvmLogicalVolume& volume);

// lvm2's metadata checksum: CRC-32 (reflected, 0xEDB88320) from 0xf597a6cf
// with no final inversion; `crc` continues an earlier part.
uint32_t lvm_checksum(std::string_view data, uint32_t crc = 0xf597a6cf);

}  // namespace kiln
