// PackageCache: the .deb files bakes have downloaded, kept for every later
// bake in the stage cache's packages/ directory, each named by its SHA256.
// A bake hands the bootstrap tool the cached files that the suite's signed
// Packages index lists (checking each file's hash again as it does), and
// keeps what the tool downloaded that the index lists. So a bake adding one
// package to a cached set downloads one package, and the cache never serves
// a file the archive did not sign: apt's own chain (InRelease signature,
// then the Packages file's hash) is what the hashes come from.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "formats/tree/packages_index.h"

namespace kiln {

struct PackageTransfer {
  size_t files = 0;
  uint64_t bytes = 0;
  size_t refused = 0;  // files whose size or content is not what the index (or their cached name) says
};

struct CachedPackage {
  std::filesystem::path path;
  uint64_t size_bytes = 0;
  int64_t last_used = 0;  // unix seconds
};

class PackageCache {
 public:
  // The package cache that belongs to a stage cache.
  static std::filesystem::path dir_in(const std::filesystem::path& stage_cache_root);

  explicit PackageCache(std::filesystem::path dir) : dir_(std::move(dir)) {}
  const std::filesystem::path& dir() const { return dir_; }

  // Puts into `archives` (apt's /var/cache/apt/archives of the rootfs being
  // built) every cached file the index lists, under the name apt looks for,
  // linked where it can be, else copied. A cached file whose content no
  // longer hashes to its name is removed from the cache, not served.
  Result<PackageTransfer> provide(const PackagesIndex& index, const std::filesystem::path& archives) const;
  // Keeps every .deb in `archives` that the index lists (by apt's file
  // name, then by content hash) and the cache lacks.
  Result<PackageTransfer> collect(const PackagesIndex& index, const std::filesystem::path& archives) const;

  Result<std::vector<CachedPackage>> list() const;

 private:
  std::filesystem::path dir_;
};

}  // namespace kiln
