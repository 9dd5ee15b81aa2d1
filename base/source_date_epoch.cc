#include "base/source_date_epoch.h"

#include <charconv>
#include <cstdlib>
#include <string_view>

namespace kiln {

Result<std::optional<int64_t>> source_date_epoch_from_env() {
  const char* text = std::getenv("SOURCE_DATE_EPOCH");
  if (!text || !*text) return std::nullopt;
  int64_t value = 0;
  std::string_view view(text);
  auto [end, ec] = std::from_chars(view.data(), view.data() + view.size(), value);
  if (ec != std::errc() || end != view.data() + view.size() || value < 0)
    return fail(ErrorKind::kBadInput, "SOURCE_DATE_EPOCH=\"{}\": expected seconds since 1970 (an integer)", text);
  return value;
}

}  // namespace kiln
