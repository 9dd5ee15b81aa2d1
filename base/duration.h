// Durations as users write them on the command line and in the environment:
// "30d", "12h", "90m", "45s"; a plain number is seconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln {

// Parses a duration; `what` names the flag or variable in the error
// ("--valid-for", "KILN_DOWNLOAD_TIMEOUT").
Result<std::chrono::seconds> parse_duration(std::string_view text, std::string_view what);

// "30d", "2h", "90s": the largest unit that divides it exactly.
std::string format_duration(std::chrono::seconds duration);

// How long ago, roughly, for a listing: "45 s", "12 min", "5 h", "3 d".
std::string format_age(int64_t seconds_ago);

}  // namespace kiln
