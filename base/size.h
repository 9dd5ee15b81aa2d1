// Byte sizes as users write them in recipes and on the command line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln {

// Parses "2G", "512M", "4094MiB", "1.5G", "50MB", "4096". K/M/G/T and
// KiB/MiB/GiB/TiB are powers of 1024; KB/MB/GB/TB are powers of 1000, as in
// coreutils. The error message says what is accepted.
Result<uint64_t> parse_size(std::string_view text);

// "1.5 GiB", "300 MiB", "512 B": for messages and listings.
std::string format_size(uint64_t bytes);

// The shortest recipe spelling ("2G", "2560M") of a size rounded up to MiB.
std::string recipe_size(uint64_t bytes);

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kGiB = 1024 * kMiB;

constexpr uint64_t round_up(uint64_t value, uint64_t unit) {
  return (value + unit - 1) / unit * unit;
}

}  // namespace kiln
