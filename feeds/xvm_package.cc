#include "feeds/xvm_package.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/size.h"
#include "base/hash.h"
#include "feeds/gzip.h"
#include "formats/domain/xen_config.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// The signed texts and other small members are read whole; nothing of that
// kind is legitimately larger.
constexpr uint64_t kSmallMemberLimit = 16 << 20;
// Expanded images are written in pieces of this size; pieces of zeros are
// left as holes.
constexpr size_t kSparsePiece = 64 * 1024;

bool is_signed_text_or_signature(std::string_view name) {
  return name == kXvmXmlSignature || name == kManifestTxt || name == kManifestTxtSignature ||
         name == kManifestSha256 || name == kManifestSha256Signature;
}

unsigned thread_count(unsigned wanted) {
  return wanted ? wanted : std::max(1u, std::thread::hardware_concurrency());
}

// Runs tasks 0..count-1 on up to `threads` threads; the first error wins and
// the remaining tasks are not started.
Result<> run_parallel(size_t count, unsigned threads, const std::function<Result<>(size_t)>& task) {
  std::atomic<size_t> next{0};
  std::mutex mutex;
  std::optional<Error> first_error;
  auto worker = [&] {
    while (true) {
      {
        std::lock_guard lock(mutex);
        if (first_error) return;
      }
      size_t index = next++;
      if (index >= count) return;
      if (auto done = task(index); !done) {
        std::lock_guard lock(mutex);
        if (!first_error) first_error = done.error();
      }
    }
  };
  {
    std::vector<std::jthread> pool;
    for (unsigned i = 1; i < std::min<size_t>(threads, count); ++i) pool.emplace_back(worker);
    worker();
  }
  if (first_error) return std::unexpected(std::move(*first_error));
  return {};
}

PackageMember member_from_text(std::string name, const fs::path& source, std::string_view text) {
  return {std::move(name), source, Hasher(HashAlgorithm::kSha1).update(text).hex_digest(), sha256_hex(text)};
}

Result<PackageMember> member_from_file(std::string name, const fs::path& source) {
  KILN_ASSIGN(std::string sha1, file_digest_hex(source, HashAlgorithm::kSha1));
  KILN_ASSIGN(std::string sha256, file_digest_hex(source, HashAlgorithm::kSha256));
  return PackageMember{std::move(name), source, std::move(sha1), std::move(sha256)};
}

// The guest memory the bake's Xen config gives, else the recipe default.
std::string memory_of(const BakedImage& image) {
  for (const BakedArtifact& artifact : image.manifest.artifacts) {
    if (!artifact.file.ends_with(".xl.cfg")) continue;
    auto text = read_file(image.dir / artifact.file);
    if (!text) continue;
    auto spec = parse_xen_config(*text, artifact.file);
    if (spec && spec->memory_mib > 0) return fmt::format("{} MiB", spec->memory_mib);
  }
  return "1024 MiB";
}

std::string variety_of(std::string_view file) {
  if (file.starts_with("vmlinuz")) return "kernel";
  if (file.starts_with("initrd")) return "ramdisk";
  return "system";
}

XvmDescription describe(const BakedImage& image) {
  XvmDescription out;
  std::string detail = fmt::format("Baked by kiln {} ({} layout", KILN_VERSION, image.layout.empty() ? "?" : image.layout);
  if (!image.kernel.empty()) detail += fmt::format(", kernel {}", image.kernel);
  if (image.package_count) detail += fmt::format(", {} packages", image.package_count);
  detail += ")";
  out.names = {image.name, fmt::format("{} {}", image.name, image.version),
               image.description.empty() ? image.name : image.description, detail};
  out.version = image.version;
  XvmVm vm;
  vm.name = image.name;
  vm.names = {image.name, image.name, out.names.longdesc, detail};
  vm.memory_static_min = memory_of(image);
  for (const BakedArtifact& artifact : image.manifest.artifacts) {
    if (is_config_artifact(artifact.file)) continue;
    XvmVdi vdi;
    vdi.name = artifact.file;
    vdi.member = image_member_name(artifact.file);
    vdi.variety = variety_of(artifact.file);
    vdi.compression = "gzip";
    vdi.size = artifact.size;
    vdi.file = artifact.file;
    vdi.label = fmt::format("{} {}", image.name, artifact.file);
    out.vdis.push_back(std::move(vdi));
  }
  // The guest boots a whole disk when there is one, else the bare root
  // filesystem as its first partition (the Xen way).
  if (image.find("disk.raw")) vm.vbds.push_back({"xvda", "disk.raw", "RW"});
  else if (image.find("root.img")) vm.vbds.push_back({"xvda1", "root.img", "RW"});
  out.vms.push_back(std::move(vm));
  return out;
}

// Compresses one image into `target`, hashing what it writes.
Result<PackageMember> compress_image(const fs::path& source, const std::string& member, const fs::path& target,
                                     const PackageBuildOptions& options, Reporter& reporter) {
  KILN_ASSIGN(UniqueFd in, open_file(source, O_RDONLY));
  struct stat st;
  if (::fstat(in.get(), &st) != 0) return fail_errno("stat", source.string(), errno);
  KILN_ASSIGN(UniqueFd out, open_file(target, O_WRONLY | O_CREAT | O_EXCL, 0644));
  Hasher sha1(HashAlgorithm::kSha1);
  Hasher sha256(HashAlgorithm::kSha256);
  GzipOptions gzip;
  gzip.level = options.gzip_level;
  gzip.threads = options.threads;
  gzip.progress = [&](uint64_t done, uint64_t total) { reporter.progress(done, total); };
  auto sink = [&](std::string_view bytes) -> Result<> {
    KILN_TRY(write_all(out.get(), bytes.data(), bytes.size(), target.string()));
    sha1.update(bytes);
    sha256.update(bytes);
    return {};
  };
  KILN_ASSIGN(GzipStats stats, gzip_parallel(in.get(), static_cast<uint64_t>(st.st_size), sink, gzip, source.string()));
  reporter.note(fmt::format("{}: {} -> {}", member, format_size(stats.input_bytes), format_size(stats.output_bytes)));
  return PackageMember{member, target, sha1.hex_digest(), sha256.hex_digest()};
}

std::unexpected<Error> untrusted(const XvmArchive& archive, std::string message) {
  return fail(ErrorKind::kUntrusted, "{}: {}", archive.name(), message);
}

// A member's text that does not parse is the archive's fault: name it.
template <class T>
Result<T> inside(const XvmArchive& archive, Result<T> parsed) {
  if (!parsed) return untrusted(archive, parsed.error().to_string());
  return parsed;
}

// Writes `data` at `offset`, leaving pieces of zeros as holes.
Result<> write_sparse(int fd, std::string_view data, uint64_t offset, const fs::path& path) {
  while (!data.empty()) {
    size_t piece = std::min(data.size(), kSparsePiece);
    bool zero = data[0] == 0 && std::memcmp(data.data(), data.data() + 1, piece - 1) == 0;
    if (!zero) KILN_TRY(pwrite_all(fd, data.data(), piece, offset, path.string()));
    data.remove_prefix(piece);
    offset += piece;
  }
  return {};
}

}  // namespace

std::string image_member_name(std::string_view file) {
  return std::string(file) + (file.ends_with(".img") ? ".gz" : ".img.gz");
}

bool is_config_artifact(std::string_view file) {
  return file.ends_with(".xl.cfg") || file.ends_with(".libvirt.xml");
}

Result<TarWritten> write_xvm_package(const XvmDescription& description, const std::vector<PackageMember>& payload,
                                   const SigningKey& key, const fs::path& staging, const fs::path& target,
                                   int64_t mtime, const std::function<void(uint64_t, uint64_t)>& progress) {
  for (const PackageMember& member : payload)
    if (member.name == kXvmXml || is_signed_text_or_signature(member.name))
      return fail(ErrorKind::kFailed, "package member '{}' would clash with the package's own files", member.name);
  KILN_ASSIGN(std::string xvm_xml, write_xvm_xml(description));
  std::vector<PackageMember> listed = {member_from_text(std::string(kXvmXml), staging / kXvmXml, xvm_xml)};
  listed.insert(listed.end(), payload.begin(), payload.end());
  ChecksumManifest sha1{HashAlgorithm::kSha1, {}};
  ChecksumManifest sha256{HashAlgorithm::kSha256, {}};
  for (const PackageMember& member : listed) {
    sha1.entries.push_back({member.name, member.sha1});
    sha256.entries.push_back({member.name, member.sha256});
  }
  KILN_ASSIGN(std::string manifest_txt, write_checksum_manifest(sha1));
  KILN_ASSIGN(std::string manifest_sha256, write_checksum_manifest(sha256));
  KILN_ASSIGN(std::string xvm_xml_signature, key.sign_detached(xvm_xml));
  KILN_ASSIGN(std::string manifest_txt_signature, key.sign_detached(manifest_txt));
  KILN_ASSIGN(std::string manifest_sha256_signature, key.sign_detached(manifest_sha256));
  std::vector<std::pair<std::string_view, const std::string*>> texts = {
      {kXvmXml, &xvm_xml},
      {kXvmXmlSignature, &xvm_xml_signature},
      {kManifestTxt, &manifest_txt},
      {kManifestTxtSignature, &manifest_txt_signature},
      {kManifestSha256, &manifest_sha256},
      {kManifestSha256Signature, &manifest_sha256_signature}};
  std::vector<TarInput> members;
  for (const auto& [name, text] : texts) {
    KILN_TRY(write_file_atomic(staging / name, *text));
    members.push_back({std::string(name), staging / name});
  }
  for (const PackageMember& member : payload) members.push_back({member.name, member.source});
  return write_tar(target, members, mtime, progress);
}

namespace {

// The bake's manifest.json as packaged: the original bytes when every
// artifact has its sha256, else the same document with the digests publish
// took filled in, so that pull can check every file it unpacks.
Result<PackageMember> packaged_bake_manifest(const BakedImage& image, const std::map<std::string, std::string>& taken,
                                             const fs::path& staging) {
  fs::path original = image.dir / kBakeManifest;
  if (taken.empty()) return member_from_file(std::string(kBakeManifest), original);
  KILN_ASSIGN(std::string text, read_file(original));
  auto json = nlohmann::ordered_json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.contains("artifacts"))
    return fail(ErrorKind::kBadInput, "{}: no longer the manifest publish read", original.string());
  for (auto& artifact : json["artifacts"]) {
    auto digest = taken.find(artifact.value("file", ""));
    if (digest != taken.end()) artifact["sha256"] = digest->second;
  }
  fs::path completed = staging / kBakeManifest;
  KILN_TRY(write_file_atomic(completed, json.dump(2) + "\n"));
  return member_from_file(std::string(kBakeManifest), completed);
}

}  // namespace

Result<TarWritten> build_xvm(const BakedImage& image, const SigningKey& key, const fs::path& staging,
                           const fs::path& target, const PackageBuildOptions& options, Reporter& reporter) {
  std::vector<PackageMember> payload;
  std::map<std::string, std::string> taken;  // the sha256s the bake left to publish
  std::vector<const BakedArtifact*> images;
  for (const BakedArtifact& artifact : image.manifest.artifacts) {
    if (is_config_artifact(artifact.file)) {
      KILN_ASSIGN(PackageMember config, member_from_file(artifact.file, image.dir / artifact.file));
      if (artifact.sha256.empty()) taken[artifact.file] = config.sha256;
      payload.push_back(std::move(config));
    } else {
      images.push_back(&artifact);
    }
  }
  // Small images first, so a reader meets the kernel before the disks.
  std::stable_sort(images.begin(), images.end(),
                   [](const BakedArtifact* a, const BakedArtifact* b) { return a->size < b->size; });
  for (const BakedArtifact* artifact : images) {
    std::string member = image_member_name(artifact->file);
    fs::path source = image.dir / artifact->file;
    // An image the bake did not hash is hashed beside its compression,
    // which keeps every other core busy far longer.
    std::future<Result<std::string>> digest;
    if (artifact->sha256.empty())
      digest = std::async(std::launch::async, [source] { return file_digest_hex(source); });
    Result<PackageMember> compressed = compress_image(source, member, staging / member, options, reporter);
    if (digest.valid()) {
      Result<std::string> sha256 = digest.get();
      if (!sha256) return std::unexpected(std::move(sha256).error());
      taken[artifact->file] = *sha256;
    }
    if (!compressed) return std::unexpected(std::move(compressed).error());
    payload.push_back(std::move(*compressed));
  }
  KILN_ASSIGN(PackageMember manifest, packaged_bake_manifest(image, taken, staging));
  payload.insert(payload.begin(), std::move(manifest));
  return write_xvm_package(describe(image), payload, key, staging, target, options.mtime,
                           [&](uint64_t done, uint64_t total) { reporter.progress(done, total); });
}

namespace {

// An archive with neither of the package's texts is not a damaged package
// but another kind of archive (a XenServer .xva, a plain tarball): input
// kiln does not read, which says what it expected.
Result<> check_layout(const XvmArchive& archive) {
  if (archive.find(kXvmXml) || archive.find(kManifestTxt)) return {};
  std::vector<std::string> names;
  for (const XvmMember& member : archive.members()) {
    if (names.size() == 4) {
      names.push_back(fmt::format("and {} more", archive.members().size() - 4));
      break;
    }
    names.push_back(shown_value(member.name, 40));
  }
  return fail(ErrorKind::kBadInput,
              "{}: not a vmcast package as kiln publishes them: it holds {}; kiln reads .xvm archives with {} and {}, "
              "their signatures and the gzip'd images they list (docs/feeds.md)",
              archive.name(), names.empty() ? "nothing" : fmt::format("{}", fmt::join(names, ", ")), kXvmXml,
              kManifestTxt);
}

}  // namespace

Result<VerifiedXvm> verify_xvm(const XvmArchive& archive, const TrustedKeys* keys, const VerifyOptions& options) {
  KILN_TRY(check_layout(archive));
  auto small = [&](std::string_view name, bool required) -> Result<std::optional<std::string>> {
    const XvmMember* member = archive.find(name);
    if (!member) {
      if (required) return untrusted(archive, fmt::format("the archive has no {}: not a vmcast package", name));
      return std::optional<std::string>();
    }
    KILN_ASSIGN(std::string text, archive.read(*member, kSmallMemberLimit));
    return std::optional<std::string>(std::move(text));
  };
  KILN_ASSIGN(std::optional<std::string> xvm_xml, small(kXvmXml, true));
  KILN_ASSIGN(std::optional<std::string> manifest_txt, small(kManifestTxt, true));
  KILN_ASSIGN(std::optional<std::string> manifest_sha256, small(kManifestSha256, false));
  KILN_ASSIGN(std::optional<std::string> sha256_signature, small(kManifestSha256Signature, false));

  VerifiedXvm out;
  // 1. The signatures, against the trusted keys only.
  if (keys) {
    auto signature = [&](std::string_view name) -> Result<std::string> {
      const XvmMember* member = archive.find(name);
      if (!member)
        return untrusted(archive, fmt::format("the archive is unsigned: it has no {}; kiln refuses unsigned archives "
                                           "(--no-verify accepts them, without any trust)",
                                           name));
      return archive.read(*member, kSmallMemberLimit);
    };
    auto check = [&](std::string_view signature_name, std::string_view data_name,
                     const std::string& data) -> Result<SignatureInfo> {
      KILN_ASSIGN(std::string sig, signature(signature_name));
      auto info = keys->verify_detached(data, sig, data_name, signature_name);
      if (!info) return std::unexpected(std::move(info).error().with_context(archive.name()));
      return info;
    };
    KILN_ASSIGN(out.signer, check(kXvmXmlSignature, kXvmXml, *xvm_xml));
    KILN_TRY(check(kManifestTxtSignature, kManifestTxt, *manifest_txt));
    if (manifest_sha256) KILN_TRY(check(kManifestSha256Signature, kManifestSha256, *manifest_sha256));
  }
  if (sha256_signature && !manifest_sha256)
    return untrusted(archive, fmt::format("the archive has {} but no {}", kManifestSha256Signature, kManifestSha256));

  // 2. What the signed texts say, and that they cover every member.
  KILN_ASSIGN(out.description, inside(archive, parse_xvm_xml(*xvm_xml, kXvmXml)));
  KILN_ASSIGN(ChecksumManifest sha1,
              inside(archive, parse_checksum_manifest(*manifest_txt, HashAlgorithm::kSha1, kManifestTxt)));
  if (manifest_sha256) {
    KILN_ASSIGN(out.sha256,
                inside(archive, parse_checksum_manifest(*manifest_sha256, HashAlgorithm::kSha256, kManifestSha256)));
  }
  for (const XvmVdi& vdi : out.description.vdis)
    if (!archive.find(vdi.member))
      return untrusted(archive, fmt::format("xvm.xml: vdi '{}' points at member '{}', which the archive does not hold",
                                         vdi.name, vdi.member));
  std::vector<const ChecksumManifest*> manifests = {&sha1};
  if (manifest_sha256) manifests.push_back(&out.sha256);
  for (const ChecksumManifest* manifest : manifests) {
    std::string_view manifest_name = manifest == &sha1 ? kManifestTxt : kManifestSha256;
    for (const ManifestEntry& entry : manifest->entries)
      if (!archive.find(entry.name))
        return untrusted(archive, fmt::format("{} lists '{}', which the archive does not hold", manifest_name, entry.name));
    for (const XvmMember& member : archive.members())
      if (!is_signed_text_or_signature(member.name) && !manifest->find(member.name))
        return untrusted(archive, fmt::format("member '{}' is not listed in {}: no signature covers it", member.name,
                                           manifest_name));
  }

  // 3. Every sum, on every core.
  struct Task {
    const XvmMember* member;
    const ChecksumManifest* manifest;
    std::string_view manifest_name;
  };
  std::vector<Task> tasks;
  uint64_t total = 0;
  for (const ChecksumManifest* manifest : manifests)
    for (const ManifestEntry& entry : manifest->entries) {
      const XvmMember* member = archive.find(entry.name);
      tasks.push_back({member, manifest, manifest == &sha1 ? kManifestTxt : kManifestSha256});
      total += member->size;
    }
  // Largest first, so the big images start at once and finish together.
  std::stable_sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) { return a.member->size > b.member->size; });
  std::atomic<uint64_t> hashed{0};
  std::mutex progress_mutex;
  KILN_TRY(run_parallel(tasks.size(), thread_count(options.threads), [&](size_t i) -> Result<> {
    const Task& task = tasks[i];
    Hasher hasher(task.manifest->algorithm);
    KILN_TRY(archive.stream(*task.member, [&](std::string_view bytes) -> Result<> {
      hasher.update(bytes);
      uint64_t done = hashed += bytes.size();
      if (options.progress) {
        std::lock_guard lock(progress_mutex);
        options.progress(done, total);
      }
      return {};
    }));
    std::string digest = hasher.hex_digest();
    if (digest != task.manifest->find(task.member->name)->digest)
      return untrusted(archive, fmt::format("member '{}' does not match its {} sum in {}: the archive is corrupt or "
                                         "was tampered with",
                                         task.member->name, algorithm_name(task.manifest->algorithm),
                                         task.manifest_name));
    return {};
  }));

  if (const XvmMember* member = archive.find(kBakeManifest)) {
    KILN_ASSIGN(out.bake_manifest, archive.read(*member, kSmallMemberLimit));
  }
  return out;
}

Result<std::vector<UnpackedFile>> unpack_xvm(const XvmArchive& archive, const VerifiedXvm& verified,
                                             const fs::path& dir, const VerifyOptions& options) {
  if (verified.bake_manifest.empty())
    return untrusted(archive, "the archive has no manifest.json: it was not published by kiln, and kiln cannot lay it "
                           "out as a bake output");
  auto image = parse_bake_manifest(verified.bake_manifest, "manifest.json");
  if (!image) return untrusted(archive, image.error().to_string());

  // How each artifact travels: as a vdi (gzip) or as a plain member.
  struct Task {
    const BakedArtifact* artifact;
    const XvmMember* member;
    const XvmVdi* vdi;  // null: stored as is
  };
  std::vector<Task> tasks;
  std::set<std::string> used_vdis;
  for (const BakedArtifact& artifact : image->manifest.artifacts) {
    const XvmVdi* vdi = nullptr;
    for (const XvmVdi& candidate : verified.description.vdis)
      if ((candidate.file.empty() ? candidate.member : candidate.file) == artifact.file) vdi = &candidate;
    if (artifact.sha256.empty())
      return untrusted(archive, fmt::format("manifest.json gives no sha256 for '{}', so kiln cannot check it once "
                                         "unpacked; kiln publish fills it in (publish the image again)",
                                         artifact.file));
    const XvmMember* member = archive.find(vdi ? vdi->member : artifact.file);
    if (!member)
      return untrusted(archive, fmt::format("manifest.json lists '{}', which the archive does not carry", artifact.file));
    if (vdi) {
      if (vdi->compression != "gzip")
        return untrusted(archive, fmt::format("xvm.xml: vdi '{}' is not gzip-compressed", vdi->name));
      if (!vdi->size)
        return untrusted(archive, fmt::format("xvm.xml: vdi '{}' declares no size; kiln will not expand gzip data "
                                           "without a limit",
                                           vdi->name));
      if (*vdi->size != artifact.size)
        return untrusted(archive, fmt::format("xvm.xml declares {} bytes for '{}', manifest.json {}", *vdi->size,
                                           artifact.file, artifact.size));
      used_vdis.insert(vdi->name);
    }
    tasks.push_back({&artifact, member, vdi});
  }
  for (const XvmVdi& vdi : verified.description.vdis)
    if (!used_vdis.count(vdi.name))
      return untrusted(archive, fmt::format("xvm.xml describes vdi '{}', which manifest.json does not list", vdi.name));

  std::vector<UnpackedFile> out(tasks.size());
  std::sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) { return a.member->size > b.member->size; });
  uint64_t total = 0;
  for (const Task& task : tasks) total += task.member->size;
  std::atomic<uint64_t> consumed{0};
  std::mutex progress_mutex;
  KILN_TRY(run_parallel(tasks.size(), thread_count(options.threads), [&](size_t i) -> Result<> {
    const Task& task = tasks[i];
    fs::path target = dir / task.artifact->file;
    KILN_ASSIGN(UniqueFd fd, open_file(target, O_WRONLY | O_CREAT | O_EXCL, 0644));
    Hasher sha256;
    uint64_t written = 0;
    auto to_file = [&](std::string_view bytes) -> Result<> {
      sha256.update(bytes);
      KILN_TRY(write_sparse(fd.get(), bytes, written, target));
      written += bytes.size();
      return {};
    };
    auto count = [&](std::string_view bytes) {
      uint64_t done = consumed += bytes.size();
      if (options.progress) {
        std::lock_guard lock(progress_mutex);
        options.progress(done, total);
      }
    };
    if (task.vdi) {
      GzipExpander expander(*task.vdi->size, fmt::format("{}: member '{}'", archive.name(), task.member->name));
      KILN_TRY(archive.stream(*task.member, [&](std::string_view bytes) -> Result<> {
        count(bytes);
        return expander.update(bytes, to_file);
      }));
      KILN_ASSIGN(uint64_t size, expander.finish());
      if (size != *task.vdi->size)
        return untrusted(archive, fmt::format("member '{}' expands to {} bytes, not the {} xvm.xml declares",
                                           task.member->name, size, *task.vdi->size));
    } else {
      KILN_TRY(archive.stream(*task.member, [&](std::string_view bytes) -> Result<> {
        count(bytes);
        return to_file(bytes);
      }));
    }
    if (::ftruncate(fd.get(), static_cast<off_t>(written)) != 0) return fail_errno("truncate", target.string(), errno);
    if (::fsync(fd.get()) != 0) return fail_errno("fsync", target.string(), errno);
    std::string digest = sha256.hex_digest();
    if (written != task.artifact->size || digest != task.artifact->sha256)
      return untrusted(archive, fmt::format("'{}' unpacked to {} bytes with sha256 {}, but manifest.json says {} bytes "
                                         "with sha256 {}",
                                         task.artifact->file, written, digest, task.artifact->size,
                                         task.artifact->sha256));
    out[i] = {task.artifact->file, written, digest};
    return {};
  }));
  return out;
}

}  // namespace kiln
