// manifest.txt and manifest.sha256: the coreutils format both ways, the BSD
// form on reading, and errors that point at the line.
#include "feeds/checksum_manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kSha1A = "a9993e364706816aba3e25717850c26c9cd0d89d";
const std::string kSha1B = "84983e441c3bd26ebaae4aa1f95129e5e54670f1";

TEST(ChecksumManifest, WritesWhatSha1sumChecks) {
  testing::ScratchDir dir;
  testing::write_text(dir / "abc.img.gz", "abc");
  ChecksumManifest manifest{HashAlgorithm::kSha1, {{"abc.img.gz", kSha1A}}};
  auto text = write_checksum_manifest(manifest);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, kSha1A + "  abc.img.gz\n");
  testing::write_text(dir / "manifest.txt", *text);
  auto checked = testing::run_program({"sh", "-c", "cd \"$0\" && sha1sum -c manifest.txt", dir.path().string()});
  EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err;
}

TEST(ChecksumManifest, ReadsCoreutilsBinaryMarkerAndBsdForms) {
  std::string text = kSha1A + "  a.img.gz\n" + kSha1B + " *b.img.gz\r\n\nSHA1 (c d.img.gz) = " + kSha1A + "\n";
  auto manifest = parse_checksum_manifest(text, HashAlgorithm::kSha1, "manifest.txt");
  ASSERT_TRUE(manifest) << manifest.error().to_string();
  EXPECT_THAT(manifest->entries, ElementsAre(ManifestEntry{"a.img.gz", kSha1A}, ManifestEntry{"b.img.gz", kSha1B},
                                             ManifestEntry{"c d.img.gz", kSha1A}));
  EXPECT_EQ(manifest->find("b.img.gz")->digest, kSha1B);
  EXPECT_EQ(manifest->find("missing"), nullptr);
}

TEST(ChecksumManifest, UpperCaseDigestsAreReadInLowerCase) {
  std::string upper = "A9993E364706816ABA3E25717850C26C9CD0D89D";
  auto manifest = parse_checksum_manifest(upper + "  x\n", HashAlgorithm::kSha1, "m");
  ASSERT_TRUE(manifest);
  EXPECT_EQ(manifest->entries[0].digest, kSha1A);
}

TEST(ChecksumManifest, ErrorsNameTheLineAndTheProblem) {
  auto wrong_length = parse_checksum_manifest(kSha1A + "  a\n" + kSha1A.substr(1) + "   b\n", HashAlgorithm::kSha1,
                                              "manifest.txt");
  ASSERT_FALSE(wrong_length);
  EXPECT_EQ(wrong_length.error().where.to_string(), "manifest.txt:2");
  auto sha256_of_sha1 = parse_checksum_manifest(kSha1A + "  a\n", HashAlgorithm::kSha256, "manifest.sha256");
  ASSERT_FALSE(sha256_of_sha1);
  EXPECT_THAT(sha256_of_sha1.error().message, HasSubstr("sha256"));
  auto twice = parse_checksum_manifest(kSha1A + "  a\n" + kSha1B + "  a\n", HashAlgorithm::kSha1, "m");
  ASSERT_FALSE(twice);
  EXPECT_THAT(twice.error().to_string(), HasSubstr("m:2: 'a' is listed twice"));
  auto not_hex = parse_checksum_manifest(std::string(40, 'g') + "  a\n", HashAlgorithm::kSha1, "m");
  ASSERT_FALSE(not_hex);
  EXPECT_THAT(not_hex.error().message, HasSubstr("not a sha1 digest"));
  auto escaped = parse_checksum_manifest("\\" + kSha1A + "  a\\nb\n", HashAlgorithm::kSha1, "m");
  ASSERT_FALSE(escaped);
  EXPECT_THAT(escaped.error().message, HasSubstr("escaped"));
}

TEST(ChecksumManifest, RefusesToWriteNamesCoreutilsWouldEscape) {
  ChecksumManifest manifest{HashAlgorithm::kSha1, {{"a\nb", kSha1A}}};
  EXPECT_FALSE(write_checksum_manifest(manifest));
}

}  // namespace
}  // namespace kiln
