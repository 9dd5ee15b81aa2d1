// install_directory: a finished directory replaces its target whole, and
// whatever the target held before leaves with the temporary.
#include <sys/stat.h>

#include <chrono>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/files.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using testing::list_tree;
using testing::read_text;
using testing::ScratchDir;
using testing::write_text;

TEST(InstallDirectory, TakesTheTargetNameWhenNothingIsThere) {
  ScratchDir dir;
  auto built = TempDir::create(dir.path(), "out.new");
  ASSERT_TRUE(built);
  write_text(built->path() / "manifest.json", "{}");
  ASSERT_TRUE(install_directory(std::move(*built), dir / "out"));
  EXPECT_THAT(list_tree(dir.path()), ElementsAre("out", "out/manifest.json"));
  struct stat st;
  ASSERT_EQ(::stat((dir / "out").c_str(), &st), 0);
  mode_t mask = ::umask(0);
  ::umask(mask);
  EXPECT_EQ(st.st_mode & 0777, 0755 & ~mask) << "mkdtemp's private 0700 must not stay";
}

TEST(InstallDirectory, ReplacesAnExistingDirectoryAndTheOldContentsGo) {
  ScratchDir dir;
  write_text(dir / "out/old.img", "old");
  write_text(dir / "out/manifest.json", "old");
  auto built = TempDir::create(dir.path(), "out.new");
  ASSERT_TRUE(built);
  write_text(built->path() / "manifest.json", "new");
  ASSERT_TRUE(install_directory(std::move(*built), dir / "out"));
  EXPECT_THAT(list_tree(dir.path()), ElementsAre("out", "out/manifest.json"));
  EXPECT_EQ(read_text(dir / "out/manifest.json"), "new");
}

// Open descriptors, in any process, of files under `dir` that are gone.
int deleted_files_held_under(const std::filesystem::path& dir) {
  int held = 0;
  std::error_code ec;
  for (const auto& process : std::filesystem::directory_iterator("/proc", ec)) {
    std::error_code fd_ec;
    for (const auto& fd : std::filesystem::directory_iterator(process.path() / "fd", fd_ec)) {
      std::error_code link_ec;
      std::string target = std::filesystem::read_symlink(fd.path(), link_ec).string();
      if (target.starts_with(dir.string() + "/") && target.ends_with(" (deleted)")) ++held;
    }
  }
  return held;
}

TEST(InstallDirectory, ReplacedImagesAreFreedInTheBackgroundAndLeaveNoName) {
  ScratchDir dir;
  write_text(dir / "out/disk.raw", std::string(80 << 20, 'x'));
  auto built = TempDir::create(dir.path(), "out.new");
  ASSERT_TRUE(built);
  write_text(built->path() / "manifest.json", "new");
  ASSERT_TRUE(install_directory(std::move(*built), dir / "out"));
  EXPECT_THAT(list_tree(dir.path()), ElementsAre("out", "out/manifest.json"));  // at once
  int held = 0;
  for (int i = 0; i < 100 && (held = deleted_files_held_under(dir.path())) > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(held, 0) << "the child that frees the old image must let it go";
}

}  // namespace
}  // namespace kiln
