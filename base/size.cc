#include "base/size.h"

#include <array>
#include <charconv>
#include <cctype>
#include <cmath>
#include <utility>

namespace kiln {
namespace {

struct Unit {
  std::string_view suffix;
  uint64_t factor;
};

constexpr std::array kUnits = {
    Unit{"", 1},          Unit{"B", 1},
    Unit{"K", 1ull << 10}, Unit{"KiB", 1ull << 10}, Unit{"KB", 1000ull},
    Unit{"M", 1ull << 20}, Unit{"MiB", 1ull << 20}, Unit{"MB", 1000000ull},
    Unit{"G", 1ull << 30}, Unit{"GiB", 1ull << 30}, Unit{"GB", 1000000000ull},
    Unit{"T", 1ull << 40}, Unit{"TiB", 1ull << 40}, Unit{"TB", 1000000000000ull},
};

}  // namespace

Result<uint64_t> parse_size(std::string_view text) {
  auto bad = [&] {
    return fail(ErrorKind::kBadInput,
                "bad size \"{}\": expected a number and an optional unit "
                "K, M, G or T (powers of 1024) or KB, MB, GB, TB, e.g. \"2G\"",
                text);
  };
  size_t digits = 0;
  while (digits < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[digits])) || text[digits] == '.'))
    ++digits;
  if (digits == 0) return bad();
  double number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + digits, number);
  if (ec != std::errc() || end != text.data() + digits) return bad();
  std::string_view suffix = text.substr(digits);
  while (!suffix.empty() && suffix.front() == ' ') suffix.remove_prefix(1);
  for (const Unit& unit : kUnits) {
    if (unit.suffix != suffix) continue;
    double bytes = std::ceil(number * static_cast<double>(unit.factor));
    if (bytes > 9.0e18) return bad();
    return static_cast<uint64_t>(bytes);
  }
  return bad();
}

std::string format_size(uint64_t bytes) {
  constexpr std::array<std::string_view, 5> names = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < names.size()) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return fmt::format("{} B", bytes);
  return fmt::format("{:.{}f} {}", value, value < 10 ? 1 : 0, names[unit]);
}

std::string recipe_size(uint64_t bytes) {
  uint64_t mib = round_up(bytes, kMiB) / kMiB;
  if (mib % 1024 == 0) return fmt::format("{}G", mib / 1024);
  return fmt::format("{}M", mib);
}

}  // namespace kiln
