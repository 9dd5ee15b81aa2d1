#include "builder/stage_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

#include <nlohmann/json.hpp>

#include "base/interrupt.h"
#include "base/stale_temps.h"
#include "builder/package_cache.h"

namespace kiln {
namespace {

constexpr const char* kMetaFile = "meta.json";

int64_t now_seconds() { return static_cast<int64_t>(std::time(nullptr)); }

uint64_t tree_size(const std::filesystem::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

std::optional<CacheEntry> read_entry(const std::filesystem::path& dir) {
  auto text = read_file(dir / kMetaFile);
  if (!text) return std::nullopt;
  auto meta = nlohmann::json::parse(*text, nullptr, false);
  if (meta.is_discarded() || !meta.is_object()) return std::nullopt;
  CacheEntry entry;
  entry.key = dir.filename().string();
  entry.stage = meta.value("stage", "");
  entry.description = meta.value("description", "");
  entry.size_bytes = meta.value("size_bytes", uint64_t{0});
  entry.created = meta.value("created", int64_t{0});
  struct stat st;
  entry.last_used = ::stat((dir / kMetaFile).c_str(), &st) == 0 ? st.st_mtime : entry.created;
  entry.dir = dir;
  return entry;
}

}  // namespace

std::filesystem::path StageCache::default_root() {
  if (const char* explicit_root = std::getenv("KILN_CACHE"); explicit_root && *explicit_root)
    return explicit_root;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return std::filesystem::path(xdg) / "kiln";
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home && *home ? home : "/root") / ".cache" / "kiln";
}

std::filesystem::path StageCache::entry_dir(const std::string& key) const {
  return root_ / "entries" / key;
}

std::optional<CacheEntry> StageCache::lookup(const std::string& key) const {
  auto entry = read_entry(entry_dir(key));
  if (!entry) return std::nullopt;
  // The meta file's mtime records the last use, for LRU pruning.
  ::utimensat(AT_FDCWD, (entry->dir / kMetaFile).c_str(), nullptr, 0);
  entry->last_used = now_seconds();
  return entry;
}

Result<TempDir> StageCache::begin() const {
  // A killed bake's scratch would stay forever: the next stage takes it away.
  remove_stale_temp_dirs(root_ / "tmp", "stage");
  return create_tagged_temp_dir(root_ / "tmp", "stage");
}

Result<CacheEntry> StageCache::commit(TempDir scratch, const std::string& key,
                                      const std::string& stage,
                                      const std::string& description) const {
  CacheEntry entry;
  entry.key = key;
  entry.stage = stage;
  entry.description = description;
  entry.size_bytes = tree_size(scratch.path());
  entry.created = now_seconds();
  entry.last_used = entry.created;
  nlohmann::json meta = {{"stage", stage},
                         {"description", description},
                         {"size_bytes", entry.size_bytes},
                         {"created", entry.created}};
  KILN_TRY(write_file_atomic(scratch.path() / kMetaFile, meta.dump(2) + "\n"));
  std::error_code ec;
  std::filesystem::create_directories(root_ / "entries", ec);
  entry.dir = entry_dir(key);
  if (std::filesystem::exists(entry.dir / kMetaFile)) return entry;  // another bake won the race
  KILN_TRY(scratch.commit(entry.dir));
  return entry;
}

Result<std::vector<CacheEntry>> StageCache::list() const {
  std::vector<CacheEntry> entries;
  std::error_code ec;
  std::filesystem::path dir = root_ / "entries";
  if (!std::filesystem::exists(dir)) return entries;
  for (const auto& item : std::filesystem::directory_iterator(dir, ec)) {
    if (auto entry = read_entry(item.path())) entries.push_back(std::move(*entry));
  }
  if (ec) return fail_errno("cannot list", dir.string(), ec.value());
  std::sort(entries.begin(), entries.end(),
            [](const CacheEntry& a, const CacheEntry& b) { return a.last_used > b.last_used; });
  return entries;
}

Result<PruneResult> StageCache::prune(const PruneOptions& options) const {
  // Stage entries and cached packages, most recently used first, weighed together.
  struct Item {
    int64_t last_used;
    uint64_t size_bytes;
    std::optional<CacheEntry> entry;  // else a cached package
    std::filesystem::path path;
  };
  std::vector<Item> items;
  KILN_ASSIGN(auto entries, list());
  for (CacheEntry& entry : entries) items.push_back({entry.last_used, entry.size_bytes, entry, entry.dir});
  KILN_ASSIGN(auto packages, PackageCache(PackageCache::dir_in(root_)).list());
  for (const CachedPackage& package : packages)
    items.push_back({package.last_used, package.size_bytes, std::nullopt, package.path});
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.last_used > b.last_used; });

  PruneResult result;
  int64_t now = now_seconds();
  uint64_t kept_size = 0;
  for (const Item& item : items) {
    bool stale = options.unused_for && now - item.last_used > options.unused_for->count();
    bool over = options.max_size_bytes && kept_size + item.size_bytes > *options.max_size_bytes;
    if (!options.all && !stale && !over) {
      kept_size += item.size_bytes;
      continue;
    }
    KILN_TRY(remove_tree(item.path));
    result.freed_bytes += item.size_bytes;
    if (item.entry) {
      result.removed.push_back(*item.entry);
    } else {
      ++result.removed_packages;
    }
  }
  // Scratch directories and files of bakes that died; no bake runs (we hold the lock).
  std::error_code ec;
  for (const std::filesystem::path& dir : {root_ / "tmp", PackageCache::dir_in(root_)}) {
    if (!std::filesystem::exists(dir)) continue;
    for (const auto& item : std::filesystem::directory_iterator(dir, ec)) {
      if (dir != root_ / "tmp" && !item.path().filename().string().starts_with(".")) continue;
      result.freed_bytes += tree_size(item.path());
      KILN_TRY(remove_tree(item.path()));
    }
  }
  return result;
}

// A bake waits for a running prune; a prune refuses to wait for bakes.
Result<CacheLock> CacheLock::acquire(const StageCache& cache, int operation) {
  std::error_code ec;
  std::filesystem::create_directories(cache.root(), ec);
  if (ec) return fail_errno("cannot create cache directory", cache.root().string(), ec.value());
  KILN_ASSIGN(UniqueFd fd, open_file(cache.root() / "lock", O_RDWR | O_CREAT, 0644));
  while (::flock(fd.get(), operation) != 0) {
    if (errno == EINTR) {
      KILN_TRY(check_interrupted());
      continue;
    }
    if (errno != EWOULDBLOCK) return fail_errno("cannot lock", (cache.root() / "lock").string(), errno);
    return fail(ErrorKind::kFailed,
                "{}: the cache is in use by a running bake; prune again when it has finished",
                cache.root().string());
  }
  return CacheLock(std::move(fd));
}

Result<CacheLock> CacheLock::shared(const StageCache& cache) {
  return acquire(cache, LOCK_SH);
}

Result<CacheLock> CacheLock::exclusive(const StageCache& cache) {
  return acquire(cache, LOCK_EX | LOCK_NB);
}

}  // namespace kiln
