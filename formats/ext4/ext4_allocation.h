// Which bytes of an ext2/3/4 filesystem hold something: the blocks its
// block bitmap marks in use (file data and all metadata: superblocks,
// descriptors, bitmaps, inode tables, the journal). Encrypting an image
// writes exactly these, so free blocks cost nothing, while every block the
// filesystem may read without having written it (inode tables and the
// journal, left as holes by lazy initialisation) still decrypts to zeros.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "base/byte_range.h"
#include "base/error.h"

namespace kiln {

// The used ranges of the filesystem at `offset` of `image`, relative to the
// filesystem's start, sorted and merged.
Result<std::vector<ByteRange>> ext4_used_ranges(const std::filesystem::path& image, uint64_t offset);

}  // namespace kiln
