// Assembler: the "assemble" stage. It streams the customised rootfs archive
// into an ext4 filesystem, applies the offline customisation and kiln's
// system setup to it, and lays out the disk: a GPT with an EFI system
// partition (systemd-boot, kernel, initrd) and the root partition, written in
// place with no mount and no unpacked tree. The root partition is what the
// storage layout makes it (builder/root_stack.h): one filesystem, or an
// LVM physical volume whose volumes each get their part of the archive,
// either of them possibly encrypted. lvm2's tools on a loop device are the
// only use of the kernel, and only for the lvm layout.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/reporter.h"
#include "builder/plan.h"
#include "builder/root_stack.h"
#include "formats/disk/gpt_disk.h"
#include "formats/disk/systemd_boot.h"

namespace kiln {

// A file of the "partitions" output: one filesystem, swap area or
// encrypted volume on its own, as a Xen domain's xvda1, xvda2...
struct PartitionImage {
  std::string file;    // "root.img", "swap.img"
  std::string volume;  // the volume it holds; "" for an encrypted volume
  std::string sha256;  // taken as it was written; "" when not yet known
};

struct AssembledImage {
  DiskLayout geometry;  // as the plan laid it out
  std::filesystem::path disk;  // disk.raw, or "" for the plain layout
  std::string disk_sha256;     // of disk.raw, when output.disk_sha256 is "bake"
  std::filesystem::path root;  // root.img, or "" when not asked for
  // root.img first; more for the lvm layout (one per volume) unencrypted.
  std::vector<PartitionImage> partition_images;
  std::vector<PlacedVolume> volumes;
  std::optional<LvmLayout> lvm;
  std::optional<EncryptionInfo> encryption;
  std::string root_device;  // the kernel's root=, "UUID=..." or "/dev/mapper/VG-LV"
  std::filesystem::path kernel;
  std::filesystem::path initrd;
  std::string kernel_version;
  std::string kernel_command_line;  // root=UUID=... ro + image.kernel_cmdline
  BootLoader boot_loader;           // systemd-boot for the ESP: the image's own, or the host's
  std::string dpkg_status;          // /var/lib/dpkg/status of the image
  std::vector<std::string> notes;
};

// Builds the images inside `dir` (the output's temporary directory) from
// `rootfs_archive`.
Result<AssembledImage> assemble(const Plan& plan, const std::filesystem::path& rootfs_archive,
                                const std::filesystem::path& dir, Reporter& reporter);

}  // namespace kiln
