// FileHashCache: the SHA-256 of large files that are hashed again and again
// (an image's disk each time it boots through libvirt), remembered in a
// directory beside kiln's state, one small file per (device, inode). An
// entry is used only while the file's size, modification and change times
// are the ones it was hashed at: any write, truncation, chmod or
// replacement of the file changes one of them, and the hash is made again.
// The kernel's file times are coarse (a few milliseconds), so a file
// written in the last seconds is not remembered: a second write in the same
// tick would leave its times as they were (git's "racily clean" index
// entries are the same problem).
#pragma once

#include <filesystem>
#include <string>

#include "base/error.h"

namespace kiln {

class FileHashCache {
 public:
  explicit FileHashCache(std::filesystem::path dir) : dir_(std::move(dir)) {}
  // The file's SHA-256 in hex.
  Result<std::string> sha256(const std::filesystem::path& file) const;

 private:
  std::filesystem::path dir_;
};

}  // namespace kiln
