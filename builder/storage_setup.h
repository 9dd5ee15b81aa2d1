// StorageSetup: what a storage layout asks of the guest so that it boots:
// the root= the kernel is given, /etc/crypttab, and what the initramfs must
// carry (lvm2 to activate the volume group, cryptsetup to ask for the
// passphrase on the console). The packages and files go in through the
// in-image stage, which rebuilds the initramfs; they depend only on the
// storage settings, so editing other parts of a recipe keeps that stage
// cached.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "recipes/recipe.h"

namespace kiln {

struct ImageIdentity;

// The packages and files the image needs inside for its storage layout,
// and whether the initramfs must be rebuilt with them.
struct StorageSupport {
  std::vector<std::string> packages;
  std::vector<std::pair<std::string, std::string>> files;  // absolute path, content
  bool empty() const { return packages.empty() && files.empty(); }
};

StorageSupport storage_support(const Recipe& recipe, const ImageIdentity& identity);

// /etc/crypttab for an encrypted layout, "" otherwise.
std::string crypttab_for(const Recipe& recipe, const ImageIdentity& identity);

// The kernel's root= value: "UUID=..." of the root filesystem, or the
// /dev/mapper path of the root logical volume (which makes the initramfs
// activate the volume group).
std::string root_device(const Recipe& recipe, const ImageIdentity& identity);

// /dev/mapper/VG-LV, with '-' in either name doubled as device-mapper does.
std::string lvm_mapper_path(std::string_view vg, std::string_view lv);

// The volume of [[storage.lvm.volumes]] mounted at "/".
const LvmVolume& root_volume(const StorageSection& storage);

}  // namespace kiln
