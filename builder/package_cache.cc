#include "builder/package_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/files.h"
#include "base/hash.h"

namespace kiln {
namespace {

std::filesystem::path cached_path(const std::filesystem::path& dir, const std::string& sha256) {
  return dir / (sha256 + ".deb");
}

// A hard link where both are on one filesystem (the files are never
// written in place: apt and dpkg only read and unlink them), else a copy.
Result<> link_or_copy(const std::filesystem::path& from, const std::filesystem::path& to) {
  if (::link(from.c_str(), to.c_str()) == 0) return {};
  if (errno == EEXIST) {
    std::filesystem::remove(to);
    if (::link(from.c_str(), to.c_str()) == 0) return {};
  }
  if (errno != EXDEV && errno != EPERM && errno != EMLINK)
    return fail_errno("cannot link", to.string(), errno);
  KILN_ASSIGN(UniqueFd source, open_file(from, O_RDONLY));
  KILN_ASSIGN(AtomicFile copy, AtomicFile::create(to));
  KILN_TRY(copy_whole_file(source.get(), copy.fd(), from.string()));
  return copy.commit(AtomicFile::Durability::kCache);
}

uint64_t size_of(const std::filesystem::path& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

}  // namespace

std::filesystem::path PackageCache::dir_in(const std::filesystem::path& stage_cache_root) {
  return stage_cache_root / "packages";
}

Result<PackageTransfer> PackageCache::provide(const PackagesIndex& index,
                                              const std::filesystem::path& archives) const {
  PackageTransfer transfer;
  std::error_code ec;
  if (!std::filesystem::exists(dir_)) return transfer;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    std::string name = entry.path().filename().string();
    if (!name.ends_with(".deb")) continue;
    const IndexedPackage* listed = index.find_by_sha256(name.substr(0, name.size() - 4));
    if (!listed) continue;
    KILN_ASSIGN(std::string actual, file_digest_hex(entry.path()));
    if (actual != listed->sha256) {
      std::filesystem::remove(entry.path(), ec);
      ++transfer.refused;
      continue;
    }
    KILN_TRY(link_or_copy(entry.path(), archives / apt_archive_file_name(*listed)));
    ::utimensat(AT_FDCWD, entry.path().c_str(), nullptr, 0);  // its last use, for pruning
    ++transfer.files;
    transfer.bytes += listed->size;
  }
  if (ec) return fail_errno("cannot list", dir_.string(), ec.value());
  return transfer;
}

Result<PackageTransfer> PackageCache::collect(const PackagesIndex& index,
                                              const std::filesystem::path& archives) const {
  PackageTransfer transfer;
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return fail_errno("cannot create", dir_.string(), ec.value());
  for (const auto& entry : std::filesystem::directory_iterator(archives, ec)) {
    if (!entry.is_regular_file()) continue;
    const IndexedPackage* listed = index.find_by_archive_file_name(entry.path().filename().string());
    if (!listed || std::filesystem::exists(cached_path(dir_, listed->sha256))) continue;
    if (size_of(entry.path()) != listed->size) {
      ++transfer.refused;
      continue;
    }
    KILN_ASSIGN(std::string actual, file_digest_hex(entry.path()));
    if (actual != listed->sha256) {
      ++transfer.refused;
      continue;
    }
    // Linked or copied under a temporary name, then renamed: a reader never
    // sees a partial file under a hash.
    std::filesystem::path temp = dir_ / ("." + listed->sha256 + fmt::format(".{}", ::getpid()));
    KILN_TRY(link_or_copy(entry.path(), temp));
    std::filesystem::rename(temp, cached_path(dir_, listed->sha256), ec);
    if (ec) {
      std::error_code ignored;
      std::filesystem::remove(temp, ignored);
      return fail_errno("cannot keep", cached_path(dir_, listed->sha256).string(), ec.value());
    }
    ++transfer.files;
    transfer.bytes += listed->size;
  }
  if (ec) return fail_errno("cannot list", archives.string(), ec.value());
  return transfer;
}

Result<std::vector<CachedPackage>> PackageCache::list() const {
  std::vector<CachedPackage> packages;
  std::error_code ec;
  if (!std::filesystem::exists(dir_)) return packages;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    struct stat st;
    if (!entry.path().filename().string().ends_with(".deb") || ::stat(entry.path().c_str(), &st) != 0) continue;
    packages.push_back({entry.path(), static_cast<uint64_t>(st.st_blocks) * 512, st.st_mtime});
  }
  if (ec) return fail_errno("cannot list", dir_.string(), ec.value());
  return packages;
}

}  // namespace kiln
