#include "fetch/download_limits.h"

#include <cstdlib>
#include <string>

#include "base/duration.h"
#include "base/size.h"

namespace kiln {
namespace {

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return value && *value ? value : nullptr;
}

Result<> positive_duration(const char* name, std::chrono::seconds& out) {
  const char* value = env(name);
  if (!value) return {};
  KILN_ASSIGN(std::chrono::seconds parsed, parse_duration(value, name));
  if (parsed.count() == 0) return fail(ErrorKind::kBadInput, "{}=0: a download needs some time; give e.g. 30s", name);
  out = parsed;
  return {};
}

}  // namespace

Result<DownloadLimits> download_limits_from_env() {
  DownloadLimits limits;
  if (const char* value = env("KILN_MAX_DOWNLOAD")) {
    auto size = parse_size(value);
    if (!size) return std::unexpected(std::move(size).error().with_context("KILN_MAX_DOWNLOAD"));
    if (*size == 0) return fail(ErrorKind::kBadInput, "KILN_MAX_DOWNLOAD=0 would refuse every download");
    limits.max_bytes = *size;
  }
  KILN_TRY(positive_duration("KILN_DOWNLOAD_TIMEOUT", limits.deadline));
  KILN_TRY(positive_duration("KILN_DOWNLOAD_STALL", limits.stall));
  return limits;
}

}  // namespace kiln
