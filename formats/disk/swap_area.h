// A Linux swap area (what mkswap writes) at a byte range of an image file:
// for swap logical volumes and swap partition images, and for telling one
// apart when an image comes from elsewhere (`kiln import` of a bundle).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include "base/error.h"
#include "base/uuid.h"

namespace kiln {

// The bytes of a swap area that carry its header; the rest is unused until
// the guest swaps.
constexpr uint64_t kSwapHeaderSize = 4096;

// Writes a swap area of `size` bytes at `offset` of `image`, with the given
// UUID (for /etc/fstab) and label. Only the header page is written.
Result<> write_swap_area(const std::filesystem::path& image, uint64_t offset, uint64_t size, const Uuid& uuid,
                         std::string_view label);

// True when `image` holds a swap area at `offset`: mkswap's signature
// ("SWAPSPACE2", or the old "SWAP-SPACE") ends its first page, for any page
// size Linux uses (4 to 64 KiB).
Result<bool> has_swap_signature(const std::filesystem::path& image, uint64_t offset = 0);

}  // namespace kiln
