#include "base/hash.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "base/files.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using testing::ScratchDir;

constexpr uint64_t kMiB = 1 << 20;

// A 16 MiB file, mostly holes, with data at 1 MiB, 7 MiB and in its last block.
fs::path sparse_image(const ScratchDir& dir) {
  fs::path path = dir / "disk.raw";
  auto file = open_file(path, O_RDWR | O_CREAT);
  EXPECT_TRUE(file);
  EXPECT_EQ(::ftruncate(file->get(), 16 * kMiB), 0);
  std::string block(4096, 'x');
  EXPECT_TRUE(pwrite_all(file->get(), block.data(), block.size(), kMiB, "disk"));
  EXPECT_TRUE(pwrite_all(file->get(), "seven", 5, 7 * kMiB + 100, "disk"));
  EXPECT_TRUE(pwrite_all(file->get(), "end", 3, 16 * kMiB - 3, "disk"));
  return path;
}

TEST(FileDigest, OfASparseFileIsTheDigestOfItsBytes) {
  ScratchDir dir;
  fs::path path = sparse_image(dir);
  auto digest = file_digest_hex(path);
  ASSERT_TRUE(digest) << digest.error().message;
  EXPECT_EQ(*digest, sha256_hex(testing::read_text(path)));
}

TEST(CopySparseDigest, CopiesARegionKeepingHolesAndHashesWhatItCopied) {
  ScratchDir dir;
  fs::path path = sparse_image(dir);
  auto source = open_file(path, O_RDONLY);
  auto target = open_file(dir / "root.img", O_RDWR | O_CREAT);
  ASSERT_TRUE(source && target);
  const uint64_t offset = kMiB, length = 14 * kMiB;
  ASSERT_EQ(::ftruncate(target->get(), length), 0);

  auto digest = copy_sparse_digest(source->get(), offset, target->get(), length, "disk.raw");
  ASSERT_TRUE(digest) << digest.error().message;

  std::string region = testing::read_text(path).substr(offset, length);
  EXPECT_EQ(testing::read_text(dir / "root.img"), region);
  EXPECT_EQ(*digest, sha256_hex(region));
  struct stat st;
  ASSERT_EQ(::fstat(target->get(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, kMiB) << "the holes were written out";
}

TEST(CopySparseDigest, ReportsAnUnreadableSourceByName) {
  ScratchDir dir;
  auto target = open_file(dir / "root.img", O_RDWR | O_CREAT);
  ASSERT_TRUE(target);
  auto digest = copy_sparse_digest(-1, 0, target->get(), kMiB, "disk.raw");
  ASSERT_FALSE(digest);
  EXPECT_NE(digest.error().message.find("disk.raw"), std::string::npos) << digest.error().message;
}

}  // namespace
}  // namespace kiln
