// FileHashCache: a file's hash is made once and used while the file is
// unchanged; any change to the file makes it again, and a file written in
// the last seconds is not remembered at all.
#include "base/file_hash_cache.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>
#include <ctime>
#include <thread>

#include <gtest/gtest.h>

#include "base/hash.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

TEST(FileHashCache, HashesOnceAndAgainWhenTheFileChanges) {
  testing::ScratchDir dir;
  testing::write_text(dir / "disk.raw", "an image");
  FileHashCache cache(dir / "hashes");
  EXPECT_EQ(*cache.sha256(dir / "disk.raw"), sha256_hex("an image"));
  EXPECT_TRUE(testing::list_tree(dir / "hashes").empty());  // just written
  // An image baked an hour ago.
  timespec times[2] = {{0, UTIME_OMIT}, {::time(nullptr) - 3600, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (dir / "disk.raw").c_str(), times, 0), 0);
  auto first = cache.sha256(dir / "disk.raw");
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_EQ(*first, sha256_hex("an image"));

  // The entry is what a second call answers from: forged, it is believed
  // while the file's size and times match it.
  auto entries = testing::list_tree(dir / "hashes");
  ASSERT_EQ(entries.size(), 1u);
  std::string entry = testing::read_text(dir / "hashes" / entries[0]);
  std::string forged = entry;
  forged.replace(forged.find(*first), first->size(), std::string(64, 'f'));
  testing::write_text(dir / "hashes" / entries[0], forged);
  EXPECT_EQ(*cache.sha256(dir / "disk.raw"), std::string(64, 'f'));

  // Written to (same size even), the file is hashed again.
  testing::write_text(dir / "disk.raw", "an imagE");
  EXPECT_EQ(*cache.sha256(dir / "disk.raw"), sha256_hex("an imagE"));
  // A chmod changes its ctime: hashed again too. (The kernel's clock for
  // file times ticks every few milliseconds.)
  ASSERT_EQ(::utimensat(AT_FDCWD, (dir / "disk.raw").c_str(), times, 0), 0);
  EXPECT_EQ(*cache.sha256(dir / "disk.raw"), sha256_hex("an imagE"));
  entry = testing::read_text(dir / "hashes" / entries[0]);
  forged = entry;
  forged.replace(forged.find(sha256_hex("an imagE")), 64, std::string(64, 'f'));
  testing::write_text(dir / "hashes" / entries[0], forged);
  EXPECT_EQ(*cache.sha256(dir / "disk.raw"), std::string(64, 'f'));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ::chmod((dir / "disk.raw").c_str(), 0600);
  EXPECT_EQ(*cache.sha256(dir / "disk.raw"), sha256_hex("an imagE"));
  EXPECT_FALSE(cache.sha256(dir / "missing.raw"));
}

}  // namespace
}  // namespace kiln
