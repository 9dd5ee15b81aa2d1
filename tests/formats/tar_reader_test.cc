#include "formats/tree/tar_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "base/subprocess.h"
#include "formats/tree/cpio_header_check.h"
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

// A cpio newc entry written by hand, so that its sizes can lie.
std::string newc_entry(const std::string& name, uint32_t mode, const std::string& data,
                       uint64_t namesize, uint64_t filesize) {
  std::string header = fmt::format("070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                                   1, mode, 0, 0, 1, 1600000000, filesize, 0, 0, 0, 0, namesize, 0);
  std::string out = header + name + '\0';
  out.append((4 - out.size() % 4) % 4, '\0');
  out += data;
  out.append((4 - out.size() % 4) % 4, '\0');
  return out;
}

std::string newc_entry(const std::string& name, uint32_t mode, const std::string& data) {
  return newc_entry(name, mode, data, name.size() + 1, data.size());
}

std::string newc_trailer() { return newc_entry("TRAILER!!!", 0, ""); }

// The error reading `reader` ends in: opening reads the first block, so a
// refusal may come from open() or from a later next().
Error reading_error(Result<TarReader> reader) {
  if (!reader) return reader.error();
  TarEntry entry;
  for (;;) {
    auto more = reader->next(entry);
    if (!more) return more.error();
    if (!*more) break;
  }
  ADD_FAILURE() << "the archive was read without an error";
  return {};
}

// Found by fuzzing TarReader::next: a 1.5 KiB cpio whose second header
// declares a 3 GiB name made libarchive allocate 3 GiB to read it whole.
std::string cpio_with_huge_name() {
  std::string cpio = newc_entry("etc", 040755, "") + newc_entry("etc/motd", 0100644, std::string(1200, 'm'));
  cpio += newc_entry("x", 0100644, "", 0xC0000000ull, 0);
  return cpio;
}

TEST(TarReader, RefusesACpioNameSizeBeforeLibarchiveAllocatesIt) {
  std::string cpio = cpio_with_huge_name();
  ASSERT_LT(cpio.size(), 1600u);
  Error error = reading_error(TarReader::open_memory(cpio, "huge-name.cpio"));
  EXPECT_EQ(error.kind, ErrorKind::kBadInput);
  EXPECT_THAT(error.message,
              HasSubstr("huge-name.cpio: the cpio header at byte 1436 of the uncompressed archive "
                        "declares a name of 3221225471 bytes; kiln reads names of at most 4096"));
}

TEST(TarReader, RefusesAHugeCpioNameInsideCompression) {
  testing::ScratchDir dir;
  std::filesystem::path plain = dir / "huge.cpio";
  testing::write_text(plain, cpio_with_huge_name());
  auto gzip = testing::run_program({"gzip", "-k", plain.string()});
  ASSERT_EQ(gzip.exit_code, 0) << gzip.err;
  EXPECT_THAT(reading_error(TarReader::open(dir / "huge.cpio.gz")).message,
              HasSubstr("declares a name of 3221225471 bytes"));
}

TEST(TarReader, RefusesACpioSymlinkTargetOverTheLimit) {
  std::string cpio = newc_entry("link", 0120777, "", 5, 2u << 20) + std::string(64, 'x');
  EXPECT_THAT(reading_error(TarReader::open_memory(cpio, "long-link.cpio")).message,
              HasSubstr("declares a symlink target of 2097152 bytes; kiln reads targets of at most 4095"));
}

// libarchive finds a cpio header past junk, so a header anywhere counts,
// also one split between two pieces of the stream.
TEST(CpioHeaderCheck, ChecksHeadersSplitAcrossPiecesAndAfterJunk) {
  std::string stream = newc_entry("a", 0100644, "a") + "junk" +
                       newc_entry("b", 0100644, "", 1u << 20, 0);
  for (size_t piece : {size_t{1}, size_t{7}, size_t{64}, stream.size()}) {
    CpioHeaderCheck check;
    Result<> result;
    for (size_t at = 0; result && at < stream.size(); at += piece)
      result = check.check("junk.cpio", stream.data() + at, std::min(piece, stream.size() - at));
    ASSERT_FALSE(result) << "pieces of " << piece;
    EXPECT_THAT(result.error().message, HasSubstr("at byte 120 of"));
  }
  CpioHeaderCheck tar;
  std::string not_cpio = "ustar " + newc_entry("b", 0100644, "", 1u << 20, 0);
  EXPECT_TRUE(tar.check("a.tar", not_cpio.data(), not_cpio.size()));
}

TEST(TarReader, ReadsMacOsNamedEntriesAsFiles) {
  ArchiveBuilder builder;
  builder.file("._notes", "kept").file("notes", "text");
  auto reader = TarReader::open_memory(builder.bytes(), "dot-underscore.tar");
  ASSERT_TRUE(reader);
  std::vector<TarEntry> entries = read_all(*reader);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].path, "._notes");
}

TEST(TarReader, RefusesAnEmptyNameButTakesDotForTheRoot) {
  std::string cpio = newc_entry(".", 040755, "") + newc_entry("./", 040700, "") +
                     newc_entry("", 0100644, "root?") + newc_trailer();
  auto reader = TarReader::open_memory(cpio, "empty-name.cpio");
  ASSERT_TRUE(reader);
  TarEntry entry;
  ASSERT_TRUE(reader->next(entry).value_or(false));
  EXPECT_EQ(entry.path, "");
  ASSERT_TRUE(reader->next(entry).value_or(false));
  EXPECT_EQ(entry.path, "");
  EXPECT_EQ(entry.mode, 0700u);
  auto empty = reader->next(entry);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().kind, ErrorKind::kBadInput);
  EXPECT_THAT(empty.error().message, HasSubstr("empty-name.cpio: an entry has an empty path"));
}

TEST(TarReader, RefusesOverlongNamesAndTargets) {
  ArchiveBuilder names;
  names.file(std::string(4097, 'n'), "x");
  Error error = first_error(names, "long.tar");
  EXPECT_THAT(error.message, HasSubstr("has a path of 4097 bytes; kiln reads at most 4096"));
  ArchiveBuilder targets;
  targets.symlink("link", std::string(4096, 't'));
  EXPECT_THAT(first_error(targets, "long.tar").message,
              HasSubstr("symlink 'link' has a target of 4096 bytes; kiln reads at most 4095"));
}

TEST(PrintableName, EscapesControlsAndCutsLongNames) {
  EXPECT_EQ(printable_name("usr/bin/ls"), "usr/bin/ls");
  EXPECT_EQ(printable_name("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(printable_name("a\x1b[2Jb\x07"), "a\\x1b[2Jb\\x07");
  EXPECT_EQ(printable_name("c1\xc2\x9b" "31m"), "c1\\xc2\\x9b31m");  // U+009B is CSI
  EXPECT_EQ(printable_name("bad\xff\\"), "bad\\xff\\\\");
  std::string shown = printable_name(std::string(300, 'a') + "\x1b" + "tail.conf");
  EXPECT_LE(shown.size(), 120u);
  EXPECT_THAT(shown, HasSubstr("(310 bytes)"));
  EXPECT_THAT(shown, ::testing::EndsWith("\\x1btail.conf"));
  EXPECT_EQ(shown.find('\x1b'), std::string::npos);
}

TEST(TarReader, EscapesNamesInErrors) {
  ArchiveBuilder builder;
  builder.file("\x1b]0;owned\x07/../../etc/passwd", "x");
  Error error = first_error(builder, "title.tar");
  EXPECT_THAT(error.message, HasSubstr("'\\x1b]0;owned\\x07/../../etc/passwd'"));
  EXPECT_EQ(error.message.find('\x1b'), std::string::npos);
  EXPECT_EQ(error.message.find('\x07'), std::string::npos);
}

// Compressions libarchive reads with a program of its own or through
// liblzma; each archive is made by the real tool.
struct Compressor {
  const char* suffix;
  std::vector<std::string> argv;  // compresses the file named last, to FILE.SUFFIX
};

class TarReaderCompressions : public ::testing::TestWithParam<Compressor> {};

TEST_P(TarReaderCompressions, ReadsArchivesMadeByTheTool) {
  const Compressor& compressor = GetParam();
  if (!find_program(compressor.argv.front()))
    GTEST_SKIP() << compressor.argv.front() << " is not installed (scripts/install-deps.sh installs it)";
  testing::ScratchDir dir;
  ArchiveBuilder builder;
  builder.directory("etc").file("etc/hostname", "kiln\n");
  std::filesystem::path tar = builder.write_to(dir / "root.tar");
  std::vector<std::string> argv = compressor.argv;
  argv.push_back(tar.string());
  auto made = testing::run_program(argv);
  ASSERT_EQ(made.exit_code, 0) << made.err;
  auto reader = TarReader::open(dir / (std::string("root.tar.") + compressor.suffix));
  ASSERT_TRUE(reader) << reader.error().to_string();
  std::vector<TarEntry> entries = read_all(*reader);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1].path, "etc/hostname");
}

INSTANTIATE_TEST_SUITE_P(ExternalTools, TarReaderCompressions,
                         ::testing::Values(Compressor{"Z", {"compress", "-f"}},
                                           Compressor{"lzo", {"lzop"}},
                                           Compressor{"lz", {"lzip", "-k"}}),
                         [](const auto& info) { return std::string(info.param.suffix); });

TEST(TarReader, NamesTheCompressionWhoseProgramIsMissing) {
  if (!find_program("lzop")) GTEST_SKIP() << "lzop is not installed, so no archive can be made";
  testing::ScratchDir dir;
  ArchiveBuilder builder;
  builder.file("a", "a");
  std::filesystem::path tar = builder.write_to(dir / "root.tar");
  ASSERT_EQ(testing::run_program({"lzop", tar.string()}).exit_code, 0);
  std::filesystem::create_directory(dir / "empty");
  std::string saved = std::getenv("PATH");
  ::setenv("PATH", (dir / "empty").c_str(), 1);
  auto reader = TarReader::open(dir / "root.tar.lzo");
  ::setenv("PATH", saved.c_str(), 1);
  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.error().kind, ErrorKind::kMissingTool);
  EXPECT_THAT(reader.error().message, HasSubstr("root.tar.lzo: the archive is compressed with lzop, "
                                                "which is read through the program lzop"));
}

TEST(TarReader, NamesWhatAnArchiveIsWhenItIsNoTar) {
  Error error = reading_error(
      TarReader::open_memory(std::string("LRZI\x00\x06", 6) + std::string(600, 'x'), "root.tar.lrz"));
  EXPECT_THAT(error.message, HasSubstr("root.tar.lrz: the archive is a lrzip file, which kiln does not read"));
}

}  // namespace
}  // namespace kiln
