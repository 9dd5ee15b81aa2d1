// How much room an archive takes in an ext2/3/4 filesystem, from its
// headers alone: the blocks and inodes the importer will allocate. It counts
// exactly what the importer writes (data blocks, directory blocks packed the
// same way, long symlinks, attribute blocks) and bounds what depends on
// placement (extent tree blocks) from above, so the answer is never short.
#pragma once

#include <cstdint>

#include "base/error.h"
#include "formats/tree/tar_reader.h"

namespace kiln::ext4 {

struct Geometry {
  uint32_t block_size = 4096;
  uint32_t inode_size = 256;
  bool extents = true;    // extent trees (ext4) or block maps (ext2/3)
  bool checksums = true;  // metadata_csum: directory blocks end in a checksum tail
};

struct SpaceNeeds {
  uint64_t blocks = 0;  // blocks the import allocates (besides what mke2fs made)
  uint64_t inodes = 0;  // inodes the import allocates
};

Result<SpaceNeeds> measure_archive(TarReader& reader, const Geometry& geometry);

}  // namespace kiln::ext4
