// xz compression of a disk image for a virt-builder repository, on every
// core, through libarchive's xz filter (liblzma's multi-threaded encoder).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "base/error.h"

namespace kiln {

struct XzOptions {
  int level = 6;         // xz -0..-9
  unsigned threads = 0;  // 0: one per core
  std::function<void(uint64_t done, uint64_t total)> progress;
};

struct XzResult {
  uint64_t compressed_size = 0;
  std::string sha512;  // of the .xz file
};

// Compresses `source` into `target` (an .xz file, written atomically) on
// every core, through libarchive's xz filter.
Result<XzResult> xz_compress_file(const std::filesystem::path& source, const std::filesystem::path& target,
                                  const XzOptions& options);

}  // namespace kiln
