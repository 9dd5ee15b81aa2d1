#include "feeds/feed_freshness.h"

#include "fetch/uri_fetch.h"
#include "feeds/version_order.h"

namespace kiln {
namespace {

// Refuses an older feed or image, or only warns under --allow-downgrade.
Result<> refuse_rollback(const std::string& what, bool allow, Reporter& reporter) {
  if (!allow) return fail(ErrorKind::kUntrusted, "{}; refusing a rollback (--allow-downgrade accepts it)", what);
  reporter.warn(what + "; accepted because of --allow-downgrade");
  return {};
}

}  // namespace

std::optional<int64_t> feed_date(const VmcastFeed& feed) {
  for (const std::string* date : {&feed.channel.last_build_date, &feed.channel.pub_date})
    if (auto parsed = parse_rfc822_date(*date)) return parsed;
  std::optional<int64_t> newest;
  for (const VmcastItem& item : feed.items)
    if (auto parsed = parse_rfc822_date(item.pub_date); parsed && (!newest || *parsed > *newest)) newest = parsed;
  return newest;
}

Result<> check_not_expired(const VmcastFeed& feed, const std::string& uri, int64_t now, bool allow_expired,
                           Reporter& reporter) {
  const std::string& valid_until = feed.channel.valid_until;
  if (valid_until.empty()) {
    reporter.warn(fmt::format("{}: the feed says no valid-until, so kiln cannot tell a stale copy of it from a "
                              "current one (kiln publish writes one)",
                              shown_uri(uri)));
    return {};
  }
  // parse_vmcast_feed has checked that it reads.
  int64_t until = *parse_rfc822_date(valid_until);
  if (until >= now) return {};
  std::string what = fmt::format("{}: the feed expired on {} (its valid-until)", shown_uri(uri), rfc822_date(until));
  if (allow_expired) {
    reporter.warn(what + "; accepted because of --allow-expired: it may be a stale copy that hides newer images");
    return {};
  }
  return fail(ErrorKind::kUntrusted,
              "{}; refusing it: an expired feed may be an old copy served to hide updates. Ask the publisher to "
              "publish again, or accept it with --allow-expired",
              what);
}

Result<> check_feed_not_older(const AcceptedFeed& accepted, std::optional<int64_t> date, const std::string& uri,
                              bool allow, Reporter& reporter) {
  if (!date || *date >= accepted.date) return {};
  std::string what = fmt::format("{}: the feed is dated {}, older than the feed of {} already accepted from there "
                                 "with the same key",
                                 shown_uri(uri), rfc822_date(*date), rfc822_date(accepted.date));
  return refuse_rollback(what, allow, reporter);
}

Result<> check_item_not_older(const AcceptedFeed& accepted, const std::string& name, const std::string& version,
                              const std::string& uri, bool allow, Reporter& reporter) {
  auto newest = accepted.items.find(name);
  if (newest == accepted.items.end() || version.empty() || compare_versions(newest->second, version) <= 0) return {};
  std::string what =
      fmt::format("{}: {} is older than the {} already pulled from this feed with the same key", shown_uri(uri),
                  shown_value(name + " " + version), shown_value(newest->second));
  return refuse_rollback(what, allow, reporter);
}

}  // namespace kiln
