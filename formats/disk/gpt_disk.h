// GptDisk: lays out a GPT partition table (protective MBR, primary and
// backup headers) on a disk image with libfdisk. Partitions are aligned to
// 1 MiB, and every GUID comes from the layout, so equal layouts give equal
// bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/uuid.h"

namespace kiln {

// Partitions start on 1 MiB boundaries; the primary table lives below the
// first one. The backup partition entries (128 of 128 bytes) and the backup
// header fill the disk's last 33 sectors.
inline constexpr uint64_t kGptAlignment = 1 << 20;
inline constexpr uint64_t kGptBackupTableBytes = 33 * 512;

enum class GptType { kEfiSystem, kLinuxRootX86_64, kLinuxFilesystem, kLinuxSwap, kLinuxLvm, kLinuxLuks };

// The type GUID of a partition type, upper-case as sfdisk prints it.
std::string_view gpt_type_guid(GptType type);

struct GptPartition {
  std::string name;  // the GPT partition name (label)
  GptType type = GptType::kLinuxFilesystem;
  Uuid uuid;
  uint64_t size_bytes = 0;  // 0: the rest of the disk (last partition only)
};

struct GptLayout {
  uint64_t disk_size = 0;
  Uuid disk_guid;
  std::vector<GptPartition> partitions;
};

struct PlacedPartition {
  GptPartition partition;
  int number = 0;       // 1-based, as in /dev/vda1
  uint64_t offset = 0;  // bytes from the start of the disk
  uint64_t size = 0;    // bytes
};

// Where each partition goes, without touching any file. Fails when the
// partitions do not fit, naming the disk size that would hold them.
Result<std::vector<PlacedPartition>> plan_gpt(const GptLayout& layout);

// Creates `disk` (sparse, disk_size bytes) if missing and writes the table.
// Partition contents are not touched.
Result<std::vector<PlacedPartition>> write_gpt(const std::filesystem::path& disk,
                                               const GptLayout& layout);

}  // namespace kiln
