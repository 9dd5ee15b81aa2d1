#include "base/size.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

TEST(ParseSize, BinaryUnitsArePowersOf1024) {
  EXPECT_EQ(parse_size("2G").value(), 2ull << 30);
  EXPECT_EQ(parse_size("512M").value(), 512ull << 20);
  EXPECT_EQ(parse_size("4094MiB").value(), 4094ull << 20);
  EXPECT_EQ(parse_size("1.5G").value(), 3ull << 29);
  EXPECT_EQ(parse_size("64K").value(), 65536u);
}

TEST(ParseSize, DecimalUnitsArePowersOf1000LikeCoreutils) {
  EXPECT_EQ(parse_size("50MB").value(), 50'000'000u);
  EXPECT_EQ(parse_size("1GB").value(), 1'000'000'000u);
}

TEST(ParseSize, PlainNumbersAreBytes) { EXPECT_EQ(parse_size("4096").value(), 4096u); }

TEST(ParseSize, RejectsUnknownUnitsAndSaysWhatIsAccepted) {
  auto result = parse_size("2Q");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(result.error().message.find("\"2Q\""), std::string::npos);
  EXPECT_NE(result.error().message.find("K, M, G or T"), std::string::npos);
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("G"));
  EXPECT_FALSE(parse_size("-1G"));
  EXPECT_FALSE(parse_size("1..5G"));
}

TEST(FormatSize, UsesBinaryUnits) {
  EXPECT_EQ(format_size(512), "512 B");
  EXPECT_EQ(format_size(3ull << 29), "1.5 GiB");
  EXPECT_EQ(format_size(300ull << 20), "300 MiB");
}

TEST(RecipeSize, RoundsUpToWholeMiB) {
  EXPECT_EQ(recipe_size(2ull << 30), "2G");
  EXPECT_EQ(recipe_size((2ull << 30) + 1), "2049M");
}

}  // namespace
}  // namespace kiln
