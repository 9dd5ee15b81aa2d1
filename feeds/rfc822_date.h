// RFC 822 dates, as RSS 2.0 writes them ("Fri, 16 Feb 2007 22:43:18 +0000"):
// kiln writes them for pubDate, lastBuildDate and its valid-until, and reads
// them back to tell how fresh a feed is.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kiln {

// The date in UTC, with English day and month names.
std::string rfc822_date(int64_t seconds_since_epoch);

// Seconds since the epoch of an RFC 822 date: the day name and the seconds
// are optional, the zone is +hhmm/-hhmm, GMT, UT, UTC or Z. Empty when the
// text is no such date.
std::optional<int64_t> parse_rfc822_date(std::string_view text);

}  // namespace kiln
