#include "feeds/rfc822_date.h"

#include <ctime>

#include <fmt/format.h>

namespace kiln {

std::string rfc822_date(int64_t seconds) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{}, {:02d} {} {} {:02d}:{:02d}:{:02d} +0000", kDays[tm.tm_wday], tm.tm_mday,
                     kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::optional<int64_t> parse_rfc822_date(std::string_view text) {
  if (text.size() > 64) return std::nullopt;  // no date is that long
  std::string date(text);
  while (!date.empty() && (date.back() == ' ' || date.back() == '\t' || date.back() == '\n')) date.pop_back();
  for (const char* zone : {" GMT", " UTC", " UT"})
    if (date.ends_with(zone)) date.replace(date.size() - std::string_view(zone).size(), std::string::npos, " +0000");
  for (const char* format : {"%a, %d %b %Y %H:%M:%S %z", "%d %b %Y %H:%M:%S %z", "%a, %d %b %Y %H:%M %z",
                             "%d %b %Y %H:%M %z"}) {
    std::tm tm{};
    const char* end = ::strptime(date.c_str(), format, &tm);
    if (!end || *end != '\0') continue;
    long offset = tm.tm_gmtoff;  // before timegm, which resets it
    return static_cast<int64_t>(::timegm(&tm)) - offset;
  }
  return std::nullopt;
}

}  // namespace kiln
