// FatImage: a FAT filesystem (the EFI system partition) written with mtools
// at a byte range of an image file, no mount needed. Volume id, label and
// every timestamp come from the options, so the bytes are reproducible.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"

namespace kiln {

struct FatFile {
  std::string path;  // inside the filesystem, e.g. "EFI/BOOT/BOOTX64.EFI"
  std::filesystem::path source;  // host file to copy in, or
  std::string content;           // the file's bytes when source is empty
};

struct FatOptions {
  uint64_t offset_bytes = 0;
  uint64_t size_bytes = 0;
  std::string label = "ESP";
  uint32_t volume_id = 0;
  int64_t timestamp = 0;  // every file and directory time
};

// Formats the range and copies the files in (directories are created). The
// image is created or extended as needed and only the range is written, once
// the whole filesystem is built. FAT32 from 33 MiB, FAT16 below, at least 4 MiB.
Result<> write_fat_image(const std::filesystem::path& image, const FatOptions& options,
                         const std::vector<FatFile>& files);

// "XXXX-XXXX", as blkid and /etc/fstab spell a FAT volume id.
std::string fat_volume_id_string(uint32_t volume_id);

}  // namespace kiln
