// An image file crosses to another host as its data runs and is kept there
// under its SHA-256 only when it arrived whole and unchanged.
#include "runtime/image_transfer.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/files.h"
#include "base/hash.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// A sparse file: a few data runs with holes between them, 64 MiB in all.
fs::path sparse_file(const fs::path& dir) {
  fs::path file = dir / "disk.raw";
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT, 0644);
  EXPECT_EQ(::ftruncate(fd, 64 << 20), 0);
  for (off_t at : {off_t{0}, off_t{5} << 20, off_t{40} << 20}) {
    std::string data(100000, static_cast<char>('a' + at % 26));
    EXPECT_EQ(::pwrite(fd, data.data(), data.size(), at), static_cast<ssize_t>(data.size()));
  }
  ::close(fd);
  return file;
}

// The stream `send_image_file` writes for `file`, as bytes.
std::string stream_of(const fs::path& file) {
  int pair[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  std::thread sender([&] {
    EXPECT_TRUE(send_image_file(file, pair[0], [](uint64_t) {}));
    ::close(pair[0]);
  });
  auto bytes = read_fd(pair[1], "stream");
  sender.join();
  ::close(pair[1]);
  return bytes.value_or("");
}

// Receives `stream`, read from a file as it would be from ssh's stdin.
Result<> receive(const std::string& stream, const fs::path& dir, const std::string& hash, uint64_t size) {
  testing::ScratchDir scratch;
  testing::write_text(scratch / "stream", stream);
  int fd = ::open((scratch / "stream").c_str(), O_RDONLY);
  auto done = receive_image_file(fd, dir, hash, size);
  ::close(fd);
  return done;
}

TEST(ImageTransferTest, AFileArrivesWholeSparseAndUnderItsHash) {
  testing::ScratchDir dir;
  fs::path file = sparse_file(dir.path());
  std::string hash = *file_digest_hex(file);
  std::string stream = stream_of(file);
  EXPECT_LT(stream.size(), 1u << 20) << "holes are not sent";
  ASSERT_TRUE(receive(stream, dir / "images", hash, fs::file_size(file)));
  EXPECT_EQ(*file_digest_hex(dir / "images" / hash), hash);
  EXPECT_EQ(testing::list_tree(dir / "images"), std::vector<std::string>{hash});
}

TEST(ImageTransferTest, AStreamCutShortOrChangedKeepsNothing) {
  testing::ScratchDir dir;
  fs::path file = sparse_file(dir.path());
  std::string hash = *file_digest_hex(file);
  std::string stream = stream_of(file);
  uint64_t size = fs::file_size(file);

  auto cut = receive(stream.substr(0, stream.size() - 10), dir / "images", hash, size);
  ASSERT_FALSE(cut);
  EXPECT_THAT(cut.error().message, HasSubstr("ended in the middle"));

  std::string changed = stream;
  changed[100] ^= 1;
  auto wrong = receive(changed, dir / "images", hash, size);
  ASSERT_FALSE(wrong);
  EXPECT_THAT(wrong.error().message, HasSubstr("not kept"));

  auto past_end = receive(stream, dir / "images", hash, 1000);
  ASSERT_FALSE(past_end);
  EXPECT_THAT(past_end.error().message, HasSubstr("past its 1000 bytes"));

  EXPECT_TRUE(testing::list_tree(dir / "images").empty());
}

}  // namespace
}  // namespace kiln
