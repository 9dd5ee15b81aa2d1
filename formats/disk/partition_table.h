// PartitionTable: the partitions of a disk image's MBR or GPT, read with
// libfdisk, for everything that looks inside a disk it did not lay out
// (pygrub's search, `kiln luks`, `kiln import`).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"

namespace kiln {

struct TablePartition {
  int number = 0;  // 1-based, as in /dev/vda1
  uint64_t offset = 0;
  uint64_t size = 0;
  std::string name;  // GPT's partition name; "" on MBR
  // GPT: the type GUID in upper case; MBR: the type byte as "0x83".
  std::string type;
};

struct PartitionTable {
  std::string label;  // "gpt", "dos"; "" when the disk has no table
  std::vector<TablePartition> partitions;  // in number order
};

// Reads `image`'s table; a disk without one gives an empty table, a file
// libfdisk cannot read at all an error naming it.
Result<PartitionTable> read_partition_table(const std::filesystem::path& image);

}  // namespace kiln
