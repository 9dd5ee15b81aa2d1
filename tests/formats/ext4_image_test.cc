#include "formats/ext4/ext4_image.h"

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <map>
#include <regex>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/files.h"
#include "base/interrupt.h"
#include "base/subprocess.h"
#include "base/size.h"
#include "base/hash.h"
#include "tests/formats/archive_builder.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using testing::ArchiveBuilder;
using testing::ArchiveFilter;
using testing::ArchiveFormat;
using testing::EntryMeta;
using testing::ScratchDir;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kTimestamp = 1700000000;   // 0x6553f100, the filesystem's time
constexpr int64_t kOldTime = 315532800;      // 1980-01-01, 0x12cea600
constexpr int64_t kFutureTime = kTimestamp + 86400;
constexpr uint64_t kSparseSize = 64 * kMiB;
const std::string kCapability("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                              "\x00\x00\x00\x00",
                              20);

Ext4Options options_for(uint64_t size, const std::string& fs_type = "ext4") {
  Ext4Options options;
  options.size_bytes = size;
  options.fs_type = fs_type;
  options.label = "root";
  options.uuid = Uuid::from_name("tests/root-fs");
  options.hash_seed = Uuid::from_name("tests/root-fs/hash-seed");
  options.timestamp = kTimestamp;
  return options;
}

std::string pattern(size_t size, char seed) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>(seed + (i * 7 + i / 4096) % 61);
  return out;
}

// The rootfs of the product issue: every entry type tar can hold.
std::string rootfs_archive() {
  std::vector<std::pair<uint64_t, std::string>> many_pieces;
  for (uint64_t i = 0; i < 10; ++i) many_pieces.emplace_back(i * 800 * 1024 + 100, pattern(5000, 'a' + i));
  ArchiveBuilder builder;
  builder.directory("./", EntryMeta{0755, 0, 0, kTimestamp - 10, {}})
      .directory("./usr/")
      .directory("./usr/bin/")
      .file("./usr/bin/ping", "ping binary", EntryMeta{04755, 0, 0, kOldTime, {{"security.capability", kCapability}}})
      .file("./usr/bin/perl", "perl binary")
      .hardlink("./usr/bin/perl5.36", "./usr/bin/perl")
      .symlink("./usr/bin/short", "ping")
      .symlink("./usr/bin/long", std::string(200, 'L'))
      .file("./usr/share/doc/big.txt", pattern(300 * 1024, 'A'))
      // No entries for home/ and home/user/: tar creates them, so does kiln.
      .file("./home/user/notes.txt", "hello\n",
            EntryMeta{0640, 1000, 1000, kFutureTime, {{"user.comment", "kiln"}}})
      .directory("./tmp/", EntryMeta{01777, 0, 0, kTimestamp, {}})
      .sparse_file("./var/lib/disk.img", kSparseSize,
                   {{0, "start"}, {kSparseSize / 2, "middle"}, {kSparseSize - 3, "end"}})
      .sparse_file("./var/lib/many.img", 8 * kMiB, many_pieces)
      .device("./dev/null", false, 1, 3, EntryMeta{0666, 0, 0, kTimestamp, {}})
      .device("./dev/sda", true, 8, 0, EntryMeta{0660, 0, 6, kTimestamp, {}})
      .device("./dev/wide", false, 300, 70000)
      .fifo("./run/initctl", EntryMeta{0600, 0, 0, kTimestamp, {}});
  return builder.bytes();
}

// Formats `image`, imports the archive and closes: the whole assemble step.
void bake(const fs::path& image, const std::string& archive, const Ext4Options& options) {
  auto ext4 = Ext4Image::format(image, options);
  ASSERT_TRUE(ext4) << ext4.error().to_string();
  auto reader = TarReader::open_memory(archive, "rootfs.tar");
  ASSERT_TRUE(reader) << reader.error().to_string();
  auto imported = ext4->import(*reader);
  ASSERT_TRUE(imported) << imported.error().to_string();
  auto closed = ext4->close();
  ASSERT_TRUE(closed) << closed.error().to_string();
}

std::string debugfs(const fs::path& image, const std::string& request) {
  auto result = testing::run_program({"debugfs", "-R", request, image.string()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return result.out;
}

// e2fsck in "check everything, change nothing" mode; exit 0 means clean.
void expect_clean(const fs::path& image) {
  auto result = testing::run_program({"e2fsck", "-fn", image.string()});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
}

uint64_t number_after(const std::string& text, const std::string& label) {
  std::smatch match;
  std::regex pattern(label + R"(\s*(\d+))");
  if (!std::regex_search(text, match, pattern)) {
    ADD_FAILURE() << "no '" << label << "' in:\n" << text;
    return 0;
  }
  return std::stoull(match[1]);
}

// One image baked from rootfs_archive(), inspected by the tests below with
// e2fsprogs' own tools.
class ImportedRootfs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScratchDir();
    image_ = *dir_ / "root.img";
    bake(image_, rootfs_archive(), options_for(96 * kMiB));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string stat(const std::string& path) { return debugfs(image_, "stat " + path); }
  static std::string dump(const std::string& path) {
    fs::path out = *dir_ / "dumped";
    debugfs(image_, "dump " + path + " " + out.string());
    std::string content = testing::read_text(out);
    fs::remove(out);
    return content;
  }

  static inline ScratchDir* dir_ = nullptr;
  static inline fs::path image_;
};

TEST_F(ImportedRootfs, PassesAFullFilesystemCheck) { expect_clean(image_); }

TEST_F(ImportedRootfs, KeepsOwnersAndModesIncludingSpecialBits) {
  EXPECT_THAT(stat("/usr/bin/ping"), HasSubstr("Mode:  04755"));
  std::string notes = stat("/home/user/notes.txt");
  EXPECT_THAT(notes, HasSubstr("Mode:  0640"));
  EXPECT_THAT(notes, ContainsRegex("User: +1000 +Group: +1000"));
  EXPECT_THAT(stat("/tmp"), HasSubstr("Mode:  01777"));
  EXPECT_THAT(stat("/dev/sda"), ContainsRegex("User: +0 +Group: +6"));
}

TEST_F(ImportedRootfs, CreatesUnlistedParentsAsRootOwned0755) {
  for (const char* path : {"/home", "/home/user", "/usr/share", "/var/lib"}) {
    std::string info = stat(path);
    EXPECT_THAT(info, HasSubstr("Type: directory    Mode:  0755")) << path;
    EXPECT_THAT(info, ContainsRegex("User: +0 +Group: +0")) << path;
    EXPECT_THAT(info, HasSubstr("mtime: 0x6553f100")) << path;
  }
}

TEST_F(ImportedRootfs, KeepsOldTimestampsAndClampsFutureOnes) {
  EXPECT_THAT(stat("/usr/bin/ping"), HasSubstr("mtime: 0x12cea600"));
  EXPECT_THAT(stat("/home/user/notes.txt"), HasSubstr("mtime: 0x6553f100"));
  EXPECT_THAT(stat("/"), HasSubstr("mtime: 0x6553f0f6"));  // the "./" entry's own time
}

TEST_F(ImportedRootfs, KeepsHolesUnallocated) {
  std::string info = stat("/var/lib/disk.img");
  EXPECT_THAT(info, HasSubstr("Size: 67108864"));
  // Three 4 KiB blocks hold the data (8 sectors each); the 64 MiB between are holes.
  EXPECT_EQ(number_after(info, "Blockcount:"), 24u);
  std::string content = dump("/var/lib/disk.img");
  ASSERT_EQ(content.size(), kSparseSize);
  EXPECT_EQ(content.substr(0, 5), "start");
  EXPECT_EQ(content.substr(kSparseSize / 2, 6), "middle");
  EXPECT_EQ(content.substr(kSparseSize - 3), "end");
  EXPECT_EQ(std::count(content.begin(), content.end(), '\0'), static_cast<long>(kSparseSize - 14));
}

TEST_F(ImportedRootfs, MapsAFileOfManyPiecesThroughAnExtentTree) {
  std::string info = stat("/var/lib/many.img");
  // 10 pieces of 5000 bytes, each over two blocks, plus one extent tree block.
  EXPECT_EQ(number_after(info, "Blockcount:"), (20u + 1u) * 8u);
  std::string content = dump("/var/lib/many.img");
  ASSERT_EQ(content.size(), 8 * kMiB);
  for (uint64_t i = 0; i < 10; ++i)
    EXPECT_EQ(content.substr(i * 800 * 1024 + 100, 5000), pattern(5000, 'a' + i)) << "piece " << i;
}

TEST_F(ImportedRootfs, StoresShortSymlinksInTheInodeAndLongOnesInABlock) {
  std::string short_link = stat("/usr/bin/short");
  EXPECT_THAT(short_link, HasSubstr("Type: symlink"));
  EXPECT_THAT(short_link, HasSubstr("Fast link dest: \"ping\""));
  std::string long_link = stat("/usr/bin/long");
  EXPECT_THAT(long_link, HasSubstr("Size: 200"));
  EXPECT_EQ(number_after(long_link, "Blockcount:"), 8u);
  EXPECT_EQ(dump("/usr/bin/long"), std::string(200, 'L'));
}

TEST_F(ImportedRootfs, HardlinksShareOneInodeWithTheRightLinkCount) {
  std::string perl = stat("/usr/bin/perl");
  std::string versioned = stat("/usr/bin/perl5.36");
  EXPECT_THAT(perl, HasSubstr("Links: 2"));
  EXPECT_EQ(number_after(perl, "Inode:"), number_after(versioned, "Inode:"));
  EXPECT_EQ(dump("/usr/bin/perl5.36"), "perl binary");
}

TEST_F(ImportedRootfs, KeepsDevicesAndFifos) {
  std::string null = stat("/dev/null");
  EXPECT_THAT(null, HasSubstr("Type: character special"));
  EXPECT_THAT(null, HasSubstr("Device major/minor number: 01:03"));
  std::string sda = stat("/dev/sda");
  EXPECT_THAT(sda, HasSubstr("Type: block special"));
  EXPECT_THAT(sda, HasSubstr("Device major/minor number: 08:00"));
  EXPECT_THAT(stat("/dev/wide"), HasSubstr("Device major/minor number: 300:70000"));
  EXPECT_THAT(stat("/run/initctl"), HasSubstr("Type: FIFO"));
}

TEST_F(ImportedRootfs, KeepsExtendedAttributes) {
  EXPECT_THAT(debugfs(image_, "ea_list /usr/bin/ping"),
              HasSubstr("security.capability (20) = 01 00 00 02 00 20 00 00"));
  EXPECT_THAT(debugfs(image_, "ea_list /home/user/notes.txt"), HasSubstr("user.comment (4) = \"kiln\""));
}

TEST_F(ImportedRootfs, KeepsFileContent) {
  EXPECT_EQ(dump("/usr/share/doc/big.txt"), pattern(300 * 1024, 'A'));
  EXPECT_EQ(dump("/home/user/notes.txt"), "hello\n");
}

TEST_F(ImportedRootfs, ReadsBackThroughTheImageApi) {
  auto image = Ext4Image::open(image_, 0, false);
  ASSERT_TRUE(image) << image.error().to_string();
  auto ping = image->stat("/usr/bin/ping");
  ASSERT_TRUE(ping && *ping);
  EXPECT_EQ((*ping)->type, EntryType::kFile);
  EXPECT_EQ((*ping)->mode, 04755u);
  EXPECT_EQ((*ping)->mtime, kOldTime);
  auto link = image->stat("/usr/bin/long");
  ASSERT_TRUE(link && *link);
  EXPECT_EQ((*link)->symlink_target, std::string(200, 'L'));
  EXPECT_EQ(image->get_xattr("/usr/bin/ping", "security.capability").value_or(""), kCapability);
  EXPECT_EQ(image->read_file("/usr/bin/perl5.36").value_or(""), "perl binary");
  auto missing = image->stat("/usr/bin/nothing");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(*missing);
}

// Every entry of an archive, as TarReader reads it, with the content of
// regular files (holes as zeros), by path.
std::map<std::string, std::pair<TarEntry, std::string>> entries_of_archive(const fs::path& archive) {
  std::map<std::string, std::pair<TarEntry, std::string>> out;
  auto reader = TarReader::open(archive);
  EXPECT_TRUE(reader) << reader.error().to_string();
  if (!reader) return out;
  TarEntry entry;
  while (true) {
    auto more = reader->next(entry);
    EXPECT_TRUE(more) << more.error().to_string();
    if (!more || !*more) break;
    std::string content;
    if (entry.type == EntryType::kFile && entry.link_target.empty()) {
      content.assign(entry.size, '\0');
      DataChunk chunk;
      while (true) {
        auto read = reader->read_data(chunk);
        EXPECT_TRUE(read) << read.error().to_string();
        if (!read || !*read) break;
        content.replace(chunk.offset, chunk.size, chunk.data, chunk.size);
      }
    }
    out[entry.path] = {entry, std::move(content)};
  }
  return out;
}

TEST_F(ImportedRootfs, ExportsEverythingItHoldsAndReadsBackTheSame) {
  fs::path exported = *dir_ / "exported.tar";
  {
    auto image = Ext4Image::open(image_, 0, false);
    ASSERT_TRUE(image) << image.error().to_string();
    auto stats = image->export_archive(exported);
    ASSERT_TRUE(stats) << stats.error().to_string();
    EXPECT_EQ(stats->entries, 25u) << "the archive's entries, the parents the import made, and the root";
  }
  auto entries = entries_of_archive(exported);
  EXPECT_EQ(entries.count("lost+found"), 0u) << "mke2fs's, not the tree's";
  ASSERT_EQ(entries.count("usr/bin/ping"), 1u);
  const TarEntry& ping = entries["usr/bin/ping"].first;
  EXPECT_EQ(ping.mode, 04755u);
  EXPECT_EQ(ping.mtime, kOldTime);
  EXPECT_THAT(ping.xattrs, ::testing::Contains(std::pair<std::string, std::string>("security.capability", kCapability)));
  EXPECT_EQ(entries["usr/bin/ping"].second, "ping binary");
  EXPECT_EQ(entries["usr/bin/perl5.36"].first.link_target, "usr/bin/perl") << "one inode, one data, a link";
  EXPECT_EQ(entries["usr/bin/long"].first.link_target, std::string(200, 'L'));
  EXPECT_EQ(entries["home/user/notes.txt"].first.uid, 1000u);
  EXPECT_EQ(entries["home/user/notes.txt"].first.mtime, kTimestamp) << "clamped on import, kept on export";
  EXPECT_EQ(entries["tmp"].first.mode, 01777u);
  EXPECT_EQ(entries["dev/wide"].first.type, EntryType::kCharDevice);
  EXPECT_EQ(entries["dev/wide"].first.rdev_major, 300u);
  EXPECT_EQ(entries["dev/wide"].first.rdev_minor, 70000u);
  EXPECT_EQ(entries["dev/sda"].first.rdev_major, 8u);
  EXPECT_EQ(entries["run/initctl"].first.type, EntryType::kFifo);
  EXPECT_EQ(entries["usr/share/doc/big.txt"].second, pattern(300 * 1024, 'A'));
  const TarEntry& disk = entries["var/lib/disk.img"].first;
  EXPECT_TRUE(disk.sparse) << "holes stay holes";
  EXPECT_EQ(disk.size, kSparseSize);
  EXPECT_LT(fs::file_size(exported), 8 * kMiB) << "the 64 MiB sparse file is not stored whole";
  EXPECT_EQ(entries["var/lib/disk.img"].second.substr(kSparseSize / 2, 6), "middle");

  // Imported again and exported again: the same archive, byte for byte.
  fs::path again = *dir_ / "again.img";
  std::string archive = testing::read_text(exported);
  bake(again, archive, options_for(96 * kMiB));
  expect_clean(again);
  fs::path second = *dir_ / "second.tar";
  auto image = Ext4Image::open(again, 0, false);
  ASSERT_TRUE(image) << image.error().to_string();
  ASSERT_TRUE(image->export_archive(second));
  EXPECT_TRUE(testing::read_text(second) == archive) << "the second export differs from the first";
}

TEST(Ext4Image, ImportIsByteForByteReproducible) {
  ScratchDir dir;
  std::string archive = rootfs_archive();
  bake(dir / "one.img", archive, options_for(96 * kMiB));
  bake(dir / "two.img", archive, options_for(96 * kMiB));
  auto one = file_digest_hex(dir / "one.img");
  auto two = file_digest_hex(dir / "two.img");
  ASSERT_TRUE(one && two);
  EXPECT_EQ(*one, *two);
}

TEST(Ext4Image, ReportsProgressThroughTheArchive) {
  ScratchDir dir;
  ArchiveBuilder builder;
  for (int i = 0; i < 600; ++i) builder.file(fmt::format("f{}", i), "data");
  auto image = Ext4Image::format(dir / "root.img", options_for(16 * kMiB));
  ASSERT_TRUE(image);
  auto reader = TarReader::open_memory(builder.bytes(), "rootfs.tar");
  ASSERT_TRUE(reader);
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  ImportOptions options;
  options.progress = [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); };
  auto stats = image->import(*reader, options);
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->entries, 600u);
  EXPECT_EQ(stats->data_bytes, 600u * 4);
  ASSERT_GE(calls.size(), 3u);
  for (size_t i = 1; i < calls.size(); ++i) EXPECT_GE(calls[i].first, calls[i - 1].first);
  EXPECT_EQ(calls.back().first, calls.back().second);
  EXPECT_EQ(calls.back().second, reader->total_size());
}

// Ctrl-C reaches the import through base/interrupt.h. The signal flag
// cannot be reset, so this runs in a child process.
TEST(Ext4ImageDeathTest, StopsAtAnInterrupt) {
  ScratchDir dir;
  ArchiveBuilder builder;
  builder.file("etc/motd", "hi");
  std::string archive = builder.bytes();
  EXPECT_EXIT(
      {
        auto image = Ext4Image::format(dir / "root.img", options_for(8 * kMiB));
        auto reader = TarReader::open_memory(archive, "rootfs.tar");
        if (!image || !reader) std::_Exit(1);
        install_interrupt_handlers();
        std::raise(SIGINT);
        auto imported = image->import(*reader);
        std::_Exit(imported ? 0 : imported.error().exit_code());
      },
      ::testing::ExitedWithCode(static_cast<int>(ErrorKind::kInterrupted)), "");
}

TEST(Ext4Image, FormatTakesIdentityAndTimeFromTheOptions) {
  ScratchDir dir;
  ArchiveBuilder empty;
  bake(dir / "root.img", empty.directory("./").bytes(), options_for(64 * kMiB));
  auto result = testing::run_program({"dumpe2fs", "-h", (dir / "root.img").string()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const std::string& header = result.out;
  Ext4Options options = options_for(64 * kMiB);
  EXPECT_THAT(header, HasSubstr("Filesystem UUID:          " + options.uuid.to_string()));
  EXPECT_THAT(header, HasSubstr("Directory Hash Seed:      " + options.hash_seed.to_string()));
  EXPECT_THAT(header, HasSubstr("Filesystem volume name:   root"));
  EXPECT_THAT(header, HasSubstr("Filesystem state:         clean"));
  EXPECT_THAT(header, HasSubstr("Filesystem features:      has_journal ext_attr resize_inode "
                                "dir_index filetype extent 64bit flex_bg sparse_super large_file "
                                "huge_file dir_nlink extra_isize metadata_csum\n"));
  // Every time in the superblock is the given one (2023-11-14 22:13:20 UTC).
  std::smatch when;
  std::regex times(R"((Filesystem created|Last write time|Last checked):\s+(.*))");
  int found = 0;
  for (auto it = std::sregex_iterator(header.begin(), header.end(), times);
       it != std::sregex_iterator(); ++it, ++found)
    EXPECT_THAT((*it)[2].str(), HasSubstr("Nov 14 22:13:20 2023")) << (*it)[1].str();
  EXPECT_EQ(found, 3);
  expect_clean(dir / "root.img");
}

TEST(Ext4Image, LaterEntriesReplaceEarlierOnes) {
  ScratchDir dir;
  ArchiveBuilder builder;
  builder.file("etc/motd", "old")
      .file("etc/motd", "new", EntryMeta{0600, 0, 0, kTimestamp, {}})
      .file("etc/shell", "a file first")
      .symlink("etc/shell", "/bin/sh")
      .directory("var/empty")
      .file("var/empty", "was an empty directory")
      .file("etc/linked", "shared")
      .hardlink("etc/link", "etc/linked")
      .file("etc/linked", "replaced; etc/link keeps the old content")
      .directory("srv", EntryMeta{0700, 0, 0, kTimestamp, {}})
      .file("srv/data", "x")
      .directory("srv", EntryMeta{0750, 0, 0, kTimestamp, {}});
  bake(dir / "root.img", builder.bytes(), options_for(32 * kMiB));
  expect_clean(dir / "root.img");

  auto image = Ext4Image::open(dir / "root.img", 0, false);
  ASSERT_TRUE(image);
  EXPECT_EQ(image->read_file("/etc/motd").value_or(""), "new");
  EXPECT_EQ((*image->stat("/etc/motd"))->mode, 0600u);
  EXPECT_EQ((*image->stat("/etc/shell"))->symlink_target, "/bin/sh");
  EXPECT_EQ(image->read_file("/var/empty").value_or(""), "was an empty directory");
  EXPECT_EQ(image->read_file("/etc/link").value_or(""), "shared");
  EXPECT_EQ((*image->stat("/etc/link"))->links, 1u);
  EXPECT_EQ((*image->stat("/srv"))->mode, 0750u);
  EXPECT_EQ(image->read_file("/srv/data").value_or(""), "x");
}

TEST(Ext4Image, RefusesToReplaceADirectoryThatHasEntries) {
  ScratchDir dir;
  ArchiveBuilder builder;
  builder.file("etc/passwd", "root").file("etc", "not a directory");
  auto image = Ext4Image::format(dir / "root.img", options_for(16 * kMiB));
  ASSERT_TRUE(image);
  auto reader = TarReader::open_memory(builder.bytes(), "odd.tar");
  ASSERT_TRUE(reader);
  auto imported = image->import(*reader);
  ASSERT_FALSE(imported);
  EXPECT_EQ(imported.error().kind, ErrorKind::kBadInput);
  EXPECT_THAT(imported.error().message, HasSubstr("odd.tar: importing /etc"));
  EXPECT_THAT(imported.error().message, HasSubstr("non-empty directory"));
  // A failed import leaves no way to make the image look finished.
  EXPECT_FALSE(image->close());
}

TEST(Ext4Image, RunningOutOfSpaceIsANoSpaceError) {
  ScratchDir dir;
  ArchiveBuilder builder;
  builder.file("big.bin", pattern(16 * kMiB, 'b'));
  auto image = Ext4Image::format(dir / "small.img", options_for(8 * kMiB));
  ASSERT_TRUE(image);
  auto reader = TarReader::open_memory(builder.bytes(), "big.tar");
  ASSERT_TRUE(reader);
  auto imported = image->import(*reader);
  ASSERT_FALSE(imported);
  EXPECT_EQ(imported.error().kind, ErrorKind::kNoSpace);
  EXPECT_THAT(imported.error().message, HasSubstr("big.tar: importing /big.bin"));
  EXPECT_THAT(imported.error().message, HasSubstr("full"));
}

TEST(Ext4Image, RunningOutOfInodesIsANoSpaceError) {
  ScratchDir dir;
  ArchiveBuilder builder;
  for (int i = 0; i < 3000; ++i) builder.file(fmt::format("f{}", i), "");
  auto image = Ext4Image::format(dir / "small.img", options_for(8 * kMiB));  // fewer inodes than files
  ASSERT_TRUE(image);
  auto reader = TarReader::open_memory(builder.bytes(), "many.tar");
  ASSERT_TRUE(reader);
  auto imported = image->import(*reader);
  ASSERT_FALSE(imported);
  EXPECT_EQ(imported.error().kind, ErrorKind::kNoSpace);
  EXPECT_THAT(imported.error().message, HasSubstr("no free inode"));
}

// An archive with some bulk and many small files and directories.
std::string sizable_archive() {
  ArchiveBuilder builder;
  builder.file("opt/blob", pattern(6 * kMiB, 'z'));
  for (int d = 0; d < 20; ++d)
    for (int f = 0; f < 60; ++f)
      builder.file(fmt::format("usr/share/pkg{}/file-with-a-longer-name-{}", d, f), pattern(100 + f * 50, 'f'));
  builder.sparse_file("var/sparse", 32 * kMiB, {{kMiB, "data"}});
  return builder.bytes();
}

TEST(Ext4Image, MinimumSizeHoldsTheArchiveAndLessDoesNot) {
  ScratchDir dir;
  fs::path archive = dir / "rootfs.tar";
  testing::write_text(archive, sizable_archive());
  auto minimum = Ext4Image::minimum_size(archive, options_for(0));
  ASSERT_TRUE(minimum) << minimum.error().to_string();
  EXPECT_EQ(*minimum % kMiB, 0u);

  auto fits = Ext4Image::format(dir / "exact.img", options_for(*minimum));
  ASSERT_TRUE(fits);
  auto reader = TarReader::open(archive);
  ASSERT_TRUE(reader);
  auto imported = fits->import(*reader);
  ASSERT_TRUE(imported) << imported.error().to_string();
  ASSERT_TRUE(fits->close());
  expect_clean(dir / "exact.img");

  uint64_t smaller = *minimum * 3 / 4 / kMiB * kMiB;
  auto short_image = Ext4Image::format(dir / "short.img", options_for(smaller));
  ASSERT_TRUE(short_image);
  auto again = TarReader::open(archive);
  ASSERT_TRUE(again);
  auto failed = short_image->import(*again);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().kind, ErrorKind::kNoSpace);
}

TEST(Ext4Image, PathOperationsEditAnImportedImage) {
  ScratchDir dir;
  fs::path path = dir / "root.img";
  {
    auto image = Ext4Image::format(path, options_for(32 * kMiB));
    ASSERT_TRUE(image);
    auto reader = TarReader::open_memory(rootfs_archive(), "rootfs.tar");
    ASSERT_TRUE(reader);
    ASSERT_TRUE(image->import(*reader));

    Ext4Attributes root_file{0644, 0, 0, kTimestamp};
    ASSERT_TRUE(image->make_directory("/etc", {0755, 0, 0, kTimestamp}));
    ASSERT_TRUE(image->write_file("/etc/hostname", "web1\n", root_file));
    ASSERT_TRUE(image->write_file("/home/user/notes.txt", "rewritten", root_file));
    ASSERT_TRUE(image->make_symlink("/etc/localtime", "/usr/share/zoneinfo/UTC", root_file));
    ASSERT_TRUE(image->make_symlink("/etc/long", std::string(100, 'x'), root_file));
    ASSERT_TRUE(image->set_mode("/usr/bin/ping", 0755));
    ASSERT_TRUE(image->set_owner("/etc/hostname", 1000, 1001));
    ASSERT_TRUE(image->set_xattr("/etc/hostname", "user.origin", "kiln"));
    ASSERT_TRUE(image->remove("/usr/bin/perl5.36"));
    auto not_empty = image->remove("/usr/share");
    ASSERT_FALSE(not_empty);
    EXPECT_THAT(not_empty.error().message, HasSubstr("/usr/share: directory not empty"));
    ASSERT_TRUE(image->remove("/usr/share", true));
    ASSERT_TRUE(image->remove("/var/lib/disk.img"));

    auto missing = image->read_file("/etc/foo");
    ASSERT_FALSE(missing);
    EXPECT_THAT(missing.error().message, HasSubstr("/etc/foo: no such file or directory in the image"));
    auto no_parent = image->write_file("/nowhere/file", "x", root_file);
    ASSERT_FALSE(no_parent);
    EXPECT_THAT(no_parent.error().message, HasSubstr("/nowhere: no such file or directory in the image"));
    EXPECT_FALSE(image->remove("/etc/foo"));
    EXPECT_FALSE(image->set_mode("/etc/foo", 0600));
    ASSERT_TRUE(image->close());
  }
  expect_clean(path);

  auto image = Ext4Image::open(path);
  ASSERT_TRUE(image) << image.error().to_string();
  EXPECT_EQ(image->read_file("/etc/hostname").value_or(""), "web1\n");
  auto hostname = image->stat("/etc/hostname");
  ASSERT_TRUE(hostname && *hostname);
  EXPECT_EQ((*hostname)->uid, 1000u);
  EXPECT_EQ((*hostname)->gid, 1001u);
  EXPECT_EQ(image->get_xattr("/etc/hostname", "user.origin").value_or(std::nullopt), "kiln");
  EXPECT_EQ(image->get_xattr("/etc/hostname", "user.absent").value_or("?"), std::nullopt);
  // Replacing content keeps the file's owner, mode and attributes.
  auto notes = image->stat("/home/user/notes.txt");
  ASSERT_TRUE(notes && *notes);
  EXPECT_EQ((*notes)->uid, 1000u);
  EXPECT_EQ((*notes)->mode, 0640u);
  EXPECT_EQ(image->read_file("/home/user/notes.txt").value_or(""), "rewritten");
  EXPECT_EQ(image->get_xattr("/home/user/notes.txt", "user.comment").value_or(std::nullopt), "kiln");
  EXPECT_EQ((*image->stat("/etc/localtime"))->symlink_target, "/usr/share/zoneinfo/UTC");
  EXPECT_EQ((*image->stat("/etc/long"))->symlink_target, std::string(100, 'x'));
  EXPECT_EQ((*image->stat("/usr/bin/ping"))->mode, 0755u);
  EXPECT_EQ((*image->stat("/usr/bin/perl"))->links, 1u);
  EXPECT_FALSE(*image->stat("/usr/share"));
  EXPECT_EQ(image->list_directory("/etc").value_or(std::vector<std::string>{}),
            (std::vector<std::string>{"hostname", "localtime", "long"}));
  // Writes on the second handle work too.
  ASSERT_TRUE(image->write_file("/etc/hostname", "web2\n", {0644, 0, 0, kTimestamp}));
  ASSERT_TRUE(image->close());
  expect_clean(path);
}

TEST(Ext4Image, GrowsADirectoryPastOneBlock) {
  ScratchDir dir;
  ArchiveBuilder builder;
  for (int i = 0; i < 1500; ++i) builder.file(fmt::format("lib/module-{:04}.ko", i), "m");
  fs::path path = dir / "root.img";
  bake(path, builder.bytes(), options_for(32 * kMiB));
  auto image = Ext4Image::open(path);
  ASSERT_TRUE(image);
  // The directory spans many blocks; adding names goes through libext2fs.
  for (int i = 0; i < 300; ++i)
    ASSERT_TRUE(image->write_file(fmt::format("/lib/added-{}", i), "a", {0644, 0, 0, kTimestamp}));
  EXPECT_EQ(image->list_directory("/lib").value_or(std::vector<std::string>{}).size(), 1800u);
  ASSERT_TRUE(image->close());
  expect_clean(path);
}

TEST(Ext4Image, ImportsCpioHardlinksWithTheirData) {
  ScratchDir dir;
  ArchiveBuilder builder(ArchiveFormat::kCpioNewc, ArchiveFilter::kGzip);
  builder.directory(".").cpio_linked_file({"bin/busybox", "bin/sh", "bin/ls"}, "busybox", 42).socket("run/sock");
  fs::path path = dir / "initrd.img";
  bake(path, builder.bytes(), options_for(8 * kMiB));
  expect_clean(path);
  auto image = Ext4Image::open(path, 0, false);
  ASSERT_TRUE(image);
  EXPECT_EQ(image->read_file("/bin/ls").value_or(""), "busybox");
  EXPECT_EQ((*image->stat("/bin/busybox"))->links, 3u);
  EXPECT_EQ((*image->stat("/run/sock"))->type, EntryType::kSocket);
}

TEST(Ext4Image, WritesInsideALargerFileAtAnOffset) {
  ScratchDir dir;
  fs::path disk = dir / "disk.raw";
  const uint64_t offset = kMiB;
  const uint64_t size = 32 * kMiB;
  // Bytes before and after the partition belong to someone else.
  {
    std::ofstream out(disk, std::ios::binary);
    std::string before = pattern(offset, 'p');
    out.write(before.data(), static_cast<std::streamsize>(before.size()));
    out.seekp(static_cast<std::streamoff>(offset + size));
    out.write("TRAILER", 7);
  }
  Ext4Options options = options_for(size);
  options.offset_bytes = offset;
  bake(disk, rootfs_archive(), options);

  std::string bytes = testing::read_text(disk);
  EXPECT_EQ(bytes.substr(0, offset), pattern(offset, 'p'));
  EXPECT_EQ(bytes.substr(offset + size), "TRAILER");
  testing::write_text(dir / "part.img", bytes.substr(offset, size));
  expect_clean(dir / "part.img");
  auto image = Ext4Image::open(disk, offset, false);
  ASSERT_TRUE(image) << image.error().to_string();
  EXPECT_EQ(image->read_file("/usr/bin/perl").value_or(""), "perl binary");
}

class OlderFilesystemTypes : public ::testing::TestWithParam<std::string> {};

TEST_P(OlderFilesystemTypes, HoldTheSameRootfs) {
  ScratchDir dir;
  fs::path path = dir / "root.img";
  bake(path, rootfs_archive(), options_for(96 * kMiB, GetParam()));
  expect_clean(path);
  auto header = testing::run_program({"dumpe2fs", "-h", path.string()});
  EXPECT_THAT(header.out, Not(HasSubstr("extent")));
  bool journal = GetParam() == "ext3";
  EXPECT_EQ(header.out.find("has_journal") != std::string::npos, journal);
  std::string sparse = debugfs(path, "stat /var/lib/disk.img");
  EXPECT_LT(number_after(sparse, "Blockcount:"), 100u);  // data and indirect blocks only
  auto image = Ext4Image::open(path, 0, false);
  ASSERT_TRUE(image);
  EXPECT_EQ(image->read_file("/usr/share/doc/big.txt").value_or(""), pattern(300 * 1024, 'A'));
  EXPECT_EQ((*image->stat("/usr/bin/long"))->symlink_target, std::string(200, 'L'));
}

INSTANTIATE_TEST_SUITE_P(Ext4Image, OlderFilesystemTypes, ::testing::Values("ext3", "ext2"));

TEST(Ext4Image, AnImageDroppedWithoutCloseIsNotClean) {
  ScratchDir dir;
  fs::path path = dir / "root.img";
  {
    auto image = Ext4Image::format(path, options_for(32 * kMiB));
    ASSERT_TRUE(image);
    auto reader = TarReader::open_memory(rootfs_archive(), "rootfs.tar");
    ASSERT_TRUE(reader);
    ASSERT_TRUE(image->import(*reader));
  }
  auto header = testing::run_program({"dumpe2fs", "-h", path.string()});
  EXPECT_THAT(header.out, HasSubstr("Filesystem state:         not clean"));
}

TEST(Ext4Image, ReadOnlyImagesRefuseChanges) {
  ScratchDir dir;
  fs::path path = dir / "root.img";
  ArchiveBuilder builder;
  bake(path, builder.file("etc/motd", "hi").bytes(), options_for(8 * kMiB));
  auto image = Ext4Image::open(path, 0, false);
  ASSERT_TRUE(image);
  auto written = image->write_file("/etc/motd", "changed", {});
  ASSERT_FALSE(written);
  EXPECT_THAT(written.error().message, HasSubstr("read-only"));
  EXPECT_EQ(image->read_file("/etc/motd").value_or(""), "hi");
}

TEST(Ext4Image, RejectsBadOptionsBeforeTouchingTheImage) {
  ScratchDir dir;
  Ext4Options odd = options_for(10 * kMiB + 1);
  auto result = Ext4Image::format(dir / "odd.img", odd);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().kind, ErrorKind::kBadInput);
  Ext4Options xfs = options_for(16 * kMiB, "xfs");
  EXPECT_THAT(Ext4Image::format(dir / "xfs.img", xfs).error().message, HasSubstr("'xfs'"));
  Ext4Options no_time = options_for(16 * kMiB);
  no_time.timestamp = 0;
  EXPECT_THAT(Ext4Image::format(dir / "t.img", no_time).error().message, HasSubstr("SOURCE_DATE_EPOCH"));
  EXPECT_FALSE(fs::exists(dir / "odd.img"));
}

TEST(Ext4Image, OpeningSomethingElseSaysSo) {
  ScratchDir dir;
  testing::write_text(dir / "zeros.img", std::string(2 * kMiB, '\0'));
  auto image = Ext4Image::open(dir / "zeros.img");
  ASSERT_FALSE(image);
  EXPECT_EQ(image.error().kind, ErrorKind::kBadInput);
  EXPECT_THAT(image.error().message, HasSubstr("zeros.img: no ext2/ext3/ext4 filesystem there"));
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

// What a removed or rewritten file held must not stay in the image's free
// blocks: ssh host keys are removed this way, and free blocks that depend on
// history would make rebakes differ.
void expect_removed_bytes_are_gone(uint64_t offset) {
  ScratchDir dir;
  fs::path disk = dir / "disk.raw";
  const std::string secret = "-----BEGIN OPENSSH PRIVATE KEY----- " + pattern(9000, 's');
  const std::string old_shadow = "root:OLD-HASH-" + pattern(5000, 'h');
  {
    std::ofstream out(disk, std::ios::binary);
    std::string before = pattern(offset, 'p');
    out.write(before.data(), static_cast<std::streamsize>(before.size()));
  }
  Ext4Options options = options_for(16 * kMiB);
  options.offset_bytes = offset;
  auto image = Ext4Image::format(disk, options);
  ASSERT_TRUE(image) << image.error().to_string();
  ASSERT_TRUE(image->write_file("/host_key", secret, {0600, 0, 0, kTimestamp}));
  ASSERT_TRUE(image->write_file("/shadow", old_shadow, {0640, 0, 42, kTimestamp}));
  ASSERT_TRUE(image->close());
  ASSERT_NE(testing::read_text(disk).find(secret), std::string::npos);

  auto edit = Ext4Image::open(disk, offset, true);
  ASSERT_TRUE(edit);
  ASSERT_TRUE(edit->remove("/host_key"));
  ASSERT_TRUE(edit->write_file("/shadow", "root:NEW\n", {0640, 0, 42, kTimestamp}));
  ASSERT_TRUE(edit->close());

  std::string bytes = testing::read_text(disk);
  EXPECT_EQ(bytes.find("OPENSSH PRIVATE KEY"), std::string::npos);
  EXPECT_EQ(bytes.find("OLD-HASH"), std::string::npos);
  EXPECT_EQ(bytes.substr(0, offset), pattern(offset, 'p'));
  testing::write_text(dir / "part.img", bytes.substr(offset, 16 * kMiB));
  expect_clean(dir / "part.img");
}

TEST(Ext4Image, RemovedContentIsClearedFromTheImage) { expect_removed_bytes_are_gone(0); }

TEST(Ext4Image, RemovedContentIsClearedInsideALargerFile) { expect_removed_bytes_are_gone(kMiB); }

// The reference for what an archive's tree should become: `mke2fs -d` of
// the same tree.
void mke2fs_from_tree(const fs::path& tree, const fs::path& image) {
  // kiln's block and inode sizes, which mke2fs.conf would pick otherwise
  // for so small a filesystem.
  auto made = testing::run_program({"mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-d",
                                    tree.string(), image.string(), "16M"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
}

void import_file(const fs::path& archive, const fs::path& image) {
  auto ext4 = Ext4Image::format(image, options_for(16 * kMiB));
  ASSERT_TRUE(ext4) << ext4.error().to_string();
  auto reader = TarReader::open(archive);
  ASSERT_TRUE(reader) << reader.error().to_string();
  auto imported = ext4->import(*reader);
  ASSERT_TRUE(imported) << imported.error().to_string();
  ASSERT_TRUE(ext4->close());
}

std::optional<std::string> xattr_of(const fs::path& image, const std::string& path, const std::string& name) {
  auto ext4 = Ext4Image::open(image, 0, false);
  EXPECT_TRUE(ext4) << ext4.error().to_string();
  if (!ext4) return std::nullopt;
  auto value = ext4->get_xattr(path, name);
  EXPECT_TRUE(value) << value.error().to_string();
  return value ? *value : std::nullopt;
}

// GNU tar --acls stores POSIX ACLs as pax SCHILY.acl records; they must
// land as the same system.posix_acl_* attributes, and the same mode (its
// group bits are the ACL mask), as mke2fs -d gives the tree itself.
TEST(Ext4Image, KeepsPosixAclsFromTarAsMke2fsDoes) {
  for (const char* program : {"setfacl", "tar", "mke2fs"})
    if (!find_program(program)) GTEST_SKIP() << program << " is not installed";
  ScratchDir dir;
  fs::path tree = dir / "tree";
  fs::create_directories(tree / "shared");
  testing::write_text(tree / "shared" / "notes", "acl\n");
  fs::permissions(tree / "shared" / "notes", fs::perms(0640));
  auto access = testing::run_program({"setfacl", "-m", "u:1234:rwx,g:55:r-x", (tree / "shared" / "notes").string()});
  if (access.exit_code != 0) GTEST_SKIP() << "the scratch filesystem takes no ACLs: " << access.err;
  ASSERT_EQ(testing::run_program({"setfacl", "-d", "-m", "u:1234:rx,g::r-x", (tree / "shared").string()}).exit_code, 0);
  auto packed = testing::run_program({"tar", "--format=posix", "--acls", "--numeric-owner", "-cf",
                                      (dir / "acl.tar").string(), "-C", tree.string(), "."});
  ASSERT_EQ(packed.exit_code, 0) << packed.err;

  import_file(dir / "acl.tar", dir / "ours.img");
  mke2fs_from_tree(tree, dir / "reference.img");
  expect_clean(dir / "ours.img");

  auto ours = Ext4Image::open(dir / "ours.img", 0, false);
  auto reference = Ext4Image::open(dir / "reference.img", 0, false);
  ASSERT_TRUE(ours && reference);
  auto our_stat = ours->stat("/shared/notes");
  auto reference_stat = reference->stat("/shared/notes");
  ASSERT_TRUE(our_stat && *our_stat && reference_stat && *reference_stat);
  EXPECT_EQ((*our_stat)->mode, 0670u);  // the mask rwx in the group bits
  EXPECT_EQ((*our_stat)->mode, (*reference_stat)->mode);

  auto access_acl = xattr_of(dir / "ours.img", "/shared/notes", "system.posix_acl_access");
  ASSERT_TRUE(access_acl.has_value()) << "no access ACL";
  EXPECT_EQ(access_acl, xattr_of(dir / "reference.img", "/shared/notes", "system.posix_acl_access"));
  auto default_acl = xattr_of(dir / "ours.img", "/shared", "system.posix_acl_default");
  ASSERT_TRUE(default_acl.has_value()) << "no default ACL";
  EXPECT_EQ(default_acl, xattr_of(dir / "reference.img", "/shared", "system.posix_acl_default"));
  // debugfs shows the ACL as libext2fs stored it, decoded.
  EXPECT_THAT(debugfs(dir / "ours.img", "ea_list /shared/notes"), HasSubstr("system.posix_acl_access"));
}

// A file stored whole in the archive may still hold blocks of zeros;
// mke2fs -d leaves them unallocated, and so does the import.
TEST(Ext4Image, BlocksOfZerosBecomeHolesAsMke2fsMakesThem) {
  if (!find_program("mke2fs")) GTEST_SKIP() << "mke2fs is not installed";
  ScratchDir dir;
  const std::string zeros(64 * 1024, '\0');
  const std::string mixed = pattern(4096, 'a') + std::string(8192, '\0') + pattern(4096, 'b') +
                            std::string(5000, '\0') + "end" + std::string(100, '\0');
  fs::create_directories(dir / "tree");
  testing::write_text(dir / "tree" / "zeros", zeros);
  testing::write_text(dir / "tree" / "mixed", mixed);
  ArchiveBuilder builder;
  builder.file("zeros", zeros).file("mixed", mixed);
  builder.write_to(dir / "zeros.tar");

  import_file(dir / "zeros.tar", dir / "ours.img");
  mke2fs_from_tree(dir / "tree", dir / "reference.img");
  expect_clean(dir / "ours.img");
  for (const std::string name : {"/zeros", "/mixed"}) {
    uint64_t ours = number_after(debugfs(dir / "ours.img", "stat " + name), "Blockcount:");
    uint64_t reference = number_after(debugfs(dir / "reference.img", "stat " + name), "Blockcount:");
    EXPECT_EQ(ours, reference) << name;
  }
  EXPECT_EQ(number_after(debugfs(dir / "ours.img", "stat /zeros"), "Blockcount:"), 0u);
  EXPECT_EQ(number_after(debugfs(dir / "ours.img", "stat /mixed"), "Blockcount:"), 3u * 8u);
  auto ours = Ext4Image::open(dir / "ours.img", 0, false);
  ASSERT_TRUE(ours);
  EXPECT_EQ(ours->read_file("/mixed").value_or(""), mixed);
  EXPECT_EQ(ours->read_file("/zeros").value_or("missing"), zeros);
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

// copy_file_to streams what read_file returns, extent by extent, on ext4
// (extents) and ext2 (block maps) alike, through a symlink too.
TEST(Ext4CopyFileTo, WritesWhatReadFileReturns) {
  for (std::string type : {"ext4", "ext2"}) {
    testing::ScratchDir dir;
    auto image = Ext4Image::format(dir / "fs.img", options_for(32 * kMiB, type));
    ASSERT_TRUE(image) << image.error().to_string();
    std::string big;
    for (int i = 0; big.size() < (9 << 20) + 123; ++i) big += fmt::format("{:08x}", i * 2654435761u);
    ASSERT_TRUE(image->make_directory("/boot", {0755, 0, 0, kTimestamp}));
    ASSERT_TRUE(image->write_file("/boot/initrd", big, {0644, 0, 0, kTimestamp}));
    ASSERT_TRUE(image->make_symlink("/initrd.img", "boot/initrd", {0777, 0, 0, kTimestamp}));
    ASSERT_TRUE(image->write_file("/small", "tiny", {0644, 0, 0, kTimestamp}));
    for (std::string path : {"/initrd.img", "/small"}) {
      auto out = open_file(dir / "copy", O_RDWR | O_CREAT | O_TRUNC, 0600);
      ASSERT_TRUE(out);
      ASSERT_TRUE(::pwrite(out->get(), "stale content longer than tiny", 30, 0) == 30);
      auto copied = image->copy_file_to(path, out->get());
      ASSERT_TRUE(copied) << copied.error().to_string();
      EXPECT_EQ(testing::read_text(dir / "copy"), *image->read_file(path)) << type << " " << path;
    }
    EXPECT_FALSE(image->copy_file_to("/boot", -1)) << "a directory is no file to copy";
  }
}

}  // namespace
}  // namespace kiln
