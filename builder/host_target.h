// HostTarget: `kiln bake --target`, a block device of the host that receives
// the baked image (the whole disk for the gpt and lvm layouts, the root
// filesystem for plain), as the Xen era kept guests on host LVs:
//
//   --target lvm:VG/LV   a logical volume of the host, created from the
//                        recipe's size when missing (needs device-mapper);
//   --target /dev/sdX    any block device.
//
// Everything is checked before the bake starts: a device that is mounted,
// in use or too small is refused with the size it would need, and a host
// without device-mapper is told so, with what to do instead.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "base/error.h"
#include "base/reporter.h"
#include "base/subprocess.h"

namespace kiln {

struct HostTarget {
  std::string spec;            // as given: "lvm:vg0/web1" or "/dev/sdb"
  std::filesystem::path device;  // "/dev/vg0/web1" once it exists
  std::string vg, lv;          // lvm targets
  bool create_lv = false;      // the logical volume is made before writing
  uint64_t needed = 0;         // bytes of the image
};

// Whether the host's kernel has device-mapper loaded.
bool host_has_device_mapper();

// The host as the checks see it: its programs (lvm) run through `runner`,
// so that tests answer for a volume group they do not have.
struct TargetHost {
  CommandRunner& runner;
  bool device_mapper;
  static TargetHost real();  // system_runner() and host_has_device_mapper()
};

// Parses and checks a target for an image of `needed` bytes.
Result<HostTarget> check_host_target(std::string_view spec, uint64_t needed, const TargetHost& host);

// Creates the logical volume if needed, then writes `image` onto the device:
// its data, zeros where it has holes, and for a GPT disk on a larger device
// the backup table moved to the device's end. Returns what was written to.
Result<std::filesystem::path> write_host_target(HostTarget& target, const std::filesystem::path& image,
                                                bool gpt, Reporter& reporter, CommandRunner& runner);

}  // namespace kiln
