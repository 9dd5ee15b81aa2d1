// ArchiveFilesystem: an ext2/3/4 image file from a rootfs archive, as
// virt-make-fs makes one, but streamed with libext2fs (no appliance, no
// mount, no root). `kiln make-fs` is its command line. The image is built
// under a temporary name and renamed into place only when complete.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "base/error.h"
#include "base/reporter.h"

namespace kiln {

struct ArchiveFilesystemRequest {
  std::filesystem::path archive;  // tar (plain, .gz, .xz, .zst) or cpio
  std::filesystem::path image;
  // "2G" is the size; "+200M" is free space on top of what the content
  // needs; "" is just what it needs.
  std::string size;
  std::string type = "ext4";  // ext4, ext3 or ext2
  std::string label;
  // SOURCE_DATE_EPOCH: with it, timestamps are this time and the UUID and
  // hash seed follow from the archive's content, so that the same archive
  // gives a byte-identical image.
  std::optional<int64_t> epoch;
};

Result<> make_archive_filesystem(const ArchiveFilesystemRequest& request, Reporter& reporter);

}  // namespace kiln
