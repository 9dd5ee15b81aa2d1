// ImageManifest: manifest.json, what a bake says about its output: the
// image (name, version, layout, partitions, root filesystem, kernel, VM
// shape), how it was built, the installed packages, every artifact with its
// size and sha256, and the storage as built (volumes, LVM, encryption;
// never a key). The bake writes it, publish and pull carry it inside .xvm
// packages, and boot reads it: all through this one type.
//
// The text is JSON with a "format" number. A reader takes its own format
// and older ones (format 1 is also a manifest with no number, as kiln wrote
// before it had one), and refuses a newer one by name rather than
// misreading it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln {

struct ManifestArtifact {
  std::string file;  // a plain name in the output directory
  uint64_t size = 0;
  // "" when not taken at bake (the whole-disk image, unless the recipe's
  // output.disk_sha256 says "bake"); publish fills it in.
  std::string sha256;
  bool operator==(const ManifestArtifact&) const = default;
};

struct ManifestPartition {
  int number = 0;  // 1-based, as in /dev/vda1
  std::string name;
  std::string type_guid;
  std::string uuid;
  uint64_t offset = 0;
  uint64_t size = 0;
  bool operator==(const ManifestPartition&) const = default;
};

struct ManifestVolume {
  std::string name;
  std::string filesystem;  // "ext4", ..., "swap"
  std::string mountpoint;
  std::string label;
  std::string uuid;
  uint64_t offset = 0;
  uint64_t size = 0;
  bool operator==(const ManifestVolume&) const = default;
};

struct ManifestPackage {
  std::string name;
  std::string version;
  std::string architecture;
  bool operator==(const ManifestPackage&) const = default;
};

struct ManifestLvm {
  std::string vg;
  std::string vg_uuid;
  std::string pv_uuid;
  uint64_t extent_size = 0;
  uint64_t extent_count = 0;
  uint64_t pe_start = 0;
  bool operator==(const ManifestLvm&) const = default;
};

struct ManifestEncryption {
  std::string type;  // "luks2", "luks1", "plain"
  std::string cipher;
  uint32_t key_bits = 0;
  uint32_t sector_size = 0;
  uint64_t data_offset = 0;
  int keyslots = 0;
  uint64_t encrypted_bytes = 0;
  std::string method;
  std::string name;  // the mapping name in /etc/crypttab
  std::string uuid;  // LUKS only
  bool operator==(const ManifestEncryption&) const = default;
};

struct ManifestPartitionImage {
  std::string file;
  std::string volume;  // "" for an encrypted container
  bool operator==(const ManifestPartitionImage&) const = default;
};

// A disk of an imported bundle's Xen config, and what became of it.
struct ManifestImportedDisk {
  std::string member;  // its path in the bundle: "debian-5.0/debian-5.0.img"
  std::string device;  // the config's device for it: "sda1"
  std::string use;     // "root" or "swap"
  std::string file;    // the output's file it became: "root.img", "swap.img"
  bool operator==(const ManifestImportedDisk&) const = default;
};

struct ImageManifest {
  // The format this kiln writes; readers take it and older ones.
  static constexpr int kFormat = 1;
  int format = kFormat;
  std::string kiln_version;
  std::string recipe_file;
  std::string recipe_sha256;
  // `kiln import`: the file the image came from, its format as qemu-img
  // names it ("tar" for a bundle), and its sha256; all "" for a bake.
  std::string imported_from;
  std::string imported_format;
  std::string imported_sha256;
  // A bundle (a tar of disk images and a Xen config): the config's path in
  // it, and each disk the config lists; "" and empty otherwise.
  std::string imported_config;
  std::vector<ManifestImportedDisk> imported_disks;

  std::string name;
  std::string version;
  std::string description;
  std::string layout;  // "gpt", "lvm", "plain"
  // dpkg's name (base/architecture.h). Images baked before kiln recorded it
  // get that of their packages, or "amd64", the only one kiln baked then.
  std::string architecture;
  uint64_t size = 0;   // disk.raw, or root.img for plain
  std::string root_filesystem_type;
  std::string root_filesystem_uuid;
  uint64_t root_filesystem_size = 0;
  std::string root_filesystem_label;
  std::vector<ManifestPartition> partitions;
  std::string kernel;  // its version; "" when the image has none
  std::string kernel_cmdline;
  uint64_t memory_mib = 0;  // 0: not recorded (images baked before kiln did)
  int vcpus = 0;
  std::string esp_volume_id;  // "" without an ESP
  std::string root_device;    // the kernel's root=

  int64_t build_timestamp = 0;
  bool reproducible = false;
  std::string bootstrap_key;
  std::string customize_key;

  std::vector<ManifestPackage> packages;
  std::vector<ManifestArtifact> artifacts;

  std::vector<ManifestVolume> volumes;
  std::vector<ManifestPartitionImage> partition_images;
  std::optional<ManifestLvm> lvm;
  std::optional<ManifestEncryption> encryption;

  const ManifestArtifact* find(std::string_view file) const;
  // The GPT partition named "root", if any.
  std::optional<int> root_partition() const;
  bool operator==(const ImageManifest&) const = default;
};

// The manifest as JSON text, indented, ending in a newline.
std::string write_image_manifest(const ImageManifest& manifest);

// Reads a manifest; `source` names it in errors. Checks what every reader
// relies on: a name and version that are plain names, artifacts with plain
// file names, sizes and sha256s, listed once.
Result<ImageManifest> read_image_manifest(std::string_view text, const std::string& source);

}  // namespace kiln
