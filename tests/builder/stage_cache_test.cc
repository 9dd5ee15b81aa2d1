// The stage cache: entries appear whole or not at all, and prune keeps the
// recently used ones.
#include "builder/stage_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "base/stale_temps.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using testing::ScratchDir;

CacheEntry add(const StageCache& cache, const std::string& key, const std::string& content) {
  auto scratch = cache.begin();
  EXPECT_TRUE(scratch);
  testing::write_text(scratch->path() / "rootfs.tar", content);
  auto entry = cache.commit(std::move(*scratch), key, "bootstrap", "test " + key);
  EXPECT_TRUE(entry) << entry.error().to_string();
  return *entry;
}

void age(const CacheEntry& entry, int64_t seconds) {
  struct timespec times[2];
  times[0].tv_sec = times[1].tv_sec = std::time(nullptr) - seconds;
  times[0].tv_nsec = times[1].tv_nsec = 0;
  ::utimensat(AT_FDCWD, (entry.dir / "meta.json").c_str(), times, 0);
}

TEST(StageCache, CommittedEntryIsFoundByKey) {
  ScratchDir dir;
  StageCache cache(dir.path());
  EXPECT_FALSE(cache.lookup("abc"));
  add(cache, "abc", "tar bytes");
  auto entry = cache.lookup("abc");
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->stage, "bootstrap");
  EXPECT_EQ(entry->description, "test abc");
  EXPECT_EQ(testing::read_text(entry->dir / "rootfs.tar"), "tar bytes");
}

TEST(StageCache, AbandonedScratchLeavesNoEntry) {
  ScratchDir dir;
  StageCache cache(dir.path());
  {
    auto scratch = cache.begin();
    ASSERT_TRUE(scratch);
    testing::write_text(scratch->path() / "rootfs.tar", "half");
  }
  EXPECT_TRUE(cache.list()->empty());
  EXPECT_TRUE(testing::list_tree(dir.path() / "tmp").empty());
}

TEST(StageCache, ListShowsMostRecentlyUsedFirst) {
  ScratchDir dir;
  StageCache cache(dir.path());
  age(add(cache, "old", "1"), 1000);
  age(add(cache, "new", "2"), 100);
  auto list = cache.list();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].key, "new");
  EXPECT_EQ((*list)[1].key, "old");
  cache.lookup("old");  // a use moves it to the front
  EXPECT_EQ((*cache.list())[0].key, "old");
}

TEST(StageCache, PruneRemovesUnusedEntriesAndLeftovers) {
  ScratchDir dir;
  StageCache cache(dir.path());
  age(add(cache, "stale", "1"), 40 * 86400);
  add(cache, "fresh", "2");
  testing::write_text(dir / "tmp/.stage-dead/rootfs.tar", "killed bake");
  PruneOptions options;
  options.unused_for = std::chrono::seconds(30 * 86400);
  auto result = cache.prune(options);
  ASSERT_TRUE(result);
  ASSERT_EQ(result->removed.size(), 1u);
  EXPECT_EQ(result->removed[0].key, "stale");
  EXPECT_TRUE(cache.lookup("fresh"));
  EXPECT_FALSE(cache.lookup("stale"));
  EXPECT_TRUE(testing::list_tree(dir.path() / "tmp").empty());
}

TEST(StageCache, BeginRemovesTheScratchOfAKilledBakeOnly) {
  ScratchDir dir;
  StageCache cache(dir.path());
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  std::string dead = ".stage-" + std::to_string(child) + ".1-Zq3xYw";
  std::string live = ".stage-" + process_tag() + "-Ab12Cd";
  testing::write_text(dir / "tmp" / dead / "rootfs.tar", "killed bake");
  testing::write_text(dir / "tmp" / live / "rootfs.tar", "running bake");
  auto scratch = cache.begin();
  ASSERT_TRUE(scratch) << scratch.error().to_string();
  EXPECT_FALSE(std::filesystem::exists(dir / "tmp" / dead));
  EXPECT_TRUE(std::filesystem::exists(dir / "tmp" / live));
  EXPECT_EQ(scratch->path().parent_path(), dir / "tmp");
}

TEST(StageCache, PruneToASizeKeepsTheMostRecent) {
  ScratchDir dir;
  StageCache cache(dir.path());
  age(add(cache, "a", std::string(64 * 1024, 'a')), 300);
  age(add(cache, "b", std::string(64 * 1024, 'b')), 200);
  add(cache, "c", std::string(64 * 1024, 'c'));
  PruneOptions options;
  options.max_size_bytes = 150 * 1024;
  auto result = cache.prune(options);
  ASSERT_TRUE(result);
  EXPECT_TRUE(cache.lookup("c"));
  EXPECT_TRUE(cache.lookup("b"));
  EXPECT_FALSE(cache.lookup("a"));
}

TEST(StageCache, PruneAllEmptiesTheCache) {
  ScratchDir dir;
  StageCache cache(dir.path());
  add(cache, "a", "1");
  add(cache, "b", "2");
  PruneOptions options;
  options.all = true;
  ASSERT_TRUE(cache.prune(options));
  EXPECT_TRUE(cache.list()->empty());
}

TEST(CacheLock, PruneRefusesWhileABakeHoldsTheCache) {
  ScratchDir dir;
  StageCache cache(dir.path());
  auto bake = CacheLock::shared(cache);
  ASSERT_TRUE(bake);
  auto prune = CacheLock::exclusive(cache);
  ASSERT_FALSE(prune);
  EXPECT_NE(prune.error().message.find("in use by a running bake"), std::string::npos);
}

}  // namespace
}  // namespace kiln
