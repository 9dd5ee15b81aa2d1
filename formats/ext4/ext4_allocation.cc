#include "formats/ext4/ext4_allocation.h"

#include "formats/ext4/ext4_fs.h"

namespace kiln {

Result<std::vector<ByteRange>> ext4_used_ranges(const std::filesystem::path& image, uint64_t offset) {
  KILN_ASSIGN(std::unique_ptr<ext4::Filesystem> fs, ext4::Filesystem::open(image, offset, false, 0));
  ext2_filsys raw = fs->get();
  ext2fs_generic_bitmap map = raw->block_map;
  const uint64_t block = fs->block_size();
  const blk64_t first = raw->super->s_first_data_block;
  const blk64_t end = ext2fs_blocks_count(raw->super);  // one past the last block
  std::vector<ByteRange> out;
  // Block 0 (the boot sector area and, at 4 KiB blocks, the superblock)
  // precedes the first data block with a 1 KiB block size.
  if (first > 0) out.push_back({0, first * block});
  blk64_t at = first;
  while (at < end) {
    blk64_t used = 0;
    if (ext2fs_find_first_set_block_bitmap2(map, at, end - 1, &used) != 0) break;
    blk64_t free_block = end;
    if (ext2fs_find_first_zero_block_bitmap2(map, used, end - 1, &free_block) != 0) free_block = end;
    if (!out.empty() && out.back().offset + out.back().length == used * block)
      out.back().length += (free_block - used) * block;
    else
      out.push_back({used * block, (free_block - used) * block});
    at = free_block;
  }
  return out;
}

}  // namespace kiln
