#include "formats/disk/fat_image.h"

#include <fcntl.h>
#include <unistd.h>

#include <thread>

#include <gtest/gtest.h>

#include "base/files.h"
#include "base/size.h"
#include "base/hash.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using testing::ScratchDir;

constexpr int64_t kTimestamp = 1700000000;  // 2023-11-14 22:13:20 UTC
const std::vector<std::string> kMtoolsEnv = {"MTOOLS_SKIP_CHECK=1", "MTOOLSRC"};

FatOptions esp_options(uint64_t offset, uint64_t size) {
  FatOptions options;
  options.offset_bytes = offset;
  options.size_bytes = size;
  options.label = "KILN-ESP";
  options.volume_id = 0x1234abcd;
  options.timestamp = kTimestamp;
  return options;
}

// Bytes that are not text, so a conversion on the way would show.
std::string binary_blob(size_t size) {
  std::string blob(size, '\0');
  for (size_t i = 0; i < size; ++i) blob[i] = static_cast<char>((i * 131 + i / 251) & 0xff);
  return blob;
}

std::vector<FatFile> esp_files(const fs::path& host_efi) {
  return {
      {"EFI/BOOT/BOOTX64.EFI", host_efi, ""},
      {"loader/loader.conf", "", "timeout 0\ndefault debian.conf\n"},
      {"loader/entries/debian.conf", "", "title Debian\nlinux /vmlinuz\n"},
      {"vmlinuz", "", binary_blob(300 * 1024)},
  };
}

std::string drive(const fs::path& image, uint64_t offset) {
  return fmt::format("{}@@{}", image.string(), offset);
}

// Reads a file back out of the image with mcopy.
std::string read_back(const fs::path& image, uint64_t offset, const std::string& path,
                      const fs::path& scratch) {
  fs::path out = scratch / "read-back";
  fs::remove(out);
  auto done = testing::run_program({"mcopy", "-i", drive(image, offset), "::" + path, out.string()},
                                   kMtoolsEnv);
  EXPECT_EQ(done.exit_code, 0) << done.err;
  return testing::read_text(out);
}

std::string read_range(const fs::path& image, uint64_t offset, uint64_t size) {
  auto fd = open_file(image, O_RDONLY);
  EXPECT_TRUE(fd);
  std::string bytes(size, '\0');
  EXPECT_EQ(::pread(fd->get(), bytes.data(), size, offset), static_cast<ssize_t>(size));
  return bytes;
}

// fsck.vfat has no offset option: check a copy of the range.
testing::ProcessResult fsck_range(const fs::path& image, uint64_t offset, uint64_t size,
                                  const fs::path& scratch) {
  testing::write_text(scratch / "range.img", read_range(image, offset, size));
  return testing::run_program({"fsck.vfat", "-n", (scratch / "range.img").string()});
}

// A FAT16/FAT32 directory walker, enough to see every entry's timestamps.
class FatReader {
 public:
  explicit FatReader(std::string volume) : volume_(std::move(volume)) {
    bytes_per_sector_ = u16(11);
    sectors_per_cluster_ = u8(13);
    uint32_t reserved = u16(14);
    uint32_t fats = u8(16);
    root_entries_ = u16(17);
    uint32_t fat_sectors = u16(22) ? u16(22) : u32(36);
    fat32_ = u16(22) == 0;
    fat_offset_ = reserved * bytes_per_sector_;
    root_offset_ = fat_offset_ + fats * fat_sectors * bytes_per_sector_;
    data_offset_ = root_offset_ + root_entries_ * 32;
    root_cluster_ = fat32_ ? u32(44) : 0;
  }

  struct Entry {
    std::string path;
    uint16_t create_date, create_time, access_date, modify_date, modify_time;
    uint8_t create_hundredths;
  };

  std::vector<Entry> all_entries() {
    std::vector<Entry> entries;
    walk(root_cluster_, "", entries);
    return entries;
  }

 private:
  uint8_t u8(size_t at) const { return static_cast<uint8_t>(volume_.at(at)); }
  uint16_t u16(size_t at) const { return u8(at) | (u8(at + 1) << 8); }
  uint32_t u32(size_t at) const { return u16(at) | (static_cast<uint32_t>(u16(at + 2)) << 16); }

  std::string directory(uint32_t cluster) const {
    if (cluster == 0) return volume_.substr(root_offset_, root_entries_ * 32);
    std::string out;
    uint32_t cluster_size = sectors_per_cluster_ * bytes_per_sector_;
    while (cluster >= 2 && cluster < (fat32_ ? 0x0ffffff8u : 0xfff8u)) {
      out += volume_.substr(data_offset_ + (cluster - 2) * cluster_size, cluster_size);
      cluster = fat32_ ? u32(fat_offset_ + cluster * 4) & 0x0fffffff : u16(fat_offset_ + cluster * 2);
    }
    return out;
  }

  void walk(uint32_t cluster, const std::string& prefix, std::vector<Entry>& entries) const {
    std::string dir = directory(cluster);
    for (size_t at = 0; at + 32 <= dir.size(); at += 32) {
      auto byte = [&](size_t i) { return static_cast<uint8_t>(dir[at + i]); };
      auto word = [&](size_t i) { return static_cast<uint16_t>(byte(i) | (byte(i + 1) << 8)); };
      if (byte(0) == 0) break;
      if (byte(0) == 0xe5 || byte(11) == 0x0f) continue;  // deleted, long-name part
      std::string name = dir.substr(at, 11);
      entries.push_back({prefix + "/" + name, word(16), word(14), word(18), word(24), word(22),
                         byte(13)});
      bool is_dot = name.starts_with(". ") || name.starts_with(".. ");
      if ((byte(11) & 0x10) && !is_dot)
        walk((static_cast<uint32_t>(word(20)) << 16) | word(26), prefix + "/" + name, entries);
    }
  }

  std::string volume_;
  uint32_t bytes_per_sector_, sectors_per_cluster_, root_entries_, fat_offset_, root_offset_,
      data_offset_, root_cluster_;
  bool fat32_;
};

// FAT's packed date and time (2-second resolution) of a UTC time.
std::pair<uint16_t, uint16_t> fat_date_time(int64_t timestamp) {
  time_t t = timestamp;
  struct tm utc;
  gmtime_r(&t, &utc);
  uint16_t date = ((utc.tm_year - 80) << 9) | ((utc.tm_mon + 1) << 5) | utc.tm_mday;
  uint16_t time = (utc.tm_hour << 11) | (utc.tm_min << 5) | (utc.tm_sec / 2);
  return {date, time};
}

class FatImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_text(dir_ / "BOOTX64.EFI", binary_blob(100 * 1024));
  }
  ScratchDir dir_;
  fs::path efi() const { return dir_ / "BOOTX64.EFI"; }
};

TEST_F(FatImageTest, NestedFilesAtAnOffsetReadBackAndPassFsck) {
  fs::path image = dir_ / "disk.raw";
  FatOptions options = esp_options(kMiB, 40 * kMiB);
  auto files = esp_files(efi());
  auto written = write_fat_image(image, options, files);
  ASSERT_TRUE(written) << written.error().to_string();

  auto fsck = fsck_range(image, options.offset_bytes, options.size_bytes, dir_.path());
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  EXPECT_EQ(read_back(image, kMiB, "EFI/BOOT/BOOTX64.EFI", dir_.path()), testing::read_text(efi()));
  for (const FatFile& file : files) {
    if (file.content.empty()) continue;
    SCOPED_TRACE(file.path);
    EXPECT_TRUE(read_back(image, kMiB, file.path, dir_.path()) == file.content);
  }
}

TEST_F(FatImageTest, LabelAndVolumeIdAreVisible) {
  fs::path image = dir_ / "esp.img";
  ASSERT_TRUE(write_fat_image(image, esp_options(0, 40 * kMiB), {}));
  auto label = testing::run_program({"mlabel", "-s", "-i", drive(image, 0), "::"}, kMtoolsEnv);
  EXPECT_NE(label.out.find("KILN-ESP"), std::string::npos) << label.out << label.err;
  auto info = testing::run_program({"minfo", "-i", drive(image, 0), "::"}, kMtoolsEnv);
  EXPECT_NE(info.out.find("serial number: 1234ABCD"), std::string::npos) << info.out;
  EXPECT_EQ(fat_volume_id_string(0x1234abcd), "1234-ABCD");
  EXPECT_EQ(fat_volume_id_string(0xbeef), "0000-BEEF");
}

TEST_F(FatImageTest, Fat32FromThirtyThreeMiBFat16Below) {
  for (auto [size, type] : {std::pair{33 * kMiB, "FAT32"}, std::pair{33 * kMiB - 512, "FAT16"},
                            std::pair{32 * kMiB, "FAT16"}, std::pair{4 * kMiB, "FAT16"}}) {
    SCOPED_TRACE(size);
    fs::path image = dir_ / "esp.img";
    fs::remove(image);
    ASSERT_TRUE(write_fat_image(image, esp_options(0, size), esp_files(efi())));
    auto info = testing::run_program({"minfo", "-i", drive(image, 0), "::"}, kMtoolsEnv);
    EXPECT_NE(info.out.find(fmt::format("disk type=\"{}", type)), std::string::npos) << info.out;
    auto fsck = fsck_range(image, 0, size, dir_.path());
    EXPECT_EQ(fsck.exit_code, 0) << fsck.out;
  }
}

TEST_F(FatImageTest, EveryDirectoryEntryCarriesTheGivenTimestamp) {
  // The source file's own time must not leak in either.
  fs::last_write_time(efi(), fs::file_time_type::clock::now() - std::chrono::hours(24 * 400));
  for (uint64_t size : {40 * kMiB, 8 * kMiB}) {
    SCOPED_TRACE(size);
    fs::path image = dir_ / "esp.img";
    fs::remove(image);
    ASSERT_TRUE(write_fat_image(image, esp_options(0, size), esp_files(efi())));
    auto entries = FatReader(testing::read_text(image)).all_entries();
    // label, EFI, ., .., BOOT, ., .., BOOTX64, loader, ., .., loader.conf,
    // entries, ., .., debian.conf, vmlinuz
    EXPECT_EQ(entries.size(), 17u);
    auto [date, time] = fat_date_time(kTimestamp);
    for (const auto& entry : entries) {
      SCOPED_TRACE(entry.path);
      EXPECT_EQ(entry.modify_date, date);
      EXPECT_EQ(entry.modify_time, time);
      EXPECT_EQ(entry.create_date, date);
      EXPECT_EQ(entry.create_time, time);
      EXPECT_EQ(entry.create_hundredths, 0);
      EXPECT_EQ(entry.access_date, date);
    }
  }
}

TEST_F(FatImageTest, WritesSecondsApartAreByteIdentical) {
  FatOptions options = esp_options(0, 8 * kMiB);
  ASSERT_TRUE(write_fat_image(dir_ / "a.img", options, esp_files(efi())));
  // FAT times have a 2-second resolution: a clock leaking in would show.
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  ASSERT_TRUE(write_fat_image(dir_ / "b.img", options, esp_files(efi())));
  auto a = file_digest_hex(dir_ / "a.img");
  auto b = file_digest_hex(dir_ / "b.img");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a, *b);
  // The digest does cover the options: another timestamp must change it.
  options.timestamp += 3600;
  ASSERT_TRUE(write_fat_image(dir_ / "c.img", options, esp_files(efi())));
  EXPECT_NE(*file_digest_hex(dir_ / "c.img"), *a);
}

TEST_F(FatImageTest, LeavesBytesOutsideTheRangeAloneAndIgnoresOldContentInside) {
  fs::path image = dir_ / "disk.raw";
  FatOptions options = esp_options(kMiB, 8 * kMiB);
  std::string before = binary_blob(kMiB);
  std::string after = binary_blob(2 * kMiB);
  // Old bytes inside the range must not survive into the filesystem either.
  testing::write_text(image, before + std::string(options.size_bytes, 'x') + after);
  ASSERT_TRUE(write_fat_image(image, options, esp_files(efi())));
  EXPECT_EQ(fs::file_size(image), 11 * kMiB);
  EXPECT_TRUE(read_range(image, 0, kMiB) == before);
  EXPECT_TRUE(read_range(image, 9 * kMiB, 2 * kMiB) == after);

  ASSERT_TRUE(write_fat_image(dir_ / "fresh.raw", options, esp_files(efi())));
  EXPECT_TRUE(read_range(image, kMiB, 8 * kMiB) == read_range(dir_ / "fresh.raw", kMiB, 8 * kMiB));
}

TEST_F(FatImageTest, LeavesNoTemporaryFilesBehind) {
  ASSERT_TRUE(write_fat_image(dir_ / "esp.img", esp_options(0, 8 * kMiB), esp_files(efi())));
  EXPECT_EQ(testing::list_tree(dir_.path()), (std::vector<std::string>{"BOOTX64.EFI", "esp.img"}));
}

TEST_F(FatImageTest, TooMuchContentIsANoSpaceError) {
  auto written = write_fat_image(dir_ / "esp.img", esp_options(0, 4 * kMiB),
                                 {{"big.bin", "", binary_blob(5 * kMiB)}});
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().kind, ErrorKind::kNoSpace);
  EXPECT_NE(written.error().message.find("big.bin"), std::string::npos) << written.error().message;
}

TEST_F(FatImageTest, RejectsBadPathsBeforeTouchingTheImage) {
  for (const char* path : {"/EFI/x", "a//b", "../x", "a/./b", "what?", "a/"}) {
    SCOPED_TRACE(path);
    auto written = write_fat_image(dir_ / "esp.img", esp_options(0, 8 * kMiB), {{path, "", "x"}});
    ASSERT_FALSE(written);
    EXPECT_EQ(written.error().kind, ErrorKind::kBadInput);
    EXPECT_NE(written.error().message.find(path), std::string::npos) << written.error().message;
  }
  auto twice = write_fat_image(dir_ / "esp.img", esp_options(0, 8 * kMiB),
                               {{"a/b", "", "1"}, {"a/b", "", "2"}});
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find("twice"), std::string::npos);
  auto clash = write_fat_image(dir_ / "esp.img", esp_options(0, 8 * kMiB),
                               {{"a", "", "1"}, {"a/b", "", "2"}});
  ASSERT_FALSE(clash);
  EXPECT_FALSE(fs::exists(dir_ / "esp.img"));
}

TEST_F(FatImageTest, MissingSourceNamesTheFile) {
  auto written = write_fat_image(dir_ / "esp.img", esp_options(0, 8 * kMiB),
                                 {{"EFI/BOOT/BOOTX64.EFI", dir_ / "missing.efi", ""}});
  ASSERT_FALSE(written);
  EXPECT_NE(written.error().message.find("missing.efi"), std::string::npos)
      << written.error().message;
}

TEST_F(FatImageTest, RejectsSizesFatCannotHoldAndBadLabels) {
  EXPECT_FALSE(write_fat_image(dir_ / "esp.img", esp_options(0, 2 * kMiB), {}));
  EXPECT_FALSE(write_fat_image(dir_ / "esp.img", esp_options(100, 8 * kMiB), {}));
  FatOptions options = esp_options(0, 8 * kMiB);
  options.label = "MUCH-TOO-LONG";
  EXPECT_FALSE(write_fat_image(dir_ / "esp.img", options, {}));
  options.label = "A:B";
  EXPECT_FALSE(write_fat_image(dir_ / "esp.img", options, {}));
}

}  // namespace
}  // namespace kiln
