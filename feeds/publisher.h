// Publisher: `kiln publish`. Turns a bake output directory into a signed xvm
// archive in a site directory, adds or updates its item in the site's vmcast
// feed (vmcast.rss, signed as vmcast.rss.asc), and writes a virt-builder
// repository beside it (index, clearsigned index.asc, the xz image).
//
// Every file lands atomically, and in an order that never lets a reader see
// a feed or index that points at a file not yet there: the archive, then the
// virt-builder image and index, then the feed. A failure leaves the site as
// it was, without temporaries; the staging directory of a publish that was
// killed outright is removed by the next publish into the same site.
//
// The feed says until when it may be trusted (kiln:valid-until, inside the
// signed text): a publisher re-publishes before then, and `kiln pull`
// refuses the feed after it, so that nobody can keep serving an old one.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "base/error.h"
#include "base/reporter.h"
#include "crypto/openpgp.h"

namespace kiln {

inline constexpr std::string_view kFeedFile = "vmcast.rss";
inline constexpr std::string_view kIndexFile = "index";

struct PublishOptions {
  std::filesystem::path image_dir;
  std::filesystem::path site_dir;
  // Where site_dir is served; enclosure URLs are BASE/NAME-VERSION.xvm.
  std::string base_url;
  SigningKeyOptions signing;
  // The channel's fields; empty ones keep the feed's current values (or get
  // defaults in a new feed).
  std::string channel_title;
  std::string channel_description;
  std::string channel_link;
  std::string language;
  bool virt_builder = true;
  std::string osinfo;  // empty: guessed from the image (e.g. "debian12")
  int gzip_level = 6;
  int xz_level = 1;
  unsigned threads = 0;  // 0: one per core
  // The items' pubDate; empty: now.
  std::optional<int64_t> date;
  // How long the feed is valid from now (not from `date`, which may be a
  // reproducible build's old SOURCE_DATE_EPOCH).
  std::chrono::seconds valid_for{30 * 86400};
};

struct PublishResult {
  std::string name;
  std::string version;
  std::filesystem::path xvm;
  uint64_t xvm_size = 0;
  std::string xvm_sha256;
  std::string enclosure_url;
  std::filesystem::path feed;
  std::filesystem::path index;  // empty without virt-builder output
  std::string signer;           // the signing key's fingerprint
  std::string valid_until;      // the feed's, RFC 822
  double seconds = 0;
};

Result<PublishResult> publish(const PublishOptions& options, Reporter& reporter);

// "https://x/a" + "f" -> "https://x/a/f"; one slash between them.
std::string join_url(std::string_view base, std::string_view file);

}  // namespace kiln
