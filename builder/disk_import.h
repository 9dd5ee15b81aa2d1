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
// loop devices.
//
// A root on LVM is found in its logical volume: the physical volume's
// metadata is read from the disk (formats/disk/lvm_metadata.h), and a
// linear volume read in place. A LUKS volume is opened only with the
// passphrase the user gives: its data is decrypted into a private file in
// the staging directory, the root found and changed there, and the root's
// blocks encrypted back into disk.raw with the same volume key; the
// plaintext is removed before the output is installed, and the image stays
// encrypted with the same header and keyslots.
//
// The source may also be a jailtime-style bundle (builder/bundle_import.h):
// an archive (tar or cpio, compressed or not; told by its content, not its
// name) holding a root filesystem image, a swap image and a Xen domain
// config. Its regular files are unpacked into the staging directory (no
// symlink, hard link or device node is taken, no path leaves it), the
// config read (formats/domain/xen_config.h), the root image the config's
// root= names imported as above, each swap area carried as swap.img, and
// NAME.xl.cfg written: the config for the output's files, with which `kiln
// boot` attaches the swap. The config's memory and vcpus are the image's
// defaults, unless the request gives its own. The manifest names the bundle,
// its config and what each of its disks became.
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
  std::filesystem::path source;      // a disk image, a bare filesystem image or a bundle
  std::filesystem::path output_dir;  // created, or a kiln output replaced; "": out/NAME
  // "": a bundle's config's name, else the source's file name up to its first '.'
  std::string name;
  // The VM shape boot gives it by default; unset: a bundle's config's, else 1 GiB and 2.
  std::optional<uint64_t> memory_mib;
  std::optional<int> vcpus;
  // Opens a LUKS volume on the disk to find the root in it; without one, an
  // encrypted root is refused by name.
  std::filesystem::path luks_passphrase_file;
};

struct ImportResult {
  std::filesystem::path output_dir;
  ImageManifest manifest;
  // Where the root was found: "partition 2 (GPT type root-x86-64)"; for a
  // bundle, which of its disks first: "sda1 (debian-5.0.img), which ...: the whole disk ...".
  std::string root;
  double seconds = 0;
};

Result<ImportResult> import_disk_image(ImportRequest request, Reporter& reporter);

}  // namespace kiln
