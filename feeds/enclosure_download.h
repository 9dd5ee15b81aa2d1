// EnclosureDownload: an item's archive fetched into the download directory
// and held to what the signed feed says of it: no more bytes than its
// enclosure length (kiln's cap when the feed gives none, or 0), then exactly
// that length and the item's sha256.
//
// A download resumed from a part an earlier pull left may not verify (the
// file changed on the server since, or the part belongs to another one):
// it is then discarded and fetched again from zero, once, rather than kept
// and resumed for ever.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "fetch/download_limits.h"
#include "base/error.h"
#include "base/reporter.h"
#include "feeds/vmcast_feed.h"

namespace kiln {

struct DownloadedEnclosure {
  uint64_t bytes = 0;
  bool resumed = false;
  std::string sha256;
};

// Fetches `url` (the item's enclosure, resolved) to `target`. On failure
// nothing complete is left at `target`.
Result<DownloadedEnclosure> download_enclosure(const VmcastItem& item, const std::string& url,
                                               const std::filesystem::path& target, const DownloadLimits& limits,
                                               Reporter& reporter);

}  // namespace kiln
