// ArchiveData: a regular file's content handed to libarchive for the entry
// whose header was just written, for every writer of rootfs archives (a
// host tree, an ext4 filesystem). For a sparse entry libarchive takes the
// whole logical content and drops what the entry's map calls holes, so the
// holes go in as zeros: handing it the data runs alone would shift every
// run after the first hole onto the wrong offset.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>

#include "base/error.h"

struct archive;

namespace kiln {

// Reads up to `size` bytes of the file at `offset` into `buffer`; returns
// how many (0: the file ended early).
using ArchiveDataSource = std::function<Result<size_t>(uint64_t offset, char* buffer, size_t size)>;

// Writes `size` bytes: the data `runs` (offset, length; in order, within
// `size`) read through `read`, zeros everywhere else. `what` names the
// file in errors. Returns the bytes of data read.
Result<uint64_t> write_archive_data(archive* out, uint64_t size, std::span<const std::pair<uint64_t, uint64_t>> runs,
                                    const ArchiveDataSource& read, const std::string& what);

}  // namespace kiln
