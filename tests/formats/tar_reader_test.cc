#include "formats/tar_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/formats/archive_builder.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using testing::ArchiveBuilder;
using testing::ArchiveFilter;
using testing::ArchiveFormat;
using testing::EntryMeta;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

std::vector<TarEntry> read_all(TarReader& reader) {
  std::vector<TarEntry> entries;
  TarEntry entry;
  for (;;) {
    auto more = reader.next(entry);
    EXPECT_TRUE(more) << more.error().to_string();
    if (!more || !*more) break;
    entries.push_back(entry);
  }
  return entries;
}

// All data of the current entry, holes as zeros, checking offsets rise.
std::string read_content(TarReader& reader, uint64_t size) {
  std::string out(size, '\0');
  DataChunk chunk;
  uint64_t last_end = 0;
  for (;;) {
    auto more = reader.read_data(chunk);
    EXPECT_TRUE(more) << more.error().to_string();
    if (!more || !*more) break;
    EXPECT_GE(chunk.offset, last_end);
    EXPECT_LE(chunk.offset + chunk.size, size);
    out.replace(chunk.offset, chunk.size, chunk.data, chunk.size);
    last_end = chunk.offset + chunk.size;
  }
  return out;
}

TEST(TarReader, ReadsEveryEntryTypeWithItsMetadata) {
  EntryMeta owned{04755, 1000, 1000, 1234567890, {{"security.capability", std::string("\x01\x02", 2)}}};
  ArchiveBuilder builder;
  builder.directory("./usr/", EntryMeta{0755, 0, 0, 1500000000, {}})
      .file("./usr/tool", "binary", owned)
      .symlink("./usr/short", "tool")
      .hardlink("./usr/again", "./usr/tool")
      .device("./dev/null", false, 1, 3)
      .device("./dev/sda", true, 8, 0)
      .fifo("./run/fifo");
  auto reader = TarReader::open_memory(builder.bytes(), "rootfs.tar");
  ASSERT_TRUE(reader) << reader.error().to_string();
  std::vector<TarEntry> entries = read_all(*reader);
  ASSERT_EQ(entries.size(), 7u);

  EXPECT_EQ(entries[0].path, "usr");
  EXPECT_EQ(entries[0].type, EntryType::kDirectory);
  EXPECT_EQ(entries[0].mtime, 1500000000);

  const TarEntry& tool = entries[1];
  EXPECT_EQ(tool.path, "usr/tool");
  EXPECT_EQ(tool.type, EntryType::kFile);
  EXPECT_EQ(tool.mode, 04755u);
  EXPECT_EQ(tool.uid, 1000u);
  EXPECT_EQ(tool.gid, 1000u);
  EXPECT_EQ(tool.mtime, 1234567890);
  EXPECT_EQ(tool.size, 6u);
  EXPECT_FALSE(tool.sparse);
  // pax stores an attribute twice (SCHILY and LIBARCHIVE); it is read once.
  EXPECT_THAT(tool.xattrs, ElementsAre(Pair("security.capability", std::string("\x01\x02", 2))));

  EXPECT_EQ(entries[2].type, EntryType::kSymlink);
  EXPECT_EQ(entries[2].link_target, "tool");
  EXPECT_EQ(entries[3].type, EntryType::kHardlink);
  EXPECT_EQ(entries[3].link_target, "usr/tool");
  EXPECT_EQ(entries[4].type, EntryType::kCharDevice);
  EXPECT_EQ(entries[4].rdev_major, 1u);
  EXPECT_EQ(entries[4].rdev_minor, 3u);
  EXPECT_EQ(entries[5].type, EntryType::kBlockDevice);
  EXPECT_EQ(entries[5].rdev_major, 8u);
  EXPECT_EQ(entries[6].type, EntryType::kFifo);
}

TEST(TarReader, NormalisesPaths) {
  ArchiveBuilder builder;
  builder.directory("./").directory("usr//lib/").file("./usr/./lib/x", "x");
  auto reader = TarReader::open_memory(builder.bytes(), "paths.tar");
  ASSERT_TRUE(reader);
  std::vector<TarEntry> entries = read_all(*reader);
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].path, "");
  EXPECT_EQ(entries[1].path, "usr/lib");
  EXPECT_EQ(entries[2].path, "usr/lib/x");
}

// Returns the error the reader gives for an archive holding one bad entry.
Error first_error(ArchiveBuilder& builder, const std::string& name) {
  auto reader = TarReader::open_memory(builder.bytes(), name);
  EXPECT_TRUE(reader);
  TarEntry entry;
  for (;;) {
    auto more = reader->next(entry);
    if (!more) return more.error();
    if (!*more) break;
  }
  ADD_FAILURE() << "the archive was read without an error";
  return {};
}

TEST(TarReader, RejectsPathsLeavingTheRoot) {
  ArchiveBuilder parent;
  parent.file("../etc/passwd", "root::0:0::/:/bin/sh\n");
  Error error = first_error(parent, "evil.tar");
  EXPECT_EQ(error.kind, ErrorKind::kBadInput);
  EXPECT_THAT(error.message, HasSubstr("evil.tar"));
  EXPECT_THAT(error.message, HasSubstr("'../etc/passwd'"));
  EXPECT_THAT(error.message, HasSubstr(".."));

  ArchiveBuilder inner;
  inner.file("usr/../../etc/shadow", "x");
  EXPECT_THAT(first_error(inner, "evil.tar").message, HasSubstr("usr/../../etc/shadow"));
}

TEST(TarReader, RejectsAbsolutePaths) {
  ArchiveBuilder absolute;
  absolute.file("/etc/passwd", "x");
  Error error = first_error(absolute, "abs.tar");
  EXPECT_EQ(error.kind, ErrorKind::kBadInput);
  EXPECT_THAT(error.message, HasSubstr("abs.tar: entry '/etc/passwd' has an absolute path"));

  ArchiveBuilder link;
  link.file("etc/passwd", "x").hardlink("etc/copy", "/etc/passwd");
  EXPECT_THAT(first_error(link, "link.tar").message, HasSubstr("absolute hardlink target"));
}

TEST(TarReader, ReadsSparseFilesAsDataWithHoles) {
  const uint64_t size = 1 << 20;
  ArchiveBuilder builder;
  builder.sparse_file("disk.img", size, {{0, "head"}, {500000, "middle"}, {size - 4, "tail"}});
  auto reader = TarReader::open_memory(builder.bytes(), "sparse.tar");
  ASSERT_TRUE(reader);
  TarEntry entry;
  ASSERT_TRUE(reader->next(entry).value_or(false));
  EXPECT_EQ(entry.size, size);
  EXPECT_TRUE(entry.sparse);
  ASSERT_EQ(entry.data_regions.size(), 3u);
  EXPECT_EQ(entry.data_regions[1].offset, 500000u);
  EXPECT_EQ(entry.data_regions[1].length, 6u);

  std::string content = read_content(*reader, size);
  EXPECT_EQ(content.substr(0, 4), "head");
  EXPECT_EQ(content.substr(500000, 6), "middle");
  EXPECT_EQ(content.substr(size - 4), "tail");
  EXPECT_EQ(std::count(content.begin(), content.end(), '\0'), static_cast<long>(size - 14));
}

struct FormatCase {
  const char* name;
  ArchiveFormat format;
  ArchiveFilter filter;
};

class TarReaderFormats : public ::testing::TestWithParam<FormatCase> {};

TEST_P(TarReaderFormats, DetectsFormatAndCompression) {
  testing::ScratchDir dir;
  ArchiveBuilder builder(GetParam().format, GetParam().filter);
  builder.directory("etc").file("etc/hostname", "kiln\n", EntryMeta{0600, 0, 42, 1600000000, {}});
  std::filesystem::path path = builder.write_to(dir / GetParam().name);

  auto reader = TarReader::open(path);
  ASSERT_TRUE(reader) << reader.error().to_string();
  EXPECT_EQ(reader->name(), path.string());
  EXPECT_EQ(reader->total_size(), std::filesystem::file_size(path));
  TarEntry entry;
  ASSERT_TRUE(reader->next(entry).value_or(false));
  EXPECT_EQ(entry.type, EntryType::kDirectory);
  ASSERT_TRUE(reader->next(entry).value_or(false));
  EXPECT_EQ(entry.path, "etc/hostname");
  EXPECT_EQ(entry.mode, 0600u);
  EXPECT_EQ(entry.gid, 42u);
  EXPECT_EQ(read_content(*reader, entry.size), "kiln\n");
  EXPECT_FALSE(reader->next(entry).value_or(true));
  EXPECT_EQ(reader->position(), reader->total_size());
}

INSTANTIATE_TEST_SUITE_P(
    AllFormats, TarReaderFormats,
    ::testing::Values(FormatCase{"root.tar", ArchiveFormat::kPax, ArchiveFilter::kNone},
                      FormatCase{"root-gnu.tar", ArchiveFormat::kGnuTar, ArchiveFilter::kNone},
                      FormatCase{"root-ustar.tar", ArchiveFormat::kUstar, ArchiveFilter::kNone},
                      FormatCase{"root.tar.gz", ArchiveFormat::kPax, ArchiveFilter::kGzip},
                      FormatCase{"root.tar.xz", ArchiveFormat::kPax, ArchiveFilter::kXz},
                      FormatCase{"root.tar.zst", ArchiveFormat::kPax, ArchiveFilter::kZstd},
                      FormatCase{"root.cpio", ArchiveFormat::kCpioNewc, ArchiveFilter::kNone},
                      FormatCase{"root-odc.cpio", ArchiveFormat::kCpioOdc, ArchiveFilter::kNone},
                      FormatCase{"initrd.cpio.gz", ArchiveFormat::kCpioNewc, ArchiveFilter::kGzip}),
    [](const auto& info) {
      std::string name = info.param.name;
      std::replace_if(name.begin(), name.end(), [](char c) { return !std::isalnum(c); }, '_');
      return name;
    });

TEST(TarReader, ReadsCpioSocketsAndHardlinkData) {
  ArchiveBuilder builder(ArchiveFormat::kCpioNewc, ArchiveFilter::kGzip);
  builder.socket("run/sock").cpio_linked_file({"bin/a", "bin/b"}, "shared", 77);
  auto reader = TarReader::open_memory(builder.bytes(), "initrd.cpio.gz");
  ASSERT_TRUE(reader);
  TarEntry entry;
  ASSERT_TRUE(reader->next(entry).value_or(false));
  EXPECT_EQ(entry.type, EntryType::kSocket);
  ASSERT_TRUE(reader->next(entry).value_or(false));
  EXPECT_EQ(entry.path, "bin/a");
  EXPECT_EQ(entry.type, EntryType::kFile);
  EXPECT_EQ(entry.size, 0u);
  ASSERT_TRUE(reader->next(entry).value_or(false));
  EXPECT_EQ(entry.path, "bin/b");
  EXPECT_EQ(entry.type, EntryType::kHardlink);
  EXPECT_EQ(entry.link_target, "bin/a");
  EXPECT_EQ(read_content(*reader, entry.size), "shared");
}

TEST(TarReader, SkipsUnreadData) {
  ArchiveBuilder builder;
  builder.file("a", std::string(100000, 'a')).file("b", "b");
  auto reader = TarReader::open_memory(builder.bytes(), "skip.tar");
  ASSERT_TRUE(reader);
  TarEntry entry;
  ASSERT_TRUE(reader->next(entry).value_or(false));
  ASSERT_TRUE(reader->next(entry).value_or(false));
  EXPECT_EQ(entry.path, "b");
  EXPECT_EQ(read_content(*reader, entry.size), "b");
}

TEST(TarReader, NamesTheFileThatIsNoArchive) {
  testing::ScratchDir dir;
  testing::write_text(dir / "notes.txt", "these are not the files you are looking for\n");
  auto reader = TarReader::open(dir / "notes.txt");
  std::string message = reader ? "" : reader.error().message;
  if (reader) {
    TarEntry entry;
    auto next = reader->next(entry);
    ASSERT_FALSE(next);
    message = next.error().message;
  }
  EXPECT_THAT(message, HasSubstr("notes.txt"));

  auto missing = TarReader::open(dir / "missing.tar");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message, HasSubstr("missing.tar"));
}

TEST(TarReader, ReportsATruncatedArchive) {
  ArchiveBuilder builder;
  builder.file("big", std::string(50000, 'x')).file("after", "y");
  std::string bytes = builder.bytes();
  auto reader = TarReader::open_memory(bytes.substr(0, 20000), "cut.tar");
  ASSERT_TRUE(reader);
  TarEntry entry;
  ASSERT_TRUE(reader->next(entry).value_or(false));
  DataChunk chunk;
  Result<bool> more = true;
  while (more && *more) more = reader->read_data(chunk);
  if (more) more = reader->next(entry);
  ASSERT_FALSE(more);
  EXPECT_EQ(more.error().kind, ErrorKind::kBadInput);
  EXPECT_THAT(more.error().message, HasSubstr("cut.tar"));
}

}  // namespace
}  // namespace kiln
