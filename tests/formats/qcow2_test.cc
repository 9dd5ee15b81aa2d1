#include "formats/disk/qcow2.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/size.h"
#include "base/hash.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using testing::ScratchDir;

// A sparse raw disk with a little data at both ends and in the middle.
void make_raw(const fs::path& path, uint64_t size) {
  auto fd = open_file(path, O_RDWR | O_CREAT);
  ASSERT_TRUE(fd);
  ASSERT_EQ(::ftruncate(fd->get(), size), 0);
  for (uint64_t at : {uint64_t{0}, size / 2 + 123, size - 512})
    ASSERT_TRUE(pwrite_all(fd->get(), "kiln disk data", 14, at, path.string()));
}

TEST(ConvertToQcow2, GivesACheckedQcow2WithTheSameContents) {
  ScratchDir dir;
  make_raw(dir / "disk.raw", 64 * kMiB);
  auto converted = convert_to_qcow2(dir / "disk.raw", dir / "disk.qcow2");
  ASSERT_TRUE(converted) << converted.error().to_string();

  auto check = testing::run_program({"qemu-img", "check", (dir / "disk.qcow2").string()});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  auto info = testing::run_program(
      {"qemu-img", "info", "--output=json", (dir / "disk.qcow2").string()});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  auto json = nlohmann::json::parse(info.out);
  EXPECT_EQ(json["format"], "qcow2");
  EXPECT_EQ(json["virtual-size"], 64 * kMiB);
  auto compare = testing::run_program({"qemu-img", "compare", "-f", "raw", "-F", "qcow2",
                                       (dir / "disk.raw").string(), (dir / "disk.qcow2").string()});
  EXPECT_EQ(compare.exit_code, 0) << compare.out << compare.err;
  EXPECT_NE(compare.out.find("identical"), std::string::npos) << compare.out;
  EXPECT_EQ(testing::list_tree(dir.path()), (std::vector<std::string>{"disk.qcow2", "disk.raw"}));
}

TEST(ConvertToQcow2, EqualInputsGiveEqualBytes) {
  ScratchDir dir;
  make_raw(dir / "disk.raw", 16 * kMiB);
  ASSERT_TRUE(convert_to_qcow2(dir / "disk.raw", dir / "a.qcow2"));
  ASSERT_TRUE(convert_to_qcow2(dir / "disk.raw", dir / "b.qcow2"));
  EXPECT_EQ(*file_digest_hex(dir / "a.qcow2"), *file_digest_hex(dir / "b.qcow2"));
}

TEST(ConvertToQcow2, MissingInputNamesItAndLeavesNoOutput) {
  ScratchDir dir;
  auto converted = convert_to_qcow2(dir / "missing.raw", dir / "disk.qcow2");
  ASSERT_FALSE(converted);
  EXPECT_NE(converted.error().message.find("missing.raw"), std::string::npos)
      << converted.error().message;
  EXPECT_TRUE(testing::list_tree(dir.path()).empty());
}

// Puts a stand-in program first on PATH for the life of the object.
class FakeProgram {
 public:
  FakeProgram(const fs::path& dir, const std::string& name, const std::string& script)
      : old_path_(std::getenv("PATH") ? std::getenv("PATH") : "") {
    testing::write_text(dir / name, "#!/bin/sh\n" + script);
    fs::permissions(dir / name, fs::perms::owner_all);
    ::setenv("PATH", (dir.string() + ":" + old_path_).c_str(), 1);
  }
  ~FakeProgram() { ::setenv("PATH", old_path_.c_str(), 1); }

 private:
  std::string old_path_;
};

TEST(ConvertToQcow2, FailedConversionKeepsTheOldOutputAndNoTemporary) {
  ScratchDir dir;
  ScratchDir bin;
  make_raw(dir / "disk.raw", 16 * kMiB);
  testing::write_text(dir / "disk.qcow2", "previous image");
  // qemu-img dying half way: the output so far is in the temporary.
  FakeProgram fake(bin.path(), "qemu-img",
                   "for last; do :; done\n"
                   "echo half > \"$last\"\n"
                   "echo 'qemu-img: error while writing at byte 1048576: No space left' >&2\n"
                   "exit 1\n");
  auto converted = convert_to_qcow2(dir / "disk.raw", dir / "disk.qcow2");
  ASSERT_FALSE(converted);
  EXPECT_NE(converted.error().message.find("disk.raw"), std::string::npos);
  EXPECT_NE(converted.error().detail.find("error while writing"), std::string::npos);
  EXPECT_EQ(converted.error().kind, ErrorKind::kNoSpace);
  EXPECT_EQ(testing::read_text(dir / "disk.qcow2"), "previous image");
  EXPECT_EQ(testing::list_tree(dir.path()), (std::vector<std::string>{"disk.qcow2", "disk.raw"}));
}

TEST(ConvertToQcow2, RefusesWhatIsNotAFile) {
  ScratchDir dir;
  fs::create_directory(dir / "notadisk");
  auto converted = convert_to_qcow2(dir / "notadisk", dir / "disk.qcow2");
  ASSERT_FALSE(converted);
  EXPECT_EQ(converted.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(converted.error().message.find("notadisk"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "disk.qcow2"));
}

}  // namespace
}  // namespace kiln
