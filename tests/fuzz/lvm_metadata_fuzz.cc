// Fuzzes the LVM2 text metadata reader that `kiln import` runs on a disk's
// own bytes. Beyond "no crash": whatever parses and places a logical volume
// must place it inside its physical volume's extents, never past them.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "formats/disk/lvm_metadata.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto group = kiln::parse_lvm_metadata(text, "fuzz");
  if (!group || group->physical_volumes.empty()) return 0;
  group->this_volume = group->physical_volumes.front().name;
  const kiln::LvmPhysicalVolume& pv = group->physical_volumes.front();
  for (const kiln::LvmLogicalVolume& lv : group->logical_volumes) {
    auto range = kiln::lvm_volume_range(*group, lv);
    if (!range) continue;
    unsigned __int128 end = static_cast<unsigned __int128>(range->offset) + range->length;
    unsigned __int128 limit = static_cast<unsigned __int128>(pv.pe_start) +
                              static_cast<unsigned __int128>(pv.pe_count) * group->extent_size;
    if (range->offset < pv.pe_start || end > limit) {
      std::fprintf(stderr, "%s placed outside its physical volume\n", lv.name.c_str());
      std::abort();
    }
  }
  return 0;
}
