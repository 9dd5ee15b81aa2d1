#include "feeds/puller.h"

#include <algorithm>
#include <chrono>
#include <ctime>

#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/size.h"
#include "base/stale_temps.h"
#include "fetch/uri_fetch.h"
#include "base/hash.h"
#include "feeds/baked_image.h"
#include "feeds/enclosure_download.h"
#include "feeds/feed_freshness.h"
#include "feeds/pulled_configs.h"
#include "feeds/version_order.h"
#include "feeds/xvm_archive.h"
#include "feeds/xvm_package.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string without_scheme_slashes(std::string_view uri) { return std::string(uri.substr(uri.find("://") + 3)); }

// The pullable items in the order to show them: images in the order the
// feed first names them, each image's versions newest first.
std::vector<const VmcastItem*> ordered_items(const VmcastFeed& feed) {
  std::vector<std::string> names;
  for (const VmcastItem& item : feed.items)
    if (item.enclosure && std::find(names.begin(), names.end(), item.name()) == names.end())
      names.push_back(item.name());
  std::vector<const VmcastItem*> out;
  for (const std::string& name : names) {
    size_t first = out.size();
    for (const VmcastItem& item : feed.items)
      if (item.enclosure && item.name() == name) out.push_back(&item);
    std::stable_sort(out.begin() + static_cast<ptrdiff_t>(first), out.end(),
                     [](const VmcastItem* a, const VmcastItem* b) {
                       return compare_versions(a->image_version, b->image_version) > 0;
                     });
  }
  return out;
}

// The images on offer, for a message: the first few, each quoted and cut.
std::string list_names(const std::vector<const VmcastItem*>& items) {
  constexpr size_t kShown = 8;
  std::vector<std::string> names;
  for (const VmcastItem* item : items)
    if (std::find(names.begin(), names.end(), item->name()) == names.end()) names.push_back(item->name());
  std::string out;
  for (size_t i = 0; i < std::min(names.size(), kShown); ++i) out += (i ? ", " : "") + shown_value(names[i], 60);
  if (names.size() > kShown) out += fmt::format(" and {} more", names.size() - kShown);
  return out;
}

Result<const VmcastItem*> choose_item(const VmcastFeed& feed, const std::string& wanted, const std::string& uri) {
  std::vector<const VmcastItem*> items = ordered_items(feed);
  if (items.empty()) return fail(ErrorKind::kBadInput, "{}: the feed has no item with an enclosure", shown_uri(uri));
  if (wanted.empty()) {
    for (const VmcastItem* item : items)
      if (item->name() != items.front()->name())
        return fail(ErrorKind::kBadInput, "{}: the feed offers several images ({}); choose one with --item NAME", shown_uri(uri),
                    list_names(items));
    return items.front();
  }
  for (const VmcastItem* item : items)
    if (item->name() == wanted || item->title == wanted || item->guid == wanted) return item;
  return fail(ErrorKind::kBadInput, "{}: no item {} in the feed; it offers: {}", shown_uri(uri), shown_value(wanted),
              list_names(items));
}

// What DIR holds now: nothing, or a kiln output of some image and version.
struct ExistingOutput {
  std::string name;
  std::string version;
};

Result<std::optional<ExistingOutput>> existing_output(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return std::optional<ExistingOutput>();
  if (!fs::is_directory(dir, ec))
    return fail(ErrorKind::kBadInput, "{}: exists and is not a directory; choose another -o", dir.string());
  if (fs::is_empty(dir, ec)) return std::optional<ExistingOutput>();
  if (!fs::exists(dir / "manifest.json", ec))
    return fail(ErrorKind::kBadInput,
                "{}: exists and is not a kiln output directory (no manifest.json); remove it or choose another -o",
                dir.string());
  KILN_ASSIGN(std::string text, read_file(dir / "manifest.json"));
  auto image = parse_bake_manifest(text, (dir / "manifest.json").string());
  if (!image) return std::unexpected(std::move(image).error());
  return std::optional<ExistingOutput>(ExistingOutput{image->name, image->version});
}

Result<> check_downgrade(const std::optional<ExistingOutput>& existing, const std::string& name,
                         const std::string& version, const fs::path& dir, bool allowed) {
  if (!existing || existing->name != name || version.empty() || allowed) return {};
  if (compare_versions(existing->version, version) > 0)
    return fail(ErrorKind::kBadInput,
                "{}: holds {}, newer than the {} on offer; refusing a downgrade (--allow-downgrade allows it)",
                dir.string(), shown_value(name + " " + existing->version), shown_value(version));
  return {};
}

// A feed from the network may only send kiln to the network: a file://
// enclosure would make kiln read a file of this host chosen by whoever
// controls the feed. Checked before anything is fetched.
Result<> check_enclosure_is_remote(const std::string& feed_uri, const std::string& url) {
  if (!is_remote_uri(feed_uri) || is_remote_uri(url)) return {};
  return fail(ErrorKind::kUntrusted,
              "{}: the feed points at {}, which is not on the network as the feed is; refusing it before reading it",
              shown_uri(feed_uri), shown_uri(url));
}

// The image the archive itself names: its manifest.json's, else xvm.xml's label.
std::string archive_image_name(const VerifiedXvm& verified) {
  if (!verified.bake_manifest.empty())
    if (auto image = parse_bake_manifest(verified.bake_manifest, "manifest.json")) return image->name;
  return verified.description.names.label;
}

// The signed feed and the signed archive must name the same image: else a
// publisher's key (or a mix-up) passes one image off as another.
Result<> check_archive_holds_item(const VerifiedXvm& verified, const VmcastItem& item, const std::string& url) {
  std::string held = archive_image_name(verified);
  if (held == item.name()) return {};
  return fail(ErrorKind::kUntrusted, "{}: the feed's item {} carries an archive of the image {}; refusing it",
              shown_uri(url), shown_value(item.name()), shown_value(held));
}

// The bake's manifest.json, its artifacts as they now are, plus where the
// image came from.
std::string pulled_manifest(const std::string& original, const std::vector<UnpackedFile>& files,
                            const std::string& feed_uri, const VmcastItem& item, const std::string& url,
                            const std::string& xvm_sha256, const std::optional<SignatureInfo>& signer) {
  nlohmann::json manifest = nlohmann::json::parse(original);
  nlohmann::json artifacts = nlohmann::json::array();
  for (const auto& artifact : manifest["artifacts"]) {
    std::string name = artifact["file"].get<std::string>();
    auto file = std::find_if(files.begin(), files.end(), [&](const UnpackedFile& f) { return f.file == name; });
    artifacts.push_back({{"file", name}, {"size", file->size}, {"sha256", file->sha256}});
  }
  manifest["artifacts"] = artifacts;
  manifest["pulled"] = {{"feed", feed_uri},
                        {"item", item.title},
                        {"enclosure", url},
                        {"sha256", xvm_sha256},
                        {"verified", signer.has_value()},
                        {"signed_by", signer ? nlohmann::json(signer->fingerprint) : nlohmann::json(nullptr)},
                        {"signer", signer ? nlohmann::json(signer->user_id) : nlohmann::json(nullptr)},
                        {"time", static_cast<int64_t>(std::time(nullptr))}};
  // The feed's texts need not be UTF-8; JSON must be.
  return manifest.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// Removes a finished download when the pull is over, however it ends: a
// verified one has been unpacked, a bad one must not be resumed.
struct DownloadCleanup {
  fs::path path;
  ~DownloadCleanup() {
    std::error_code ignored;
    if (!path.empty()) fs::remove(path, ignored);
  }
};

// The enclosure's file name, for messages and its download's name.
std::string enclosure_file_name(const std::string& url) {
  std::string file_name = fs::path(without_scheme_slashes(url)).filename().string();
  return is_safe_member_name(file_name) ? file_name : "enclosure.xvm";
}

fs::path output_dir_of(const PullOptions& options, const VmcastItem& item) {
  fs::path output =
      fs::absolute(options.output_dir.empty() ? fs::path("out") / item.name() : options.output_dir).lexically_normal();
  return output.filename().empty() ? output.parent_path() : output;
}

}  // namespace

std::string resolve_uri(std::string_view base, std::string_view reference) {
  if (reference.find("://") != std::string_view::npos) return std::string(reference);
  size_t scheme_end = base.find("://");
  if (scheme_end == std::string_view::npos) return std::string(reference);
  if (reference.starts_with('/')) {
    if (base.starts_with("file://")) return "file://" + std::string(reference);
    size_t host_end = base.find('/', scheme_end + 3);
    return std::string(base.substr(0, host_end)) + std::string(reference);
  }
  size_t slash = base.rfind('/');
  if (slash == std::string_view::npos || slash < scheme_end + 3) return std::string(base) + "/" + std::string(reference);
  return std::string(base.substr(0, slash + 1)) + std::string(reference);
}

std::vector<const VmcastItem*> pullable_items(const VmcastFeed& feed) { return ordered_items(feed); }

Result<PullResult> pull(const PullOptions& options, Reporter& reporter) {
  auto started = Clock::now();
  const FeedSource& source = options.source;
  KILN_ASSIGN(DownloadLimits limits, limits_of(source));
  KILN_ASSIGN(std::optional<TrustedKeys> keys, trusted_keys(source, reporter));
  const TrustedKeys* trusted = keys ? &*keys : nullptr;
  std::error_code ec;
  fs::create_directories(options.download_dir, ec);
  if (ec) return fail_errno("cannot create", options.download_dir.string(), ec.value());

  // 1. The feed: its signature and freshness.
  KILN_ASSIGN(FetchedFeed fetched, fetch_feed(source, trusted, options.download_dir, reporter));

  // 2. The item, and whether it may replace what DIR holds and what was pulled before.
  KILN_ASSIGN(const VmcastItem* item, choose_item(fetched.feed, options.item, fetched.uri));
  fs::path output = output_dir_of(options, *item);
  KILN_ASSIGN(std::optional<ExistingOutput> existing, existing_output(output));
  auto refuse_older = [&](const std::string& version) -> Result<> {
    KILN_TRY(check_downgrade(existing, item->name(), version, output, source.allow_downgrade));
    return check_item_not_older(fetched.accepted, item->name(), version, fetched.uri, source.allow_downgrade,
                                reporter);
  };
  if (!item->image_version.empty()) KILN_TRY(refuse_older(item->image_version));

  // 3. The enclosure, held to the length and sha256 the signed feed gives.
  std::string url = resolve_uri(fetched.uri, item->enclosure->url);
  KILN_TRY(check_enclosure_is_remote(fetched.uri, url));
  std::string file_name = enclosure_file_name(url);
  fs::path download = options.download_dir / (sha256_hex(url).substr(0, 16) + "-" + file_name);
  fs::remove(download, ec);  // a complete download is never kept between pulls
  reporter.step("fetch", shown_uri(url));
  KILN_ASSIGN(DownloadedEnclosure got, download_enclosure(*item, url, download, limits, reporter));
  DownloadCleanup cleanup{download};
  reporter.done(fmt::format("{}{}", format_size(got.bytes), got.resumed ? " (resumed)" : ""));

  // 4. The signatures inside, then every sum, then that it is the item's image.
  reporter.step("verify", file_name);
  KILN_ASSIGN(XvmArchive archive, XvmArchive::open(download, file_name));
  VerifyOptions verify;
  verify.threads = options.threads;
  verify.progress = [&](uint64_t done, uint64_t total) { reporter.progress(done, total); };
  KILN_ASSIGN(VerifiedXvm verified, verify_xvm(archive, trusted, verify));
  KILN_TRY(check_archive_holds_item(verified, *item, url));
  const std::string& version = verified.description.version;
  if (!item->image_version.empty() && version != item->image_version)
    return fail(ErrorKind::kUntrusted, "{}: the feed offers version {}, but its xvm.xml says {}", shown_uri(url),
                shown_value(item->image_version), shown_value(version));
  if (item->image_version.empty()) KILN_TRY(refuse_older(version));
  reporter.done(verified.signer ? "signed by " + verified.signer->describe() : "checksums only (NOT verified)");

  // 5. Only now: the image, beside DIR, swapped in when complete.
  reporter.step("unpack", output.string());
  fs::create_directories(output.parent_path(), ec);
  if (ec) return fail_errno("cannot create", output.parent_path().string(), ec.value());
  std::string staging_prefix = output.filename().string() + ".pull";
  remove_stale_temp_dirs(output.parent_path(), staging_prefix);
  KILN_ASSIGN(TempDir staging, create_tagged_temp_dir(output.parent_path(), staging_prefix));
  KILN_ASSIGN(std::vector<UnpackedFile> files, unpack_xvm(archive, verified, staging.path(), verify));
  KILN_ASSIGN(files, relocate_configs(std::move(files), staging.path(), output));
  KILN_TRY(write_file_atomic(staging.path() / "manifest.json",
                             pulled_manifest(verified.bake_manifest, files, fetched.uri, *item, url, got.sha256,
                                             verified.signer)));
  // Recorded before DIR changes: a pull that cannot be remembered does not happen.
  if (fetched.signer)
    KILN_TRY(record_accepted(state_file_of(source), fetched.uri, fetched.signer->fingerprint, fetched.date.value_or(0),
                             item->name(), version));
  KILN_TRY(install_directory(std::move(staging), output));
  reporter.done();

  PullResult result;
  result.name = item->name();
  result.version = version;
  result.output_dir = output;
  result.enclosure_url = url;
  result.downloaded = got.bytes;
  result.resumed = got.resumed;
  result.signer = verified.signer;
  for (const UnpackedFile& file : files) result.files.push_back(file.file);
  result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return result;
}

}  // namespace kiln
