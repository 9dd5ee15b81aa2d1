// DownloadLimits: the bounds every kiln download is held to, so that no
// server can make kiln fill a disk or wait forever: a size cap, a low-speed
// limit and an overall deadline.
//
// Defaults, each overridable from the environment (and `kiln pull` has
// flags for the first two):
//   KILN_MAX_DOWNLOAD      32G   the size cap when the source declares no size
//   KILN_DOWNLOAD_TIMEOUT  6h    the overall deadline of one download
//   KILN_DOWNLOAD_STALL    60s   how long a transfer may stay under 1 KiB/s
#pragma once

#include <chrono>
#include <cstdint>

#include "base/error.h"

namespace kiln {

struct DownloadLimits {
  // Slower than this for `stall` ends a transfer.
  static constexpr long kLowSpeedBytesPerSecond = 1024;

  uint64_t max_bytes = 32ull << 30;
  std::chrono::seconds deadline{6 * 3600};
  std::chrono::seconds stall{60};
};

// The defaults with the KILN_* variables above applied; a malformed value is
// bad input naming the variable.
Result<DownloadLimits> download_limits_from_env();

}  // namespace kiln
