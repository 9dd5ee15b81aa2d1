// Parallel gzip: whatever it writes, gzip and zlib read back as the input;
// and the expander never lets gzip data grow past the size declared for it.
#include "feeds/gzip.h"

#include <fcntl.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/files.h"
#include "tests/feeds/fake_bake.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::noise;
using testing::read_text;
using testing::run_program;
using testing::ScratchDir;
using testing::write_text;

class GzipTest : public ::testing::Test {
 protected:
  // Compresses `input` with gzip_parallel; returns the .gz file's path.
  std::filesystem::path compress(const std::string& input, GzipOptions options = {}) {
    write_text(dir_ / "input", input);
    return compress_file(dir_ / "input", options);
  }
  std::filesystem::path compress_file(const std::filesystem::path& input, GzipOptions options = {}) {
    auto in = open_file(input, O_RDONLY);
    std::filesystem::path out_path = input.string() + ".gz";
    auto out = open_file(out_path, O_WRONLY | O_CREAT | O_TRUNC);
    EXPECT_TRUE(in && out);
    auto stats = gzip_parallel(in->get(), std::filesystem::file_size(input),
                               [&](std::string_view bytes) { return write_all(out->get(), bytes.data(), bytes.size(), "out"); },
                               options, input.string());
    EXPECT_TRUE(stats) << stats.error().to_string();
    if (stats) {
      last_stats_ = *stats;
      EXPECT_EQ(stats->output_bytes, std::filesystem::file_size(out_path));
    }
    return out_path;
  }
  Result<std::string> expand(const std::string& compressed, uint64_t limit, size_t piece = 4096) {
    GzipExpander expander(limit, "test.gz");
    std::string out;
    auto sink = [&](std::string_view bytes) -> Result<> {
      out += bytes;
      return {};
    };
    for (size_t at = 0; at < compressed.size(); at += piece) {
      auto done = expander.update(std::string_view(compressed).substr(at, piece), sink);
      if (!done) return std::unexpected(done.error());
      expanded_so_far_ = out.size();
    }
    KILN_ASSIGN(uint64_t size, expander.finish());
    EXPECT_EQ(size, out.size());
    return out;
  }

  ScratchDir dir_;
  GzipStats last_stats_;
  size_t expanded_so_far_ = 0;
};

std::string mixed_input() {
  // Random data, long runs of zeros (whole blocks of them) and text, and a
  // size that is no multiple of any block.
  return noise(300000, "a") + std::string(3 << 20, '\0') + std::string(70001, 'x') + noise(123457, "b");
}

TEST_F(GzipTest, GzipAndZcatReadTheOutputBackAsTheInput) {
  std::string input = mixed_input();
  GzipOptions options;
  options.threads = 4;
  options.block_size = 128 * 1024;
  auto gz = compress(input, options);
  auto tested = run_program({"gzip", "-t", gz.string()});
  EXPECT_EQ(tested.exit_code, 0) << tested.err;
  auto zcat = run_program({"zcat", gz.string()});
  ASSERT_EQ(zcat.exit_code, 0) << zcat.err;
  EXPECT_TRUE(zcat.out == input) << "zcat gave " << zcat.out.size() << " bytes of " << input.size();
  EXPECT_EQ(last_stats_.input_bytes, input.size());
}

TEST_F(GzipTest, TheOutputIsOneMemberWithoutNameOrTimeAndAnswersGzipList) {
  auto gz = compress(mixed_input());
  std::string bytes = read_text(gz);
  ASSERT_GE(bytes.size(), 18u);
  EXPECT_EQ(bytes.substr(0, 4), std::string("\x1f\x8b\x08\x00", 4)) << "no FNAME or other flags";
  EXPECT_EQ(bytes.substr(4, 4), std::string(4, '\0')) << "no time stamp";
  auto listed = run_program({"gzip", "-lv", gz.string()});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr(std::to_string(mixed_input().size())));
}

TEST_F(GzipTest, TheOutputDoesNotDependOnTheNumberOfThreads) {
  std::string input = mixed_input();
  GzipOptions one;
  one.threads = 1;
  one.block_size = 64 * 1024;
  std::string single = read_text(compress(input, one));
  GzipOptions many = one;
  many.threads = 7;
  EXPECT_TRUE(read_text(compress(input, many)) == single);
}

TEST_F(GzipTest, HolesCostAlmostNothing) {
  testing::write_sparse_file(dir_ / "disk", 64 << 20, 5 << 20, "data");
  auto gz = compress_file(dir_ / "disk");
  // deflate cannot do better than about 1:1000 on zeros.
  EXPECT_LT(std::filesystem::file_size(gz), 100u * 1024);
  auto zcat = run_program({"sh", "-c", "zcat \"$0\" | cmp - \"$1\"", gz.string(), (dir_ / "disk").string()});
  EXPECT_EQ(zcat.exit_code, 0) << zcat.out << zcat.err;
}

TEST_F(GzipTest, AnEmptyInputIsAValidEmptyGzip) {
  auto gz = compress("");
  auto zcat = run_program({"zcat", gz.string()});
  EXPECT_EQ(zcat.exit_code, 0) << zcat.err;
  EXPECT_EQ(zcat.out, "");
}

TEST_F(GzipTest, TheExpanderReadsItsOwnOutputAndGzipsToo) {
  std::string input = mixed_input();
  auto ours = expand(read_text(compress(input)), input.size());
  ASSERT_TRUE(ours) << ours.error().to_string();
  EXPECT_TRUE(*ours == input);
  write_text(dir_ / "plain", input);
  run_program({"gzip", "-k", "-9", (dir_ / "plain").string()});
  auto theirs = expand(read_text(dir_ / "plain.gz"), input.size(), 1000);
  ASSERT_TRUE(theirs) << theirs.error().to_string();
  EXPECT_TRUE(*theirs == input);
}

TEST_F(GzipTest, TheExpanderFollowsConcatenatedMembers) {
  write_text(dir_ / "a", "first member\n");
  write_text(dir_ / "b", "second member\n");
  run_program({"gzip", (dir_ / "a").string(), (dir_ / "b").string()});
  auto out = expand(read_text(dir_ / "a.gz") + read_text(dir_ / "b.gz"), 1000, 7);
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(*out, "first member\nsecond member\n");
}

TEST_F(GzipTest, AGzipBombStopsAtTheDeclaredSize) {
  // 64 MiB of zeros squeeze into about 64 KiB.
  auto gz = compress(std::string(64 << 20, '\0'));
  auto out = expand(read_text(gz), 1 << 20, 1 << 16);
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().kind, ErrorKind::kUntrusted);
  EXPECT_THAT(out.error().message, HasSubstr("test.gz: expands beyond the 1048576 bytes declared"));
  EXPECT_LE(expanded_so_far_, 1u << 20) << "nothing past the limit reaches the sink";
}

TEST_F(GzipTest, ExactlyTheDeclaredSizeIsFine) {
  std::string input(1 << 20, 'z');
  auto out = expand(read_text(compress(input)), input.size());
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(out->size(), input.size());
}

TEST_F(GzipTest, TruncatedCorruptOrTrailingDataIsRefused) {
  std::string gz = read_text(compress(noise(100000, "c")));
  auto truncated = expand(gz.substr(0, gz.size() - 10), 1 << 20);
  ASSERT_FALSE(truncated);
  EXPECT_THAT(truncated.error().message, HasSubstr("truncated"));

  std::string bad_crc = gz;
  bad_crc[bad_crc.size() - 6] ^= 1;
  auto corrupt = expand(bad_crc, 1 << 20);
  ASSERT_FALSE(corrupt);
  EXPECT_THAT(corrupt.error().message, HasSubstr("corrupt gzip data"));

  auto trailing = expand(gz + "garbage!", 1 << 20);
  ASSERT_FALSE(trailing);
  EXPECT_THAT(trailing.error().message, HasSubstr("corrupt gzip data"));

  auto empty = expand("", 1 << 20);
  ASSERT_FALSE(empty);
  EXPECT_THAT(empty.error().message, HasSubstr("empty"));
}

TEST_F(GzipTest, AnErrorFromTheSinkStopsTheCompression) {
  write_text(dir_ / "input", mixed_input());
  auto in = open_file(dir_ / "input", O_RDONLY);
  ASSERT_TRUE(in);
  int calls = 0;
  auto stats = gzip_parallel(in->get(), std::filesystem::file_size(dir_ / "input"),
                             [&](std::string_view) -> Result<> {
                               if (++calls == 3) return fail(ErrorKind::kNoSpace, "disk full");
                               return {};
                             },
                             GzipOptions{6, 2, 64 * 1024, {}}, "input");
  ASSERT_FALSE(stats);
  EXPECT_EQ(stats.error().message, "disk full");
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace kiln
