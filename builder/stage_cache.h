// StageCache: a content-addressed store of finished pipeline stages under
// ~/.cache/kiln (or $KILN_CACHE, or --cache). An entry is a directory named
// by the stage's key, a hash of everything that stage reads, so an entry is
// either exactly right for a bake or never looked at. Entries are built in a
// temporary directory and renamed into place, so a crash or Ctrl-C never
// leaves a partial entry under a key. Beside the entries, packages/ holds
// the .deb files bakes downloaded (PackageCache); prune treats each of them
// as an entry of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/files.h"

namespace kiln {

struct CacheEntry {
  std::string key;
  std::string stage;        // "bootstrap", "customize", "download"
  std::string description;  // what the stage did, for `kiln cache list`
  uint64_t size_bytes = 0;
  int64_t created = 0;    // unix seconds
  int64_t last_used = 0;  // unix seconds
  std::filesystem::path dir;
};

struct PruneOptions {
  bool all = false;
  // Remove entries unused for longer than this.
  std::optional<std::chrono::seconds> unused_for;
  // Then remove least recently used entries until the cache is this small.
  std::optional<uint64_t> max_size_bytes;
};

struct PruneResult {
  std::vector<CacheEntry> removed;
  size_t removed_packages = 0;  // .deb files of the package cache
  uint64_t freed_bytes = 0;
};

class StageCache {
 public:
  // $KILN_CACHE, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln.
  static std::filesystem::path default_root();

  explicit StageCache(std::filesystem::path root) : root_(std::move(root)) {}
  const std::filesystem::path& root() const { return root_; }

  // The entry for `key`, marking it used; nullopt when absent.
  std::optional<CacheEntry> lookup(const std::string& key) const;
  // A scratch directory inside the cache (same filesystem, so commit is a rename).
  Result<TempDir> begin() const;
  // Moves a finished scratch directory into place under `key`.
  Result<CacheEntry> commit(TempDir scratch, const std::string& key, const std::string& stage,
                            const std::string& description) const;

  Result<std::vector<CacheEntry>> list() const;
  Result<PruneResult> prune(const PruneOptions& options) const;

 private:
  std::filesystem::path entry_dir(const std::string& key) const;
  std::filesystem::path root_;
};

// Holds a shared lock on the cache while a bake uses it; prune takes the
// lock exclusively so it never removes an entry under a running bake.
class CacheLock {
 public:
  static Result<CacheLock> shared(const StageCache& cache);
  static Result<CacheLock> exclusive(const StageCache& cache);

 private:
  explicit CacheLock(UniqueFd fd) : fd_(std::move(fd)) {}
  static Result<CacheLock> acquire(const StageCache& cache, int operation);
  UniqueFd fd_;
};

}  // namespace kiln
