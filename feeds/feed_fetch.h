// FeedFetch: the first step of `kiln pull` and all of `kiln pull --list`: a
// vmcast feed fetched by URI (http, https, ftp, file, or a path), its
// detached signature (FEED.asc) checked against the trusted keys only, and
// the feed checked for freshness (feeds/feed_freshness.h): not expired, not
// older than one already accepted from the same URI and key.
//
// Each run first removes what killed runs left: kiln's temporary GnuPG
// homes and the feed's scratch directories (base/stale_temps.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "fetch/download_limits.h"
#include "base/error.h"
#include "base/reporter.h"
#include "crypto/openpgp.h"
#include "feeds/pull_state.h"
#include "feeds/vmcast_feed.h"

namespace kiln {

struct FeedSource {
  std::string uri;
  std::filesystem::path keyring;  // required unless no_verify
  bool no_verify = false;
  // Accept a feed past its valid-until, with a warning.
  bool allow_expired = false;
  // Accept a feed, or an image version, older than one accepted before,
  // with a warning (and, for pull, an image older than the one in DIR).
  bool allow_downgrade = false;
  // What was accepted before; empty: default_pull_state_path().
  std::filesystem::path state_file;
  // Empty: download_limits_from_env().
  std::optional<DownloadLimits> limits;
};

struct FetchedFeed {
  std::string uri;  // as fetched: a path becomes a file:// URI
  VmcastFeed feed;
  std::optional<SignatureInfo> signer;  // empty when not verified
  std::optional<int64_t> date;          // feed_date()
  AcceptedFeed accepted;                // before this run, for uri and signer
};

// The keys --keyring names, or none (with a warning) under --no-verify.
// A missing keyring file is bad input.
Result<std::optional<TrustedKeys>> trusted_keys(const FeedSource& source, Reporter& reporter);

// Fetches and checks a feed with `keys` (null: no verification); `scratch`
// holds the downloads while they are checked.
Result<FetchedFeed> fetch_feed(const FeedSource& source, const TrustedKeys* keys, const std::filesystem::path& scratch,
                               Reporter& reporter);

// The state file `source` uses.
std::filesystem::path state_file_of(const FeedSource& source);

// The download limits `source` uses.
Result<DownloadLimits> limits_of(const FeedSource& source);

}  // namespace kiln
