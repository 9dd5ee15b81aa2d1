// Jailtime-style bundles for `kiln import` (builder/disk_import.h): one
// archive holding a guest's root filesystem image, its swap image and the
// Xen domain config that booted them, as jailtime.org and others handed out
// Xen guests:
//
//   debian-5.0/debian-5.0.img       an ext3 filesystem, the guest's sda1
//   debian-5.0/debian-5.0.swap      a swap area, sda2
//   debian-5.0/debian-5.0.xen.cfg   kernel, memory, name, disk = [...], root
//
// What is decided from the archive's file names and the parsed config, kept
// apart from the reading and writing so that it is tested alone.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "formats/domain/domain_spec.h"

namespace kiln {

// The bundle's Xen config: its one file named *.cfg. None, or more than
// one, is an error naming the bundle (and them).
Result<std::string> find_bundle_config(const std::vector<std::string>& files, std::string_view bundle);

// The file of the bundle a config's disk names. The config has the path the
// image had on the Xen host ("/path/to/debian-5.0.img"), so it is the one
// file of that name, wherever it is in the bundle. None, or more than one,
// is an error at the disk's line that says what the bundle holds.
Result<std::string> bundle_member_for(const DomainDisk& disk, const std::vector<std::string>& files);

// A disk of the config, with what its file holds.
struct BundleDisk {
  const DomainDisk* disk = nullptr;  // as the config lists it
  std::string member;                // the bundle's file it names
  bool swap = false;                 // a swap area (mkswap's signature)
  bool os_root = false;              // an ext2/3/4 filesystem with /etc/os-release
};

struct BundleChoice {
  size_t root = 0;  // index into the disks given
  std::string how;  // why that one, for people: "sda1 (debian-5.0.img), which root= names"
  std::vector<size_t> swaps;
};

// The device the config's root= names ("sda1" for root = "/dev/sda1 ro",
// also from extra or cmdline, the last one as the kernel reads it); "" when
// there is none or it is no /dev/ name (UUID=...).
std::string config_root_device(const DomainSpec& config);

// The root disk: the one the config's root= names (for "/dev/sda1", the
// disk exported as sda1, or the partitioned disk sda), else the first that
// is an ext2/3/4 filesystem with /etc/os-release. Every other disk must be
// a swap area: kiln import carries a bundle's root and swap disks only.
Result<BundleChoice> choose_bundle_disks(const DomainSpec& config, const std::vector<BundleDisk>& disks);

// The VM shape the image gets by default: --memory and --vcpus win; else the
// config's memory, and its vcpus where it sets them; else (left unset) kiln
// import's defaults.
void take_config_shape(const DomainSpec& config, std::optional<uint64_t>& memory_mib, std::optional<int>& vcpus);

}  // namespace kiln
