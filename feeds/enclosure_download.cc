#include "feeds/enclosure_download.h"

#include "fetch/uri_fetch.h"
#include "base/hash.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// The declared length, when it declares one: length="0" says nothing.
uint64_t declared_length(const VmcastItem& item) { return item.enclosure->length.value_or(0); }

Result<DownloadedEnclosure> fetch_once(const VmcastItem& item, const std::string& url, const fs::path& target,
                                       const DownloadLimits& limits, Reporter& reporter) {
  FetchOptions fetch;
  fetch.max_bytes = declared_length(item);
  fetch.limits = limits;
  fetch.progress = [&](uint64_t done, uint64_t total) { reporter.progress(done, total); };
  auto fetched = fetch_uri(url, target, fetch);
  if (!fetched) {
    Error error = std::move(fetched).error();
    std::string context = fmt::format("downloading the enclosure of {}", shown_value(item.title));
    if (fetch.max_bytes && error.kind == ErrorKind::kUntrusted)
      context += fmt::format(" (the feed's enclosure length is {} bytes)", fetch.max_bytes);
    return std::unexpected(std::move(error).with_context(context));
  }
  return DownloadedEnclosure{fetched->bytes, fetched->resumed, ""};
}

// Holds the download to the feed's length and sha256.
Result<> check_download(const VmcastItem& item, const std::string& url, const fs::path& target,
                        DownloadedEnclosure& got) {
  uint64_t length = declared_length(item);
  if (length && got.bytes != length)
    return fail(ErrorKind::kUntrusted, "{}: downloaded {} bytes, but the feed's enclosure length says {}; refusing it",
                shown_uri(url), got.bytes, length);
  KILN_ASSIGN(got.sha256, file_digest_hex(target));
  if (!item.sha256.empty() && got.sha256 != item.sha256)
    return fail(ErrorKind::kUntrusted, "{}: its sha256 is {}, but the feed says {}; refusing it", shown_uri(url),
                got.sha256, item.sha256);
  return {};
}

// One fetch and its checks.
Result<DownloadedEnclosure> fetch_and_check(const VmcastItem& item, const std::string& url, const fs::path& target,
                                            const DownloadLimits& limits, Reporter& reporter) {
  KILN_ASSIGN(DownloadedEnclosure got, fetch_once(item, url, target, limits, reporter));
  KILN_TRY(check_download(item, url, target, got));
  return got;
}

}  // namespace

Result<DownloadedEnclosure> download_enclosure(const VmcastItem& item, const std::string& url, const fs::path& target,
                                               const DownloadLimits& limits, Reporter& reporter) {
  fs::path part = target;
  part += ".part";
  std::error_code ignored;
  bool resuming = fs::exists(part, ignored);
  auto got = fetch_and_check(item, url, target, limits, reporter);
  // Only what does not verify is retried: a broken transfer keeps its part.
  if (!got && resuming && got.error().kind == ErrorKind::kUntrusted) {
    fs::remove(target, ignored);
    fs::remove(part, ignored);
    reporter.warn(fmt::format("the download resumed from an earlier pull does not verify ({}); fetching it again "
                              "from the start",
                              got.error().message));
    got = fetch_and_check(item, url, target, limits, reporter);
  }
  if (!got) fs::remove(target, ignored);  // a bad download must not be resumed
  return got;
}

}  // namespace kiln
