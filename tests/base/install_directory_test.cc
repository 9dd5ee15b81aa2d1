// install_directory: a finished directory replaces its target whole, and
// whatever the target held before leaves with the temporary.
#include <sys/stat.h>

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

}  // namespace
}  // namespace kiln
