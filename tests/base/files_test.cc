#include "base/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using testing::list_tree;
using testing::ScratchDir;

TEST(AtomicFile, TargetAppearsOnlyOnCommit) {
  ScratchDir dir;
  fs::path target = dir / "out.txt";
  {
    auto file = AtomicFile::create(target);
    ASSERT_TRUE(file);
    ASSERT_TRUE(file->write("complete"));
    EXPECT_FALSE(fs::exists(target));
    ASSERT_TRUE(file->commit());
  }
  EXPECT_EQ(testing::read_text(target), "complete");
  EXPECT_EQ(list_tree(dir.path()), std::vector<std::string>{"out.txt"});
}

TEST(AtomicFile, DroppedWithoutCommitLeavesNothingBehind) {
  ScratchDir dir;
  testing::write_text(dir / "out.txt", "old");
  {
    auto file = AtomicFile::create(dir / "out.txt");
    ASSERT_TRUE(file);
    ASSERT_TRUE(file->write("half"));
  }
  EXPECT_EQ(testing::read_text(dir / "out.txt"), "old");
  EXPECT_EQ(list_tree(dir.path()), std::vector<std::string>{"out.txt"});
}

TEST(TempDir, RemovedWithContentsUnlessCommitted) {
  ScratchDir dir;
  {
    auto temp = TempDir::create(dir.path(), "work");
    ASSERT_TRUE(temp);
    testing::write_text(temp->path() / "a/b", "x");
  }
  EXPECT_TRUE(list_tree(dir.path()).empty());
  auto temp = TempDir::create(dir.path(), "work");
  ASSERT_TRUE(temp);
  testing::write_text(temp->path() / "a", "x");
  ASSERT_TRUE(temp->commit(dir / "final"));
  EXPECT_EQ(testing::read_text(dir / "final/a"), "x");
}

TEST(CopySparse, CopiesDataAndKeepsHoles) {
  ScratchDir dir;
  auto src = open_file(dir / "src", O_RDWR | O_CREAT);
  auto dst = open_file(dir / "dst", O_RDWR | O_CREAT);
  ASSERT_TRUE(src && dst);
  constexpr uint64_t kSize = 64ull << 20;
  ASSERT_EQ(::ftruncate(src->get(), kSize), 0);
  ASSERT_EQ(::ftruncate(dst->get(), kSize + 4096), 0);
  ASSERT_TRUE(pwrite_all(src->get(), "head", 4, 0, "src"));
  ASSERT_TRUE(pwrite_all(src->get(), "tail", 4, kSize - 4, "src"));
  ASSERT_TRUE(copy_sparse(src->get(), 0, dst->get(), 4096, kSize, "src"));
  char buffer[4];
  ASSERT_EQ(::pread(dst->get(), buffer, 4, 4096), 4);
  EXPECT_EQ(std::string(buffer, 4), "head");
  ASSERT_EQ(::pread(dst->get(), buffer, 4, 4096 + kSize - 4), 4);
  EXPECT_EQ(std::string(buffer, 4), "tail");
  struct stat st;
  ASSERT_EQ(::fstat(dst->get(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, kSize / 4);
}

TEST(ForEachRun, ReportsDataAndHolesInOrderCoveringTheRangeExactly) {
  ScratchDir dir;
  auto file = open_file(dir / "sparse", O_RDWR | O_CREAT);
  ASSERT_TRUE(file);
  constexpr uint64_t kMiB = 1 << 20;
  ASSERT_EQ(::ftruncate(file->get(), 8 * kMiB), 0);
  ASSERT_TRUE(pwrite_all(file->get(), "a", 1, 2 * kMiB, "sparse"));
  ASSERT_TRUE(pwrite_all(file->get(), "b", 1, 5 * kMiB, "sparse"));
  std::vector<std::string> runs;
  uint64_t covered = 0;
  auto result = for_each_run(
      file->get(), kMiB, 6 * kMiB, "sparse",
      [&](uint64_t at, uint64_t size) -> Result<> {
        runs.push_back("data@" + std::to_string(at / 4096));
        covered += size;
        return {};
      },
      [&](uint64_t size) {
        runs.push_back("hole");
        covered += size;
      });
  ASSERT_TRUE(result) << result.error().message;
  // [1, 7) MiB: a hole, the block holding "a", a hole, the block holding "b",
  // and the hole up to the end of the range.
  EXPECT_EQ(runs, (std::vector<std::string>{"hole", "data@512", "hole", "data@1280", "hole"}));
  EXPECT_EQ(covered, 6 * kMiB);
}

}  // namespace
}  // namespace kiln
