// Puller: `kiln pull`. Fetches a vmcast feed by URI (http, https, ftp, file),
// and brings one item's image into a directory laid out like a bake output,
// so that `kiln boot DIR` runs it.
//
// Nothing is trusted that a trusted key did not sign, and the checks come in
// this order: the feed's signature (FEED.asc) and freshness (not expired, not
// older than one accepted before), the chosen item (not older than one
// pulled before; its enclosure's length and sha256, both in the signed
// feed; an enclosure on this host is refused when the feed is not), the
// signatures inside the xvm, every manifest sum, and that the archive holds
// the image the item names. Only then are the images expanded, into a
// directory beside DIR that replaces DIR once complete: a failure at any
// point leaves DIR as it was. A download that breaks off stays in the
// download directory and the next pull resumes it; the staging directory of
// a pull that was killed outright is removed by the next pull into the same
// place.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/reporter.h"
#include "crypto/openpgp.h"
#include "feeds/feed_fetch.h"
#include "feeds/vmcast_feed.h"

namespace kiln {

struct PullOptions {
  FeedSource source;
  std::string item;                      // image name (or item title); empty: the feed's only image
  std::filesystem::path output_dir;      // empty: out/NAME
  std::filesystem::path download_dir;    // where partial downloads wait to be resumed
  unsigned threads = 0;
};

struct PullResult {
  std::string name;
  std::string version;
  std::filesystem::path output_dir;
  std::string enclosure_url;
  uint64_t downloaded = 0;
  bool resumed = false;
  std::optional<SignatureInfo> signer;
  std::vector<std::string> files;
  double seconds = 0;
};

Result<PullResult> pull(const PullOptions& options, Reporter& reporter);

// The items of a feed that carry an enclosure, newest version of each image
// first among its kind; `pull --list` prints them.
std::vector<const VmcastItem*> pullable_items(const VmcastFeed& feed);

// Resolves an enclosure URL against the feed's own URI (for relative ones).
std::string resolve_uri(std::string_view base, std::string_view reference);

}  // namespace kiln
