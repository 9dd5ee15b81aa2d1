// KernelFiles: the kernel and initramfs a Debian /boot holds
// (vmlinuz-VERSION and initrd.img-VERSION), the newest version when there
// are several: what a bake extracts for direct kernel boot and the ESP, and
// what `kiln import` takes from another's image (its root's /boot, or a
// /boot partition of its own).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "formats/ext4/ext4_image.h"

namespace kiln {

struct KernelFiles {
  std::string version;
  std::string kernel;  // paths inside the filesystem
  std::string initrd;
};

// nullopt when `dir` is missing or has no vmlinuz-*; an error when the
// newest kernel has no initrd.
Result<std::optional<KernelFiles>> find_kernel(Ext4Image& fs, std::string_view dir = "/boot");

// Copies them out of the filesystem as DIR/vmlinuz and DIR/initrd.img, the
// names kiln's image directories give them.
Result<> extract_kernel(Ext4Image& fs, const KernelFiles& files, const std::filesystem::path& dir);

}  // namespace kiln
