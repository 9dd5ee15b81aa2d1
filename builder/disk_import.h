// DiskImport: `kiln import`, a disk image kiln did not bake (an installer's,
// a cloud image, another tool's output: raw, qcow2, vmdk, vhdx or anything
// else qemu-img reads) turned into a kiln image directory that `kiln boot`
// and `kiln publish` take.
//
// The disk is converted to disk.raw (a bare filesystem to root.img), its
// partition table (GPT, MBR or none) read, and its root filesystem found:
// the partition whose GPT type is a root type of the Discoverable Partitions
// Specification, else the one ext2/3/4 filesystem that has /etc/os-release
// (when there are several, the one its own /etc/fstab mounts on /). The
// kernel and initramfs come from the root's /boot, or from the partition its
// fstab mounts on /boot. kiln's guest agent is installed into the root, on
// the copy, so that boot knows when the guest is ready and `kiln exec`
// reaches it. Everything is read and written with libext2fs: no mounts, no
// loop devices. Encrypted and LVM roots are named and refused.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "base/error.h"
#include "base/reporter.h"
#include "formats/image/image_manifest.h"

namespace kiln {

struct ImportRequest {
  std::filesystem::path source;      // a disk image, or a bare filesystem image
  std::filesystem::path output_dir;  // created, or a kiln output replaced; "": out/NAME
  std::string name;                  // "": the source's file name up to its first '.'
  std::optional<uint64_t> memory_mib;  // the VM shape boot gives it by default
  std::optional<int> vcpus;
};

struct ImportResult {
  std::filesystem::path output_dir;
  ImageManifest manifest;
  std::string root;  // where the root was found: "partition 2 (GPT type root-x86-64)"
  double seconds = 0;
};

Result<ImportResult> import_disk_image(ImportRequest request, Reporter& reporter);

}  // namespace kiln
