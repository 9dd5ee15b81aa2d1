#include "formats/disk/gpt_disk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <regex>

#include <gtest/gtest.h>

#include "base/files.h"
#include "base/size.h"
#include "base/hash.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using testing::ScratchDir;

constexpr uint64_t kBackupTable = 33 * 512;

std::string upper(std::string text) {
  for (char& c : text) c = static_cast<char>(::toupper(static_cast<unsigned char>(c)));
  return text;
}

// A typical bake layout: ESP, swap, and a root filling the disk.
GptLayout three_partitions(uint64_t disk_size) {
  return GptLayout{
      disk_size,
      Uuid::from_name("test/disk"),
      {
          {"esp", GptType::kEfiSystem, Uuid::from_name("test/esp"), 100 * kMiB},
          {"swap", GptType::kLinuxSwap, Uuid::from_name("test/swap"), 10 * kMiB + 1},
          {"root", GptType::kLinuxRootX86_64, Uuid::from_name("test/root"), 0},
      }};
}

TEST(PlanGpt, StartsAtOneMiBAndKeepsEveryPartitionAligned) {
  auto placed = plan_gpt(three_partitions(kGiB));
  ASSERT_TRUE(placed) << placed.error().to_string();
  ASSERT_EQ(placed->size(), 3u);
  EXPECT_EQ((*placed)[0].offset, kMiB);
  EXPECT_EQ((*placed)[0].size, 100 * kMiB);
  EXPECT_EQ((*placed)[1].offset, 101 * kMiB);
  // A size that is not whole MiB is rounded up, so the next start stays aligned.
  EXPECT_EQ((*placed)[1].size, 11 * kMiB);
  EXPECT_EQ((*placed)[2].offset, 112 * kMiB);
  for (int i = 0; i < 3; ++i) EXPECT_EQ((*placed)[i].number, i + 1);
}

TEST(PlanGpt, LastPartitionWithoutSizeTakesTheRestUpToTheBackupTable) {
  auto placed = plan_gpt(three_partitions(kGiB));
  ASSERT_TRUE(placed);
  const PlacedPartition& root = placed->back();
  EXPECT_EQ(root.offset + root.size, kGiB - kBackupTable);
  EXPECT_EQ(root.partition.name, "root");
}

TEST(PlanGpt, OnlyTheLastPartitionMayOmitItsSize) {
  GptLayout layout = three_partitions(kGiB);
  layout.partitions[1].size_bytes = 0;
  auto placed = plan_gpt(layout);
  ASSERT_FALSE(placed);
  EXPECT_EQ(placed.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(placed.error().message.find("partition 2 (swap)"), std::string::npos)
      << placed.error().message;
}

TEST(PlanGpt, TooSmallDiskNamesTheSizeThatHoldsThePartitions) {
  GptLayout layout = three_partitions(100 * kMiB);
  auto placed = plan_gpt(layout);
  ASSERT_FALSE(placed);
  EXPECT_EQ(placed.error().kind, ErrorKind::kNoSpace);
  // 1 MiB table + 100 + 11 MiB + at least 1 MiB of root + the backup table.
  EXPECT_NE(placed.error().message.find("at least 114M"), std::string::npos)
      << placed.error().message;
  layout.disk_size = 114 * kMiB;
  EXPECT_TRUE(plan_gpt(layout));
  layout.disk_size = 113 * kMiB;
  EXPECT_FALSE(plan_gpt(layout));
}

TEST(PlanGpt, FixedPartitionsNeedOnlyRoomForTheBackupTableAfterThem) {
  GptLayout layout{10 * kMiB + kBackupTable, Uuid::from_name("d"),
                   {{"data", GptType::kLinuxFilesystem, Uuid::from_name("p"), 9 * kMiB}}};
  EXPECT_TRUE(plan_gpt(layout));
  layout.disk_size -= 512;
  auto placed = plan_gpt(layout);
  ASSERT_FALSE(placed);
  EXPECT_NE(placed.error().message.find("at least 11M"), std::string::npos)
      << placed.error().message;
}

TEST(PlanGpt, RejectsDiskSizesThatAreNotWholeSectors) {
  auto placed = plan_gpt(three_partitions(kGiB + 100));
  ASSERT_FALSE(placed);
  EXPECT_EQ(placed.error().kind, ErrorKind::kBadInput);
}

TEST(PlanGpt, RejectsNamesLongerThanGptHolds) {
  GptLayout layout = three_partitions(kGiB);
  layout.partitions[0].name = std::string(37, 'x');
  EXPECT_FALSE(plan_gpt(layout));
  layout.partitions[0].name = std::string(36, 'x');
  EXPECT_TRUE(plan_gpt(layout));
}

struct DumpedPartition {
  uint64_t start = 0;
  uint64_t size = 0;
  std::string type;
  std::string uuid;
  std::string name;
};

struct Dump {
  std::map<std::string, std::string> header;
  std::vector<DumpedPartition> partitions;
};

// Parses `sfdisk --dump`: "key: value" header lines, then one line per
// partition with comma-separated key=value fields.
Dump sfdisk_dump(const fs::path& disk) {
  auto done = testing::run_program({"sfdisk", "--dump", disk.string()});
  EXPECT_EQ(done.exit_code, 0) << done.err;
  Dump dump;
  std::regex header(R"(^([a-z-]+): (.*)$)");
  std::regex field(R"((start|size|type|uuid|name)=\s*("[^"]*"|[^,\s]+))");
  std::istringstream lines(done.out);
  for (std::string line; std::getline(lines, line);) {
    std::smatch match;
    if (line.find(" : ") != std::string::npos) {
      DumpedPartition partition;
      for (auto it = std::sregex_iterator(line.begin(), line.end(), field);
           it != std::sregex_iterator(); ++it) {
        std::string key = (*it)[1], value = (*it)[2];
        if (key == "start") partition.start = std::stoull(value);
        if (key == "size") partition.size = std::stoull(value);
        if (key == "type") partition.type = value;
        if (key == "uuid") partition.uuid = value;
        if (key == "name") partition.name = value.substr(1, value.size() - 2);
      }
      dump.partitions.push_back(partition);
    } else if (std::regex_match(line, match, header)) {
      dump.header[match[1]] = match[2];
    }
  }
  return dump;
}

TEST(WriteGpt, SfdiskReadsBackTheLayout) {
  ScratchDir dir;
  GptLayout layout = three_partitions(kGiB);
  auto placed = write_gpt(dir / "disk.raw", layout);
  ASSERT_TRUE(placed) << placed.error().to_string();
  EXPECT_EQ(fs::file_size(dir / "disk.raw"), kGiB);

  Dump dump = sfdisk_dump(dir / "disk.raw");
  EXPECT_EQ(dump.header["label"], "gpt");
  EXPECT_EQ(dump.header["label-id"], upper(layout.disk_guid.to_string()));
  EXPECT_EQ(dump.header["sector-size"], "512");
  ASSERT_EQ(dump.partitions.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(layout.partitions[i].name);
    EXPECT_EQ(dump.partitions[i].start * 512, (*placed)[i].offset);
    EXPECT_EQ(dump.partitions[i].size * 512, (*placed)[i].size);
    EXPECT_EQ(dump.partitions[i].type, gpt_type_guid(layout.partitions[i].type));
    EXPECT_EQ(dump.partitions[i].uuid, upper(layout.partitions[i].uuid.to_string()));
    EXPECT_EQ(dump.partitions[i].name, layout.partitions[i].name);
  }
}

TEST(WriteGpt, SfdiskVerifiesTheTable) {
  ScratchDir dir;
  ASSERT_TRUE(write_gpt(dir / "disk.raw", three_partitions(kGiB)));
  auto done = testing::run_program({"sfdisk", "--verify", (dir / "disk.raw").string()});
  EXPECT_EQ(done.exit_code, 0) << done.out << done.err;
  EXPECT_EQ(done.out.find("problem"), std::string::npos) << done.out;
}

TEST(WriteGpt, EqualLayoutsGiveEqualBytes) {
  ScratchDir dir;
  // Small disks: the digests read every byte.
  GptLayout layout = three_partitions(16 * kMiB);
  layout.partitions[0].size_bytes = 4 * kMiB;
  layout.partitions[1].size_bytes = kMiB;
  ASSERT_TRUE(write_gpt(dir / "a.raw", layout));
  ASSERT_TRUE(write_gpt(dir / "b.raw", layout));
  auto a = file_digest_hex(dir / "a.raw");
  auto b = file_digest_hex(dir / "b.raw");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a, *b);
  // The digest covers the GUIDs: another disk GUID must change it.
  GptLayout other = layout;
  other.disk_guid = Uuid::from_name("test/other-disk");
  ASSERT_TRUE(write_gpt(dir / "c.raw", other));
  EXPECT_NE(*file_digest_hex(dir / "c.raw"), *a);
}

TEST(WriteGpt, LeavesPartitionContentsAlone) {
  ScratchDir dir;
  fs::path disk = dir / "disk.raw";
  GptLayout layout = three_partitions(256 * kMiB);
  auto placed = plan_gpt(layout);
  ASSERT_TRUE(placed);
  // Fill every partition's first and last MiB with a pattern before the table
  // is written, as when filesystems are made first.
  std::string pattern(kMiB, '\0');
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<char>(i * 7 + 1);
  {
    auto fd = open_file(disk, O_RDWR | O_CREAT);
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd->get(), layout.disk_size), 0);
    for (const PlacedPartition& p : *placed) {
      ASSERT_TRUE(pwrite_all(fd->get(), pattern.data(), kMiB, p.offset, "disk"));
      ASSERT_TRUE(pwrite_all(fd->get(), pattern.data(), kMiB, p.offset + p.size - kMiB, "disk"));
    }
  }
  ASSERT_TRUE(write_gpt(disk, layout));
  auto fd = open_file(disk, O_RDONLY);
  ASSERT_TRUE(fd);
  std::string read(kMiB, '\0');
  for (const PlacedPartition& p : *placed) {
    SCOPED_TRACE(p.partition.name);
    ASSERT_EQ(::pread(fd->get(), read.data(), kMiB, p.offset), static_cast<ssize_t>(kMiB));
    EXPECT_TRUE(read == pattern);
    ASSERT_EQ(::pread(fd->get(), read.data(), kMiB, p.offset + p.size - kMiB),
              static_cast<ssize_t>(kMiB));
    EXPECT_TRUE(read == pattern);
  }
  EXPECT_EQ(sfdisk_dump(disk).partitions.size(), 3u);
}

TEST(WriteGpt, ExtendsAShorterFileAndRefusesALongerOne) {
  ScratchDir dir;
  testing::write_text(dir / "short.raw", "x");
  ASSERT_TRUE(write_gpt(dir / "short.raw", three_partitions(256 * kMiB)));
  EXPECT_EQ(fs::file_size(dir / "short.raw"), 256 * kMiB);

  auto longer = write_gpt(dir / "short.raw", three_partitions(128 * kMiB));
  ASSERT_FALSE(longer);
  EXPECT_EQ(longer.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(longer.error().message.find("short.raw"), std::string::npos);
  EXPECT_EQ(fs::file_size(dir / "short.raw"), 256 * kMiB);
}

TEST(WriteGpt, CreatesASparseFile) {
  ScratchDir dir;
  ASSERT_TRUE(write_gpt(dir / "disk.raw", three_partitions(kGiB)));
  struct stat st;
  ASSERT_EQ(::stat((dir / "disk.raw").c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, kMiB);
}

}  // namespace
}  // namespace kiln
