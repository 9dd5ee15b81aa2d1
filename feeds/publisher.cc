#include "feeds/publisher.h"

#include <sys/utsname.h>

#include <chrono>
#include <ctime>

#include "base/architecture.h"
#include "base/files.h"
#include "base/size.h"
#include "base/stale_temps.h"
#include "feeds/baked_image.h"
#include "feeds/virt_builder_index.h"
#include "feeds/vmcast_feed.h"
#include "feeds/xvm_package.h"
#include "feeds/xz_compress.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// virt-builder's names for Debian's architectures: the kernel's.
std::string virt_builder_arch(std::string_view dpkg) {
  if (const Architecture* arch = find_architecture(dpkg)) return std::string(arch->uname);
  if (dpkg == "ppc64el") return "ppc64le";
  if (!dpkg.empty()) return std::string(dpkg);  // s390x, riscv64... are spelled alike
  struct utsname host;
  ::uname(&host);
  return host.machine;
}

// Debian's base-files carries the release as its major version ("12.4+deb12u5").
std::string guess_osinfo(const BakedImage& image) {
  const std::string& version = image.base_files_version;
  if (version.empty() || version.find("ubuntu") != std::string::npos) return "";
  size_t digits = version.find_first_not_of("0123456789");
  if (digits == 0) return "";
  return "debian" + version.substr(0, digits);
}

// Reads a site file kiln keeps up to date, if it exists.
Result<std::optional<std::string>> read_if_present(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<std::string>();
  KILN_ASSIGN(std::string text, read_file(path));
  return std::optional<std::string>(std::move(text));
}

std::string item_description(const BakedImage& image, const std::string& sha256) {
  std::string out = image.description.empty() ? image.name : image.description;
  out += fmt::format("\n\nVersion {} of {}, baked by kiln {}", image.version, image.name, KILN_VERSION);
  if (!image.layout.empty()) out += fmt::format(", {} layout", image.layout);
  if (!image.kernel.empty()) out += fmt::format(", kernel {}", image.kernel);
  if (image.package_count) out += fmt::format(", {} packages", image.package_count);
  out += fmt::format(".\nArchive sha256: {}\nPull it with: kiln pull FEED --keyring KEYS --item {}", sha256, image.name);
  return out;
}

// The virt-builder image and the index section describing it, built in
// `staging`; committed later with everything else.
struct VirtBuilderOutput {
  std::string file;  // the .xz file's name in the site
  fs::path staged;
  std::string index;
  std::string index_asc;
  std::string superseded;  // an older image file no section refers to any more
};

Result<VirtBuilderOutput> prepare_virt_builder(const BakedImage& image, const PublishOptions& options,
                                               const SigningKey& key, const fs::path& staging,
                                               std::optional<VirtBuilderIndex> index, const std::string& xvm_url,
                                               Reporter& reporter) {
  const BakedArtifact* disk = image.find("disk.raw");
  if (!disk) disk = image.find("root.img");
  if (!disk)
    return fail(ErrorKind::kBadInput, "{}: has neither disk.raw nor root.img for virt-builder; publish with "
                                      "--no-virt-builder",
                image.dir.string());
  VirtBuilderOutput out;
  out.file = fmt::format("{}-{}{}.xz", image.name, image.version, disk->file == "disk.raw" ? ".raw" : "-root.img");
  out.staged = staging / out.file;
  XzOptions xz;
  xz.level = options.xz_level;
  xz.threads = options.threads;
  xz.progress = [&](uint64_t done, uint64_t total) { reporter.progress(done, total); };
  KILN_ASSIGN(XzResult compressed, xz_compress_file(image.dir / disk->file, out.staged, xz));
  reporter.note(fmt::format("{}: {} -> {}", out.file, format_size(disk->size), format_size(compressed.compressed_size)));

  VirtBuilderIndex current = index ? std::move(*index) : VirtBuilderIndex{};
  int revision = 1;
  if (IndexSection* previous = current.find(image.name)) {
    const std::string* old_revision = previous->get("revision");
    const std::string* old_checksum = previous->get("checksum[sha512]");
    int old = old_revision ? std::atoi(old_revision->c_str()) : 1;
    revision = old_checksum && *old_checksum == compressed.sha512 ? std::max(old, 1) : std::max(old, 0) + 1;
    if (const std::string* old_file = previous->get("file"); old_file && *old_file != out.file)
      out.superseded = *old_file;
  }
  IndexSection section{image.name, {}};
  section.set("name", image.description.empty() ? image.name : image.description);
  std::string osinfo = options.osinfo.empty() ? guess_osinfo(image) : options.osinfo;
  if (!osinfo.empty()) section.set("osinfo", osinfo);
  section.set("arch", virt_builder_arch(image.dpkg_architecture));
  section.set("file", out.file);
  section.set("checksum[sha512]", compressed.sha512);
  section.set("format", "raw");
  section.set("size", std::to_string(disk->size));
  section.set("compressed_size", std::to_string(compressed.compressed_size));
  section.set("revision", std::to_string(revision));
  if (disk->file == "disk.raw" && image.root_partition)
    section.set("expand", fmt::format("/dev/sda{}", *image.root_partition));
  std::string notes = image.description.empty() ? image.name : image.description;
  notes += fmt::format("\n\nVersion {}, baked by kiln {}", image.version, KILN_VERSION);
  if (!image.kernel.empty()) notes += fmt::format(", kernel {}", image.kernel);
  if (image.package_count) notes += fmt::format(", {} packages", image.package_count);
  notes += fmt::format(".\nAlso published as a signed vmcast archive: {}", xvm_url);
  section.set("notes", notes);
  current.upsert(std::move(section));
  if (!out.superseded.empty()) {
    for (const IndexSection& other : current.sections)
      if (const std::string* file = other.get("file"); file && *file == out.superseded) out.superseded.clear();
    if (!is_safe_member_name(out.superseded) || out.superseded.find('/') != std::string::npos) out.superseded.clear();
  }
  auto index_text = write_virt_builder_index(current);
  if (!index_text)
    return std::unexpected(std::move(index_text).error().with_context("the virt-builder index (--no-virt-builder skips it)"));
  out.index = std::move(*index_text);
  KILN_ASSIGN(out.index_asc, key.clearsign(out.index));
  return out;
}

Result<> rename_into(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return fail_errno("cannot rename into place", to.string(), errno);
  return {};
}

}  // namespace

std::string join_url(std::string_view base, std::string_view file) {
  std::string out(base);
  while (!out.empty() && out.back() == '/') out.pop_back();
  return out + "/" + std::string(file);
}

Result<PublishResult> publish(const PublishOptions& options, Reporter& reporter) {
  auto started = Clock::now();
  if (options.base_url.empty())
    return fail(ErrorKind::kBadInput, "no base URL: give --base-url, the URL at which the site directory is served");
  reporter.step("read", options.image_dir.string());
  KILN_ASSIGN(BakedImage image, read_baked_image(options.image_dir));
  KILN_ASSIGN(SigningKey key, SigningKey::open(options.signing));
  const fs::path& site = options.site_dir;
  std::error_code ec;
  fs::create_directories(site, ec);
  if (ec) return fail_errno("cannot create", site.string(), ec.value());

  // The site's current feed and index are read first: a damaged one stops
  // the publish before any work, rather than being overwritten.
  fs::path feed_path = site / kFeedFile;
  KILN_ASSIGN(std::optional<std::string> feed_text, read_if_present(feed_path));
  std::optional<VmcastFeedDocument> feed;
  if (feed_text) {
    auto parsed = VmcastFeedDocument::parse(*feed_text, feed_path.string());
    if (!parsed) return std::unexpected(std::move(parsed).error().with_context("the site's feed (fix or remove it)"));
    feed.emplace(std::move(*parsed));
  }
  fs::path index_path = site / kIndexFile;
  std::optional<VirtBuilderIndex> index;
  if (options.virt_builder) {
    KILN_ASSIGN(std::optional<std::string> index_text, read_if_present(index_path));
    if (index_text) {
      auto parsed = parse_virt_builder_index(*index_text, index_path.string());
      if (!parsed)
        return std::unexpected(std::move(parsed).error().with_context("the site's virt-builder index (fix or remove it)"));
      index = std::move(*parsed);
    }
  }
  reporter.done(fmt::format("{} {}, signing key {}", image.name, image.version, key.fingerprint()));

  if (size_t removed = remove_stale_temp_dirs(site, "publish"))
    reporter.note(fmt::format("removed {} staging director{} of killed publishes", removed, removed == 1 ? "y" : "ies"));
  KILN_ASSIGN(TempDir staging, create_tagged_temp_dir(site, "publish"));
  std::string stem = image.name + "-" + image.version;
  std::string xvm_name = stem + ".xvm";
  std::string xvm_url = join_url(options.base_url, xvm_name);
  fs::path staged_xvm = staging.path() / xvm_name;

  reporter.step("package", xvm_name);
  TarWritten xvm;
  {
    KILN_ASSIGN(TempDir package, TempDir::create(staging.path(), "package"));
    PackageBuildOptions build;
    build.gzip_level = options.gzip_level;
    build.threads = options.threads;
    build.mtime = image.build_timestamp;
    KILN_ASSIGN(xvm, build_xvm(image, key, package.path(), staged_xvm, build, reporter));
  }
  reporter.done(fmt::format("{}, sha256 {}", format_size(xvm.size), xvm.sha256.substr(0, 16)));

  std::optional<VirtBuilderOutput> builder;
  if (options.virt_builder) {
    reporter.step("virt-builder", "xz image and clearsigned index");
    KILN_ASSIGN(builder, prepare_virt_builder(image, options, key, staging.path(), std::move(index), xvm_url, reporter));
    reporter.done(builder->file);
  }

  reporter.step("feed", feed_path.string());
  int64_t date = options.date ? *options.date : static_cast<int64_t>(std::time(nullptr));
  if (!feed) {
    feed.emplace(VmcastFeedDocument::create(
        {options.channel_title.empty() ? "kiln images" : options.channel_title,
         options.channel_link.empty() ? options.base_url : options.channel_link,
         options.channel_description.empty() ? "Signed VM images (xvm archives), published by kiln"
                                             : options.channel_description,
         options.language.empty() ? "en" : options.language}));
  }
  feed->update_channel({options.channel_title, options.channel_link, options.channel_description, options.language},
                       rfc822_date(date));
  VmcastItem item;
  item.title = fmt::format("{} {}", image.name, image.version);
  item.link = options.channel_link.empty() ? options.base_url : options.channel_link;
  item.description = item_description(image, xvm.sha256);
  item.pub_date = rfc822_date(date);
  item.guid = xvm_url;
  item.enclosure = VmcastEnclosure{xvm_url, xvm.size, "application/octet-stream"};
  item.image_name = image.name;
  item.image_version = image.version;
  item.sha256 = xvm.sha256;
  feed->upsert_item(item);
  std::string valid_until = rfc822_date(static_cast<int64_t>(std::time(nullptr)) + options.valid_for.count());
  feed->set_valid_until(valid_until);
  std::string feed_out = feed->to_string();
  KILN_ASSIGN(std::string feed_signature, key.sign_detached(feed_out));

  // Everything is ready: put it in place, feed last.
  KILN_TRY(rename_into(staged_xvm, site / xvm_name));
  if (builder) {
    KILN_TRY(rename_into(builder->staged, site / builder->file));
    KILN_TRY(write_file_atomic(index_path, builder->index));
    KILN_TRY(write_file_atomic(site / (std::string(kIndexFile) + ".asc"), builder->index_asc));
  }
  KILN_TRY(write_file_atomic(feed_path, feed_out));
  KILN_TRY(write_file_atomic(site / (std::string(kFeedFile) + ".asc"), feed_signature));
  KILN_TRY(fsync_directory(site));
  if (builder && !builder->superseded.empty()) fs::remove(site / builder->superseded, ec);
  reporter.done();

  PublishResult result;
  result.name = image.name;
  result.version = image.version;
  result.xvm = site / xvm_name;
  result.xvm_size = xvm.size;
  result.xvm_sha256 = xvm.sha256;
  result.enclosure_url = xvm_url;
  result.feed = feed_path;
  if (builder) result.index = index_path;
  result.signer = key.fingerprint();
  result.valid_until = valid_until;
  result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return result;
}

}  // namespace kiln
