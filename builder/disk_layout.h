// DiskLayout: where every part of a baked disk lies, computed once from the
// recipe's [storage]: the GPT partitions (placed by formats/gpt_disk's own
// rule), the encryption header in front of the root's plaintext, lvm2's
// metadata and the volume group's whole extents. make_plan and `kiln
// validate` call it, so a storage.size too small for what the recipe asks
// is an error at its file:line:col before anything is built; the assembler
// and the root stack then lay the disk out exactly as it says.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "base/error.h"
#include "formats/disk/gpt_disk.h"
#include "recipes/recipe.h"

namespace kiln {

struct ImageIdentity;

// kiln's filesystems are written in 4096-byte blocks.
inline constexpr uint64_t kFilesystemBlock = 4096;
// `bytes` rounded down to whole filesystem blocks.
constexpr uint64_t whole_blocks(uint64_t bytes) { return bytes / kFilesystemBlock * kFilesystemBlock; }

struct DiskLayout {
  uint64_t image_size = 0;  // disk.raw, or root.img for the plain layout
  GptLayout table;          // what disk.raw's GPT holds; no partitions for plain
  std::vector<PlacedPartition> partitions;
  std::optional<PlacedPartition> esp;
  // The root partition (all of root.img for plain), in whole blocks.
  uint64_t root_offset = 0;
  uint64_t root_size = 0;
  // A LUKS header at the root's start; the rest is the plaintext area that
  // holds the filesystem or the LVM physical volume.
  uint64_t header_size = 0;
  uint64_t plaintext_size = 0;
  // lvm: the bytes of whole extents behind lvm2's default metadata. The bake
  // reads lvm2's real numbers; this is what validation can know.
  uint64_t volume_group_size = 0;
};

// The layout, or an error at storage.size (or the volume that does not fit)
// naming the size that would.
Result<DiskLayout> plan_disk_layout(const Recipe& recipe, const ImageIdentity& identity);

}  // namespace kiln
