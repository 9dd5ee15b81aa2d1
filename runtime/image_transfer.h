// ImageTransfer: the files of a baked image (disks, kernel, initrd) sent to
// another kiln host once, and kept there by content: each is stored as its
// SHA-256, so that a second instance of the same image moves no image data,
// whatever its file names or directories on either host.
//
// On the wire a file is its holes left out: runs of (offset, length, data),
// each offset and length as 8 bytes little-endian, until the end of the
// stream. The receiver checks the SHA-256 of what it wrote before the file
// takes its name; a file cut short or changed on the way is never kept.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "base/error.h"

namespace kiln {

// Writes `file`'s data runs to `fd`; `progress` gets the bytes sent so far.
Result<> send_image_file(const std::filesystem::path& file, int fd,
                         const std::function<void(uint64_t sent)>& progress);

// Reads one file in that form from `fd` into `dir`/`sha256`, of `size`
// bytes; fails, keeping nothing, unless its content has that hash.
Result<> receive_image_file(int fd, const std::filesystem::path& dir, const std::string& sha256, uint64_t size);

// The bytes `file` holds on disk (its data runs, not its holes).
Result<uint64_t> allocated_bytes(const std::filesystem::path& file);

}  // namespace kiln
