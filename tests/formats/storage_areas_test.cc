// The pieces an encrypted or LVM image is made of besides the filesystems
// themselves: which blocks of an ext4 hold something, and swap areas.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "formats/ext4/ext4_allocation.h"
#include "formats/ext4/ext4_image.h"
#include "formats/disk/swap_area.h"
#include "formats/tree/tar_reader.h"
#include "tests/formats/archive_builder.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::run_program;
using testing::ScratchDir;
using testing::write_text;

constexpr uint64_t kMiB = 1 << 20;

TEST(Ext4UsedRanges, CoverMetadataAndDataButNotFreeSpace) {
  ScratchDir dir;
  auto image = dir / "disk.raw";
  Ext4Options options;
  options.size_bytes = 64 * kMiB;
  options.offset_bytes = 2 * kMiB;
  options.uuid = Uuid::from_name("used-ranges");
  options.hash_seed = Uuid::from_name("seed");
  options.timestamp = 1700000000;
  auto fs = Ext4Image::format(image, options);
  ASSERT_TRUE(fs) << fs.error().to_string();
  ASSERT_TRUE(fs->write_file("/big", std::string(3 * kMiB, 'x'), Ext4Attributes{}));
  ASSERT_TRUE(fs->close());
  auto ranges = ext4_used_ranges(image, 2 * kMiB);
  ASSERT_TRUE(ranges) << ranges.error().to_string();
  ASSERT_FALSE(ranges->empty());
  EXPECT_EQ(ranges->front().offset, 0u);  // the superblock's block
  uint64_t used = 0, previous_end = 0;
  for (const ByteRange& range : *ranges) {
    EXPECT_GT(range.length, 0u);
    EXPECT_EQ(range.offset % 4096, 0u);
    EXPECT_TRUE(range.offset == 0 || range.offset > previous_end) << "sorted and merged";
    previous_end = range.offset + range.length;
    used += range.length;
  }
  EXPECT_LE(previous_end, 64 * kMiB);
  // What dumpe2fs counts as used, block for block.
  run_program({"dd", "if=" + image.string(), "of=" + (dir / "fs.img").string(), "bs=1M", "skip=2", "conv=sparse",
               "status=none"});
  auto e2 = run_program({"dumpe2fs", "-h", (dir / "fs.img").string()});
  ASSERT_EQ(e2.exit_code, 0) << e2.err;
  auto count = [&](const std::string& field) {
    auto at = e2.out.find(field);
    return std::stoull(e2.out.substr(at + field.size()));
  };
  uint64_t blocks = count("Block count:"), free_blocks = count("Free blocks:");
  EXPECT_EQ(used, (blocks - free_blocks) * 4096);
  EXPECT_GE(used, 3 * kMiB);
}

// One subtree of an archive as a filesystem of its own (a volume at /srv).
TEST(Ext4Import, SelectTakesASubtreeAsTheWholeFilesystem) {
  ScratchDir dir;
  testing::ArchiveBuilder tar;
  tar.directory("srv", {0750});
  tar.file("srv/www/index.html", "hello\n");
  tar.file("srv/data", "payload");
  tar.hardlink("srv/again", "srv/data");
  tar.file("etc/hostname", "elsewhere\n");
  tar.write_to(dir / "rootfs.tar");
  Ext4Options options;
  options.size_bytes = 8 * kMiB;
  options.uuid = Uuid::from_name("srv");
  options.hash_seed = Uuid::from_name("seed");
  options.timestamp = 1700000000;
  auto fs = Ext4Image::format(dir / "srv.img", options);
  ASSERT_TRUE(fs) << fs.error().to_string();
  auto reader = TarReader::open(dir / "rootfs.tar");
  ASSERT_TRUE(reader);
  ImportOptions import;
  import.select = [](TarEntry& entry) {
    if (entry.path != "srv" && !entry.path.starts_with("srv/")) return false;
    entry.path = entry.path == "srv" ? "" : entry.path.substr(4);
    if (entry.type == EntryType::kHardlink) entry.link_target = entry.link_target.substr(4);
    return true;
  };
  auto stats = fs->import(*reader, import);
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->entries, 4u);
  EXPECT_EQ(*fs->read_file("/www/index.html"), "hello\n");
  EXPECT_EQ((*fs->stat("/again"))->links, 2u);
  EXPECT_EQ((*fs->stat("/"))->mode, 0750u);  // the mountpoint's own attributes
  EXPECT_FALSE(*fs->stat("/etc"));
  ASSERT_TRUE(fs->close());
  EXPECT_EQ(run_program({"e2fsck", "-fn", (dir / "srv.img").string()}).exit_code, 0);
}

TEST(SwapArea, WritesAHeaderBlkidReads) {
  ScratchDir dir;
  auto image = dir / "disk.raw";
  write_text(image, "");
  std::filesystem::resize_file(image, 20 * kMiB);
  ASSERT_TRUE(write_swap_area(image, 4 * kMiB, 16 * kMiB, Uuid::from_name("swap"), "swap0"));
  auto blkid = run_program({"blkid", "-p", "-O", std::to_string(4 * kMiB), "-o", "export", image.string()});
  EXPECT_THAT(blkid.out, HasSubstr("TYPE=swap"));
  EXPECT_THAT(blkid.out, HasSubstr("UUID=" + Uuid::from_name("swap").to_string()));
  EXPECT_THAT(blkid.out, HasSubstr("LABEL=swap0"));
  EXPECT_FALSE(write_swap_area(image, 0, 16 * 1024, Uuid::from_name("swap"), ""));
}

}  // namespace
}  // namespace kiln
