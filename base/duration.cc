#include "base/duration.h"

#include <array>
#include <charconv>
#include <cstdint>
#include <utility>


namespace kiln {
namespace {

constexpr std::array<std::pair<char, int64_t>, 4> kUnits = {{{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}}};

}  // namespace

Result<std::chrono::seconds> parse_duration(std::string_view text, std::string_view what) {
  std::string_view digits = text;
  int64_t factor = 1;
  for (auto [unit, seconds] : kUnits)
    if (!text.empty() && text.back() == unit) {
      digits = text.substr(0, text.size() - 1);
      factor = seconds;
    }
  int64_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || value < 0 ||
      value > INT64_MAX / factor)
    return fail(ErrorKind::kBadInput, "{} {}: expected a number with a unit s, m, h or d, e.g. 30d", what,
                shown_value(text));
  return std::chrono::seconds(value * factor);
}

std::string format_duration(std::chrono::seconds duration) {
  int64_t seconds = duration.count();
  for (auto [unit, factor] : kUnits)
    if (seconds != 0 && seconds % factor == 0) return fmt::format("{}{}", seconds / factor, unit);
  return "0s";
}

std::string format_age(int64_t seconds_ago) {
  if (seconds_ago < 120) return fmt::format("{} s", seconds_ago);
  if (seconds_ago < 7200) return fmt::format("{} min", seconds_ago / 60);
  if (seconds_ago < 172800) return fmt::format("{} h", seconds_ago / 3600);
  return fmt::format("{} d", seconds_ago / 86400);
}

}  // namespace kiln
