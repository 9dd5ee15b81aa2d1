// `kiln make-fs` as a user runs it: the type asked for is the type made,
// journal included, however little the archive holds.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/formats/archive_builder.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::run_kiln;
using testing::run_program;

class MakeFsCommand : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    testing::ArchiveBuilder archive;
    archive.directory("etc").file("etc/hostname", "tiny\n");
    archive.write_to(dir_ / "tiny.tar");
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  testing::ScratchDir dir_;
};

TEST_P(MakeFsCommand, TinyContentStillGetsTheTypeAskedFor) {
  auto made = run_kiln({"make-fs", "-t", GetParam(), path("tiny.tar"), path("fs.img")});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  EXPECT_EQ(run_program({"blkid", "-o", "value", "-s", "TYPE", path("fs.img")}).out, GetParam() + "\n");
  auto features = run_program({"dumpe2fs", "-h", path("fs.img")}).out;
  if (GetParam() == "ext2") EXPECT_THAT(features, ::testing::Not(HasSubstr("has_journal")));
  else EXPECT_THAT(features, HasSubstr("has_journal"));
  EXPECT_EQ(run_program({"e2fsck", "-fn", path("fs.img")}).exit_code, 0);
}

TEST_P(MakeFsCommand, ASizeTooSmallForTheTypeIsRefusedWithTheSizeThatWould) {
  auto made = run_kiln({"make-fs", "-t", GetParam(), path("tiny.tar"), path("fs.img"), "--size", "512K"});
  EXPECT_EQ(made.exit_code, 2);
  EXPECT_THAT(made.err, HasSubstr(GetParam() == "ext2" ? "at least 1.0 MiB" : "at least 8.0 MiB (its journal needs it)"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "fs.img"));
}

INSTANTIATE_TEST_SUITE_P(Types, MakeFsCommand, ::testing::Values("ext2", "ext3", "ext4"));

}  // namespace
}  // namespace kiln
