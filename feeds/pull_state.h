// PullState: what `kiln pull` has accepted from each feed, so that a feed
// older than one already accepted cannot be slipped in again (TUF's rollback
// attack), not even into a new output directory.
//
// It is kept per feed URI and signing key (primary fingerprint): the newest
// feed date accepted and the newest version of each image pulled. The file
// is $XDG_STATE_HOME/kiln/pulled-feeds.json (~/.local/state/kiln/ when the
// variable is unset), written atomically under a lock, and records only
// feeds whose signature verified: an unverified feed could otherwise raise
// the bar and block real updates.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "base/error.h"

namespace kiln {

struct AcceptedFeed {
  int64_t date = 0;                          // seconds since the epoch; 0: none yet
  std::map<std::string, std::string> items;  // image name -> newest version pulled
};

// $XDG_STATE_HOME/kiln/pulled-feeds.json, or ~/.local/state/kiln/pulled-feeds.json.
std::filesystem::path default_pull_state_path();

// What was accepted from `uri` signed by `fingerprint`; empty when nothing
// was, or the file does not exist yet. A damaged file is an error: ignoring
// it would silently drop the protection.
Result<AcceptedFeed> load_accepted(const std::filesystem::path& state, const std::string& uri,
                                   const std::string& fingerprint);

// Adds a pull to the record: the date and version are kept only where they
// are newer than what the file holds, so that concurrent pulls lose nothing.
Result<> record_accepted(const std::filesystem::path& state, const std::string& uri, const std::string& fingerprint,
                         int64_t date, const std::string& name, const std::string& version);

}  // namespace kiln
