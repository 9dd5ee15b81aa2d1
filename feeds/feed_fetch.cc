#include "feeds/feed_fetch.h"

#include <algorithm>
#include <ctime>

#include "base/files.h"
#include "base/stale_temps.h"
#include "fetch/uri_fetch.h"
#include "feeds/feed_freshness.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kFeedLimit = 16 << 20;
constexpr uint64_t kSignatureLimit = 1 << 20;
// A feed or a signature is small: it has no business taking hours.
constexpr std::chrono::seconds kSmallFileDeadline{300};

const std::string kNoVerifyWarning =
    "--no-verify: signatures are NOT checked; anyone who could change the feed or the archive on its way "
    "to you could have. Only checksums are checked.";

// "site/vmcast.rss" and "/abs/vmcast.rss" become file:// URIs, so that a
// relative enclosure resolves against them like against any other URI.
std::string normalise_uri(const std::string& uri) {
  if (uri.find("://") != std::string::npos) return uri;
  return "file://" + fs::absolute(uri).lexically_normal().string();
}

// Fetches a small file whole.
Result<std::string> fetch_text(const std::string& uri, const fs::path& scratch, const std::string& name,
                               uint64_t limit, const DownloadLimits& limits) {
  fs::path target = scratch / name;
  FetchOptions options;
  options.max_bytes = limit;
  options.limits = limits;
  options.limits->deadline = std::min(limits.deadline, kSmallFileDeadline);
  KILN_TRY(fetch_uri(uri, target, options));
  return read_file(target);
}

Result<SignatureInfo> verify_feed(const std::string& uri, const std::string& text, const TrustedKeys& keys,
                                                 const fs::path& scratch, const DownloadLimits& limits) {
  std::string signature_uri = uri + ".asc";
  auto signature = fetch_text(signature_uri, scratch, "feed.asc", kSignatureLimit, limits);
  if (!signature)
    return fail(ErrorKind::kUntrusted,
                "the feed is unsigned: cannot get its signature {} ({}); kiln refuses unsigned feeds "
                "(--no-verify accepts one, without any trust)",
                shown_uri(signature_uri), signature.error().message);
  return keys.verify_detached(text, *signature, shown_uri(uri), shown_uri(signature_uri));
}

// The feed's freshness; a verified feed's record is loaded for the later checks.
Result<> check_freshness(const FeedSource& source, FetchedFeed& out, Reporter& reporter) {
  KILN_TRY(check_not_expired(out.feed, out.uri, static_cast<int64_t>(std::time(nullptr)), source.allow_expired,
                             reporter));
  if (!out.signer) return {};
  KILN_ASSIGN(out.accepted, load_accepted(state_file_of(source), out.uri, out.signer->fingerprint));
  return check_feed_not_older(out.accepted, out.date, out.uri, source.allow_downgrade, reporter);
}

}  // namespace

fs::path state_file_of(const FeedSource& source) {
  return source.state_file.empty() ? default_pull_state_path() : source.state_file;
}

Result<DownloadLimits> limits_of(const FeedSource& source) {
  if (source.limits) return *source.limits;
  return download_limits_from_env();
}

Result<std::optional<TrustedKeys>> trusted_keys(const FeedSource& source, Reporter& reporter) {
  // TrustedKeys makes a GnuPG home there for each run; a killed run leaves its own.
  remove_stale_temp_dirs(fs::temp_directory_path(), "kiln-gnupg");
  if (source.no_verify) {
    reporter.warn(kNoVerifyWarning);
    return std::optional<TrustedKeys>();
  }
  if (source.keyring.empty())
    return fail(ErrorKind::kBadInput,
                "no trusted keys: give --keyring FILE with the publisher's public key (`gpg --export KEYID > FILE`), "
                "or --no-verify to accept the feed without checking who made it");
  std::error_code ec;
  if (!fs::is_regular_file(source.keyring, ec))
    return fail(ErrorKind::kBadInput, "--keyring {}: {}; give the file the publisher's public key was exported to",
                source.keyring.string(), fs::exists(source.keyring, ec) ? "not a file" : "no such file");
  KILN_ASSIGN(TrustedKeys keys, TrustedKeys::load(source.keyring));
  return std::optional<TrustedKeys>(std::move(keys));
}

Result<FetchedFeed> fetch_feed(const FeedSource& source, const TrustedKeys* keys, const fs::path& scratch,
                               Reporter& reporter) {
  KILN_ASSIGN(DownloadLimits limits, limits_of(source));
  remove_stale_temp_dirs(scratch, "feed");
  KILN_ASSIGN(TempDir work, create_tagged_temp_dir(scratch, "feed"));
  FetchedFeed out;
  out.uri = normalise_uri(source.uri);
  reporter.step("feed", shown_uri(out.uri));
  auto text = fetch_text(out.uri, work.path(), "feed", kFeedLimit, limits);
  if (!text) return std::unexpected(std::move(text).error().with_context("fetching the feed"));
  if (keys) {
    KILN_ASSIGN(out.signer, verify_feed(out.uri, *text, *keys, work.path(), limits));
  }
  KILN_ASSIGN(out.feed, parse_vmcast_feed(*text, shown_uri(out.uri)));
  out.date = feed_date(out.feed);
  KILN_TRY(check_freshness(source, out, reporter));
  reporter.done(out.signer ? "signed by " + out.signer->describe() : "NOT verified");
  return out;
}

}  // namespace kiln
