// Patches onto images (through libext2fs, no mount) and archives (rewritten
// in their own form), in place or forked, all or nothing; and diffs between
// any two of directories, images and archives.
#include "container/tree_patching.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/hash.h"
#include "formats/ext4/ext4_image.h"
#include "formats/tree/rootfs_tree.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::read_text;
using testing::write_text;

class TreePatchingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_text(dir_ / "base/etc/hostname", "debian\n");
    write_text(dir_ / "base/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    write_text(dir_ / "base/usr/bin/tool", std::string("\0binary", 7));
    write_text(dir_ / "changed/etc/hostname", "fido\n");
    write_text(dir_ / "changed/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n");
    write_text(dir_ / "changed/usr/bin/tool", std::string("\0binary v2", 10));
    fs::create_directories(dir_ / "changed/home/alice");
    auto patch = diff_paths(dir_ / "base", dir_ / "changed", dir_.path());
    ASSERT_TRUE(patch) << patch.error().to_string();
    patch_ = *patch;
  }

  // An ext4 image of `size` holding the base tree.
  fs::path make_image(const std::string& name, uint64_t size = 8 << 20) {
    fs::path tar = dir_ / (name + ".tar");
    EXPECT_TRUE(write_tree_as_tar(dir_ / "base", tar, 0));
    auto image = Ext4Image::format(dir_ / name, {size, 0, "ext4", "", Uuid::from_name(name), Uuid::from_name("seed"),
                                                 1700000000});
    EXPECT_TRUE(image) << image.error().to_string();
    auto reader = TarReader::open(tar);
    EXPECT_TRUE(image->import(*reader));
    EXPECT_TRUE(image->close());
    return dir_ / name;
  }

  std::string read_in_image(const fs::path& image, const std::string& path) {
    auto opened = Ext4Image::open(image, 0, false);
    auto text = opened->read_file(path);
    return text ? *text : "(" + text.error().message + ")";
  }

  Result<PatchOutcome> apply(const fs::path& target, const fs::path& output = {}) {
    return apply_patch_to(patch_, "fido.patch", {target, output, dir_.path(), 1700000000});
  }

  static std::string hash(const fs::path& file) { return file_digest_hex(file).value_or(""); }

  testing::ScratchDir dir_;
  TreePatch patch_;
};

TEST_F(TreePatchingTest, AnImageIsPatchedInPlaceWithoutMounting) {
  fs::path image = make_image("root.img");
  auto outcome = apply(image);
  ASSERT_TRUE(outcome) << outcome.error().to_string();
  EXPECT_EQ(outcome->kind, TargetKind::kImage);
  EXPECT_EQ(outcome->created, 2u);  // home, home/alice
  EXPECT_EQ(outcome->changed, 3u);
  EXPECT_EQ(read_in_image(image, "/etc/hostname"), "fido\n");
  EXPECT_EQ(read_in_image(image, "/usr/bin/tool"), std::string("\0binary v2", 10));
  auto fsck = testing::run_program({"e2fsck", "-fn", image.string()});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out;
  // What the image holds now is what `changed` holds, and mke2fs's lost+found.
  auto again = diff_paths(image, dir_ / "changed", dir_.path());
  ASSERT_TRUE(again) << again.error().to_string();
  ASSERT_EQ(again->entries.size(), 1u) << write_tree_patch(*again);
  EXPECT_EQ(again->entries[0].path, "lost+found");
}

TEST_F(TreePatchingTest, AForkedImageLeavesTheOriginalUntouched) {
  fs::path image = make_image("root.img");
  std::string before = hash(image);
  auto outcome = apply(image, dir_ / "fido.img");
  ASSERT_TRUE(outcome) << outcome.error().to_string();
  EXPECT_EQ(hash(image), before);
  EXPECT_EQ(read_in_image(dir_ / "fido.img", "/etc/hostname"), "fido\n");
  EXPECT_EQ(fs::file_size(dir_ / "fido.img"), fs::file_size(image));
}

TEST_F(TreePatchingTest, ARejectedPatchLeavesTheImageByteForByte) {
  fs::path image = make_image("root.img");
  {
    auto opened = Ext4Image::open(image);
    ASSERT_TRUE(opened->write_file("/etc/hostname", "rex\n", {0644, 0, 0, 1700000000}));
    ASSERT_TRUE(opened->close());
  }
  std::string before = hash(image);
  auto outcome = apply(image);
  ASSERT_FALSE(outcome);
  EXPECT_THAT(outcome.error().to_string(), HasSubstr("fido.patch does not apply to the image " + image.string()));
  EXPECT_THAT(outcome.error().to_string(), HasSubstr("etc/hostname: hunk 1 @@ -1 +1 @@ does not apply"));
  EXPECT_EQ(hash(image), before);
  EXPECT_FALSE(apply(image, dir_ / "fork.img"));
  EXPECT_FALSE(fs::exists(dir_ / "fork.img"));
}

TEST_F(TreePatchingTest, AnImageTooFullForThePatchIsRefusedBeforeAnyChange) {
  write_text(dir_ / "big/etc/hostname", "debian\n");
  write_text(dir_ / "big/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
  write_text(dir_ / "big/usr/bin/tool", std::string(12 << 20, 'x'));
  auto big = diff_paths(dir_ / "base", dir_ / "big", dir_.path());
  ASSERT_TRUE(big);
  fs::path image = make_image("small.img", 8 << 20);
  std::string before = hash(image);
  auto outcome = apply_patch_to(*big, "big.patch", {image, {}, dir_.path(), 1});
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().kind, ErrorKind::kNoSpace);
  EXPECT_THAT(outcome.error().message, HasSubstr("nothing was changed"));
  EXPECT_EQ(hash(image), before);
}

TEST_F(TreePatchingTest, AnArchiveIsRewrittenInItsOwnFormAndCompression) {
  for (ArchiveForm form : {ArchiveForm{ArchiveFormat::kCpioNewc, ArchiveCompression::kGzip},
                           ArchiveForm{ArchiveFormat::kPaxTar, ArchiveCompression::kZstd}}) {
    fs::path archive = dir_ / "etc.archive";
    ASSERT_TRUE(write_tree_as_archive(dir_ / "base", archive, form, 0));
    std::string before = hash(archive);
    auto forked = apply(archive, dir_ / "fido.archive");
    ASSERT_TRUE(forked) << forked.error().to_string();
    EXPECT_EQ(forked->kind, TargetKind::kArchive);
    EXPECT_EQ(hash(archive), before);
    auto in_place = apply(archive);
    ASSERT_TRUE(in_place) << in_place.error().to_string();
    for (const fs::path& result : {archive, dir_ / "fido.archive"}) {
      EXPECT_EQ(archive_form_of(result).value_or(ArchiveForm{}), form);
      auto left = diff_paths(result, dir_ / "changed", dir_.path());
      ASSERT_TRUE(left) << left.error().to_string();
      EXPECT_TRUE(left->entries.empty()) << write_tree_patch(*left);
    }
  }
}

TEST_F(TreePatchingTest, ADirectoryIsPatchedOnlyInPlace) {
  auto refused = apply(dir_ / "base", dir_ / "elsewhere");
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message, HasSubstr("a directory is patched in place"));
  ASSERT_TRUE(apply(dir_ / "base"));
  EXPECT_EQ(read_text(dir_ / "base/etc/hostname"), "fido\n");
}

TEST_F(TreePatchingTest, DiffsWorkBetweenAnImageAndAnArchive) {
  fs::path image = make_image("root.img");
  ASSERT_TRUE(write_tree_as_archive(dir_ / "changed", dir_ / "changed.cpio.gz",
                                    {ArchiveFormat::kCpioNewc, ArchiveCompression::kGzip}, 0));
  auto patch = diff_paths(image, dir_ / "changed.cpio.gz", dir_.path());
  ASSERT_TRUE(patch) << patch.error().to_string();
  // lost+found is in the image only; everything else is the fido change.
  std::vector<std::string> paths;
  for (const PatchEntry& entry : patch->entries) paths.push_back(entry.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"etc/hostname", "etc/passwd", "home", "home/alice", "lost+found",
                                             "usr/bin/tool"}));
}

}  // namespace
}  // namespace kiln
