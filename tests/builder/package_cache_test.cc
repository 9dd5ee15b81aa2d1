// The package cache serves and keeps only files whose content hashes to
// what the signed index lists, under the names apt looks for.
#include "builder/package_cache.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "base/hash.h"
#include "builder/stage_cache.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using testing::ScratchDir;

std::string paragraph(const std::string& name, const std::string& version, const std::string& content) {
  return fmt::format("Package: {}\nVersion: {}\nArchitecture: amd64\nSize: {}\nSHA256: {}\n\n", name, version,
                     content.size(), sha256_hex(content));
}

class PackageCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(archives_);
    index_.add(paragraph("hello", "2.10-3", "hello deb") + paragraph("tree", "2.1.0-1", "tree deb") +
               paragraph("openssh-server", "1:9.2p1-2", "sshd deb"));
  }
  ScratchDir dir_;
  std::filesystem::path archives_ = dir_ / "rootfs/var/cache/apt/archives";
  PackageCache cache_{dir_ / "cache/packages"};
  PackagesIndex index_;
};

TEST_F(PackageCacheTest, KeepsWhatAptFetchedThatTheIndexLists) {
  testing::write_text(archives_ / "hello_2.10-3_amd64.deb", "hello deb");
  testing::write_text(archives_ / "openssh-server_1%3a9.2p1-2_amd64.deb", "sshd deb");
  testing::write_text(archives_ / "stray_1_amd64.deb", "not in the index");
  auto kept = cache_.collect(index_, archives_);
  ASSERT_TRUE(kept) << kept.error().to_string();
  EXPECT_EQ(kept->files, 2u);
  EXPECT_EQ(testing::read_text(cache_.dir() / (sha256_hex("hello deb") + ".deb")), "hello deb");
  EXPECT_EQ(cache_.list()->size(), 2u);
  // Kept once: a second collect finds nothing new.
  EXPECT_EQ(cache_.collect(index_, archives_)->files, 0u);
}

TEST_F(PackageCacheTest, RefusesToKeepAFileWhoseContentTheIndexDoesNotList) {
  testing::write_text(archives_ / "hello_2.10-3_amd64.deb", "hellO deb");  // same size, other bytes
  testing::write_text(archives_ / "tree_2.1.0-1_amd64.deb", "truncated");
  auto kept = cache_.collect(index_, archives_);
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->files, 0u);
  EXPECT_EQ(kept->refused, 2u);
  EXPECT_TRUE(cache_.list()->empty());
}

TEST_F(PackageCacheTest, ProvidesListedFilesUnderAptsNames) {
  testing::write_text(archives_ / "openssh-server_1%3a9.2p1-2_amd64.deb", "sshd deb");
  ASSERT_TRUE(cache_.collect(index_, archives_));
  std::filesystem::remove_all(archives_);
  std::filesystem::create_directories(archives_);
  auto provided = cache_.provide(index_, archives_);
  ASSERT_TRUE(provided) << provided.error().to_string();
  EXPECT_EQ(provided->files, 1u);
  EXPECT_EQ(testing::read_text(archives_ / "openssh-server_1%3a9.2p1-2_amd64.deb"), "sshd deb");
}

TEST_F(PackageCacheTest, ServesNothingTheCurrentIndexDoesNotList) {
  testing::write_text(archives_ / "hello_2.10-3_amd64.deb", "hello deb");
  ASSERT_TRUE(cache_.collect(index_, archives_));
  std::filesystem::remove(archives_ / "hello_2.10-3_amd64.deb");
  PackagesIndex newer;  // hello was updated: its old file no longer listed
  newer.add(paragraph("hello", "2.10-4", "hello deb, rebuilt"));
  EXPECT_EQ(cache_.provide(newer, archives_)->files, 0u);
  EXPECT_TRUE(std::filesystem::is_empty(archives_));
}

TEST_F(PackageCacheTest, AChangedCachedFileIsDroppedNotServed) {
  testing::write_text(archives_ / "hello_2.10-3_amd64.deb", "hello deb");
  ASSERT_TRUE(cache_.collect(index_, archives_));
  std::filesystem::remove(archives_ / "hello_2.10-3_amd64.deb");
  std::filesystem::path cached = cache_.dir() / (sha256_hex("hello deb") + ".deb");
  testing::write_text(cached, "evil deb!");
  auto provided = cache_.provide(index_, archives_);
  ASSERT_TRUE(provided);
  EXPECT_EQ(provided->files, 0u);
  EXPECT_EQ(provided->refused, 1u);
  EXPECT_FALSE(std::filesystem::exists(cached));
  EXPECT_TRUE(std::filesystem::is_empty(archives_));
}

TEST_F(PackageCacheTest, PruneRemovesPackagesUnusedForLongAndKilledCollectsLeftovers) {
  testing::write_text(archives_ / "hello_2.10-3_amd64.deb", "hello deb");
  testing::write_text(archives_ / "tree_2.1.0-1_amd64.deb", "tree deb");
  ASSERT_TRUE(cache_.collect(index_, archives_));
  std::filesystem::path old = cache_.dir() / (sha256_hex("tree deb") + ".deb");
  struct timespec times[2] = {{std::time(nullptr) - 40 * 86400, 0}, {std::time(nullptr) - 40 * 86400, 0}};
  ::utimensat(AT_FDCWD, old.c_str(), times, 0);
  testing::write_text(cache_.dir() / ".half-kept.123", "partial");
  StageCache stages(dir_ / "cache");
  PruneOptions options;
  options.unused_for = std::chrono::seconds(30 * 86400);
  auto pruned = stages.prune(options);
  ASSERT_TRUE(pruned) << pruned.error().to_string();
  EXPECT_EQ(pruned->removed_packages, 1u);
  EXPECT_FALSE(std::filesystem::exists(old));
  EXPECT_FALSE(std::filesystem::exists(cache_.dir() / ".half-kept.123"));
  EXPECT_EQ(cache_.list()->size(), 1u);
  options = {};
  options.all = true;
  EXPECT_EQ(stages.prune(options)->removed_packages, 1u);
  EXPECT_TRUE(cache_.list()->empty());
}

}  // namespace
}  // namespace kiln
