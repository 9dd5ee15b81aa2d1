// FeedFreshness: whether a verified feed is current, against the two attacks
// a signature alone does not stop (TUF's names): a freeze, where an old
// feed keeps being served after its publisher replaced it, and a rollback,
// where a feed older than one already accepted is served instead.
//
// A freeze is stopped by the feed's signed kiln:valid-until: an expired feed
// is refused (--allow-expired accepts it with a warning). A rollback is
// stopped by PullState: a feed dated before the newest one accepted from
// the same URI and key, or an image version older than one pulled from it,
// is refused (--allow-downgrade accepts it with a warning). Both refusals
// are verification failures.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/error.h"
#include "base/reporter.h"
#include "feeds/pull_state.h"
#include "feeds/vmcast_feed.h"

namespace kiln {

// The feed's date: the channel's lastBuildDate, else its pubDate, else the
// newest item's pubDate; empty when none reads as a date.
std::optional<int64_t> feed_date(const VmcastFeed& feed);

// Refuses a feed whose valid-until is before `now`, unless `allow_expired`.
// A feed without one is accepted with a warning: its age cannot be told.
Result<> check_not_expired(const VmcastFeed& feed, const std::string& uri, int64_t now, bool allow_expired,
                           Reporter& reporter);

// Refuses a feed dated before the newest accepted from it, unless `allow`.
Result<> check_feed_not_older(const AcceptedFeed& accepted, std::optional<int64_t> date, const std::string& uri,
                              bool allow, Reporter& reporter);

// Refuses an image version older than the newest pulled from the feed,
// unless `allow`.
Result<> check_item_not_older(const AcceptedFeed& accepted, const std::string& name, const std::string& version,
                              const std::string& uri, bool allow, Reporter& reporter);

}  // namespace kiln
