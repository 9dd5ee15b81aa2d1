#include "feeds/puller.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <set>
#include <sstream>

#include <pugixml.hpp>

#include "base/files.h"
#include "base/size.h"
#include "base/uri_fetch.h"
#include "crypto/hash.h"
#include "feeds/baked_image.h"
#include "feeds/version_order.h"
#include "feeds/xvm_archive.h"
#include "feeds/xvm_package.h"
#include "formats/xen_config.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kFeedLimit = 16 << 20;
constexpr uint64_t kSignatureLimit = 1 << 20;

// "site/vmcast.rss" and "/abs/vmcast.rss" become file:// URIs, so that a
// relative enclosure resolves against them like against any other URI.
std::string normalise_uri(const std::string& uri) {
  if (uri.find("://") != std::string::npos) return uri;
  return "file://" + fs::absolute(uri).lexically_normal().string();
}

std::string without_scheme_slashes(std::string_view uri) { return std::string(uri.substr(uri.find("://") + 3)); }

const std::string kNoVerifyWarning =
    "--no-verify: signatures are NOT checked; anyone who could change the feed or the archive on its way "
    "to you could have. Only checksums are checked.";

// Fetches a small file whole.
Result<std::string> fetch_text(const std::string& uri, const fs::path& scratch, const std::string& name,
                               uint64_t limit) {
  fs::path target = scratch / name;
  FetchOptions options;
  options.max_bytes = limit;
  KILN_TRY(fetch_uri(uri, target, options));
  return read_file(target);
}

Result<FetchedFeed> fetch_and_check_feed(const std::string& uri, const TrustedKeys* keys, const fs::path& scratch,
                                         Reporter& reporter) {
  reporter.step("feed", uri);
  auto text = fetch_text(uri, scratch, "feed", kFeedLimit);
  if (!text) return std::unexpected(std::move(text).error().with_context("fetching the feed"));
  FetchedFeed out;
  if (keys) {
    std::string signature_uri = uri + ".asc";
    auto signature = fetch_text(signature_uri, scratch, "feed.asc", kSignatureLimit);
    if (!signature)
      return fail(ErrorKind::kUntrusted,
                  "the feed is unsigned: cannot get its signature {} ({}); kiln refuses unsigned feeds "
                  "(--no-verify accepts one, without any trust)",
                  signature_uri, signature.error().message);
    KILN_ASSIGN(out.signer, keys->verify_detached(*text, *signature, uri, signature_uri));
  }
  KILN_ASSIGN(out.feed, parse_vmcast_feed(*text, uri));
  reporter.done(out.signer ? "signed by " + out.signer->describe() : "NOT verified");
  return out;
}

Result<TrustedKeys> load_keys(const FeedSource& source) {
  if (source.keyring.empty())
    return fail(ErrorKind::kBadInput,
                "no trusted keys: give --keyring FILE with the publisher's public key (`gpg --export KEYID > FILE`), "
                "or --no-verify to accept the feed without checking who made it");
  return TrustedKeys::load(source.keyring);
}

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

std::string list_names(const std::vector<const VmcastItem*>& items) {
  std::vector<std::string> names;
  for (const VmcastItem* item : items)
    if (std::find(names.begin(), names.end(), item->name()) == names.end()) names.push_back(item->name());
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

Result<const VmcastItem*> choose_item(const VmcastFeed& feed, const std::string& wanted, const std::string& uri) {
  std::vector<const VmcastItem*> items = ordered_items(feed);
  if (items.empty()) return fail(ErrorKind::kBadInput, "{}: the feed has no item with an enclosure", uri);
  if (wanted.empty()) {
    for (const VmcastItem* item : items)
      if (item->name() != items.front()->name())
        return fail(ErrorKind::kBadInput, "{}: the feed offers several images ({}); choose one with --item NAME", uri,
                    list_names(items));
    return items.front();
  }
  for (const VmcastItem* item : items)
    if (item->name() == wanted || item->title == wanted || item->guid == wanted) return item;
  return fail(ErrorKind::kBadInput, "{}: no item '{}' in the feed; it offers: {}", uri, wanted, list_names(items));
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
                "{}: holds {} {}, newer than the {} on offer; refusing a downgrade (--allow-downgrade allows it)",
                dir.string(), name, existing->version, version);
  return {};
}

// Points a pulled domain config at DIR instead of the publisher's output
// directory: every path whose file is one of the image's own files.
Result<std::string> relocate_xen_config(const std::string& text, const std::string& name, const fs::path& dir,
                                        const std::set<std::string>& files) {
  KILN_ASSIGN(DomainSpec spec, parse_xen_config(text, name));
  auto move = [&](std::string& path) {
    std::string file = fs::path(path).filename().string();
    if (!path.empty() && files.count(file)) path = (dir / file).string();
  };
  move(spec.kernel);
  move(spec.ramdisk);
  for (DomainDisk& disk : spec.disks) move(disk.path);
  return write_xen_config(spec);
}

Result<std::string> relocate_libvirt_xml(const std::string& text, const std::string& name, const fs::path& dir,
                                         const std::set<std::string>& files) {
  pugi::xml_document doc;
  if (!doc.load_buffer(text.data(), text.size(), pugi::parse_default | pugi::parse_declaration | pugi::parse_comments))
    return fail(ErrorKind::kUntrusted, "{}: not well-formed XML", name);
  auto move = [&](std::string_view path) -> std::optional<std::string> {
    std::string file = fs::path(path).filename().string();
    if (path.empty() || !files.count(file)) return std::nullopt;
    return (dir / file).string();
  };
  for (pugi::xpath_node found : doc.select_nodes("/domain/devices/disk/source[@file]")) {
    pugi::xml_attribute file = found.node().attribute("file");
    if (auto moved = move(file.value())) file.set_value(moved->c_str());
  }
  for (pugi::xpath_node found : doc.select_nodes("/domain/os/kernel | /domain/os/initrd")) {
    pugi::xml_node node = found.node();
    if (auto moved = move(node.text().get())) node.text().set(moved->c_str());
  }
  std::ostringstream out;
  doc.save(out, "  ", pugi::format_default | pugi::format_no_declaration);
  return out.str();
}

// Rewrites the configs among the unpacked files for DIR and returns the
// updated list.
Result<std::vector<UnpackedFile>> relocate_configs(std::vector<UnpackedFile> files, const fs::path& staging,
                                                   const fs::path& final_dir) {
  std::set<std::string> names;
  for (const UnpackedFile& file : files) names.insert(file.file);
  for (UnpackedFile& file : files) {
    bool xen = file.file.ends_with(".xl.cfg");
    bool libvirt = file.file.ends_with(".libvirt.xml");
    if (!xen && !libvirt) continue;
    fs::path path = staging / file.file;
    KILN_ASSIGN(std::string text, read_file(path));
    KILN_ASSIGN(std::string moved, xen ? relocate_xen_config(text, file.file, final_dir, names)
                                       : relocate_libvirt_xml(text, file.file, final_dir, names));
    KILN_TRY(write_file_atomic(path, moved));
    file.size = moved.size();
    file.sha256 = sha256_hex(moved);
  }
  return files;
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
  return manifest.dump(2) + "\n";
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

Result<FetchedFeed> fetch_feed(const FeedSource& source, const fs::path& scratch, Reporter& reporter) {
  std::optional<TrustedKeys> keys;
  if (source.no_verify) {
    reporter.warn(kNoVerifyWarning);
  } else {
    KILN_ASSIGN(keys, load_keys(source));
  }
  KILN_ASSIGN(TempDir work, TempDir::create(scratch, "feed"));
  return fetch_and_check_feed(normalise_uri(source.uri), keys ? &*keys : nullptr, work.path(), reporter);
}

Result<PullResult> pull(const PullOptions& options, Reporter& reporter) {
  auto started = Clock::now();
  std::optional<TrustedKeys> keys;
  if (options.source.no_verify) {
    reporter.warn(kNoVerifyWarning);
  } else {
    KILN_ASSIGN(keys, load_keys(options.source));
  }
  const TrustedKeys* trusted = keys ? &*keys : nullptr;
  std::error_code ec;
  fs::create_directories(options.download_dir, ec);
  if (ec) return fail_errno("cannot create", options.download_dir.string(), ec.value());

  // 1. The feed and its signature.
  std::string feed_uri = normalise_uri(options.source.uri);
  KILN_ASSIGN(TempDir scratch, TempDir::create(options.download_dir, "feed"));
  KILN_ASSIGN(FetchedFeed fetched, fetch_and_check_feed(feed_uri, trusted, scratch.path(), reporter));

  // 2. The item, and whether it may replace what DIR holds.
  KILN_ASSIGN(const VmcastItem* item, choose_item(fetched.feed, options.item, feed_uri));
  fs::path output = fs::absolute(options.output_dir.empty() ? fs::path("out") / item->name() : options.output_dir)
                        .lexically_normal();
  if (output.filename().empty()) output = output.parent_path();
  KILN_ASSIGN(std::optional<ExistingOutput> existing, existing_output(output));
  KILN_TRY(check_downgrade(existing, item->name(), item->image_version, output, options.allow_downgrade));

  // 3. The enclosure, held to the length and sha256 the signed feed gives.
  const VmcastEnclosure& enclosure = *item->enclosure;
  std::string url = resolve_uri(feed_uri, enclosure.url);
  std::string file_name = fs::path(without_scheme_slashes(url)).filename().string();
  if (!is_safe_member_name(file_name)) file_name = "enclosure.xvm";
  fs::path download = options.download_dir / (sha256_hex(url).substr(0, 16) + "-" + file_name);
  fs::remove(download, ec);  // a complete download is never kept between pulls
  reporter.step("fetch", url);
  FetchOptions fetch;
  if (enclosure.length && *enclosure.length > 0) fetch.max_bytes = *enclosure.length;
  fetch.progress = [&](uint64_t done, uint64_t total) { reporter.progress(done, total); };
  auto fetched_xvm = fetch_uri(url, download, fetch);
  if (!fetched_xvm) {
    Error error = std::move(fetched_xvm).error();
    std::string context = fmt::format("downloading the enclosure of '{}'", item->title);
    if (enclosure.length && error.message.find("larger than") != std::string::npos)
      context += fmt::format(" (the feed's enclosure length is {} bytes)", *enclosure.length);
    return std::unexpected(std::move(error).with_context(context));
  }
  DownloadCleanup cleanup{download};
  if (enclosure.length && fetched_xvm->bytes != *enclosure.length)
    return fail(ErrorKind::kUntrusted, "{}: downloaded {} bytes, but the feed's enclosure length says {}; refusing it",
                url, fetched_xvm->bytes, *enclosure.length);
  KILN_ASSIGN(std::string xvm_sha256, file_digest_hex(download));
  if (!item->sha256.empty() && xvm_sha256 != item->sha256)
    return fail(ErrorKind::kUntrusted, "{}: its sha256 is {}, but the feed says {}; refusing it", url, xvm_sha256,
                item->sha256);
  reporter.done(fmt::format("{}{}", format_size(fetched_xvm->bytes), fetched_xvm->resumed ? " (resumed)" : ""));

  // 4. The signatures inside, then every sum.
  reporter.step("verify", file_name);
  KILN_ASSIGN(XvmArchive archive, XvmArchive::open(download, file_name));
  VerifyOptions verify;
  verify.threads = options.threads;
  verify.progress = [&](uint64_t done, uint64_t total) { reporter.progress(done, total); };
  KILN_ASSIGN(VerifiedXvm verified, verify_xvm(archive, trusted, verify));
  const std::string& version = verified.description.version;
  if (!item->image_version.empty() && version != item->image_version)
    return fail(ErrorKind::kUntrusted, "{}: the feed offers version {}, but its xvm.xml says {}", url,
                item->image_version, version);
  KILN_TRY(check_downgrade(existing, item->name(), version, output, options.allow_downgrade));
  reporter.done(verified.signer ? "signed by " + verified.signer->describe() : "checksums only (NOT verified)");

  // 5. Only now: the image, beside DIR, swapped in when complete.
  reporter.step("unpack", output.string());
  fs::create_directories(output.parent_path(), ec);
  if (ec) return fail_errno("cannot create", output.parent_path().string(), ec.value());
  KILN_ASSIGN(TempDir staging, TempDir::create(output.parent_path(), output.filename().string() + ".pull"));
  KILN_ASSIGN(std::vector<UnpackedFile> files, unpack_xvm(archive, verified, staging.path(), verify));
  KILN_ASSIGN(files, relocate_configs(std::move(files), staging.path(), output));
  KILN_TRY(write_file_atomic(staging.path() / "manifest.json",
                             pulled_manifest(verified.bake_manifest, files, feed_uri, *item, url, xvm_sha256,
                                             verified.signer)));
  KILN_TRY(install_directory(std::move(staging), output));
  reporter.done();

  PullResult result;
  result.name = item->name();
  result.version = version;
  result.output_dir = output;
  result.enclosure_url = url;
  result.downloaded = fetched_xvm->bytes;
  result.resumed = fetched_xvm->resumed;
  result.signer = verified.signer;
  for (const UnpackedFile& file : files) result.files.push_back(file.file);
  result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return result;
}

}  // namespace kiln
