// Puller: `kiln pull`. Fetches a vmcast feed by URI (http, https, ftp, file),
// and brings one item's image into a directory laid out like a bake output,
// so that `kiln boot DIR` runs it.
//
// Nothing is trusted that a trusted key did not sign, and the checks come in
// this order: the feed's signature (FEED.asc), the chosen item (its
// enclosure's length and sha256, both in the signed feed), the signatures
// inside the xvm, every manifest sum. Only then are the images expanded,
// into a directory beside DIR that replaces DIR once complete: a failure at
// any point leaves DIR as it was. A download that breaks off stays in the
// download directory and the next pull resumes it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/reporter.h"
#include "crypto/openpgp.h"
#include "feeds/vmcast_feed.h"

namespace kiln {

struct FeedSource {
  std::string uri;
  std::filesystem::path keyring;  // required unless no_verify
  bool no_verify = false;
};

struct FetchedFeed {
  VmcastFeed feed;
  std::optional<SignatureInfo> signer;  // empty when not verified
};

// Fetches and (unless no_verify) verifies a feed; `scratch` holds the
// downloads while they are checked.
Result<FetchedFeed> fetch_feed(const FeedSource& source, const std::filesystem::path& scratch, Reporter& reporter);

struct PullOptions {
  FeedSource source;
  std::string item;                      // image name (or item title); empty: the feed's only image
  std::filesystem::path output_dir;      // empty: out/NAME
  std::filesystem::path download_dir;    // where partial downloads wait to be resumed
  bool allow_downgrade = false;
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
