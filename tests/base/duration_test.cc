#include "base/duration.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

using std::chrono::seconds;

TEST(ParseDuration, UnitsAndPlainSeconds) {
  EXPECT_EQ(parse_duration("30d", "--valid-for").value(), seconds(30 * 86400));
  EXPECT_EQ(parse_duration("12h", "x").value(), seconds(12 * 3600));
  EXPECT_EQ(parse_duration("90m", "x").value(), seconds(5400));
  EXPECT_EQ(parse_duration("45s", "x").value(), seconds(45));
  EXPECT_EQ(parse_duration("7", "x").value(), seconds(7));
}

TEST(ParseDuration, RefusesOtherTextNamingTheFlag) {
  for (const char* text : {"", "d", "-1d", "3w", "1.5h", "99999999999999999999s", "2dd"}) {
    auto parsed = parse_duration(text, "--valid-for");
    ASSERT_FALSE(parsed) << text;
    EXPECT_EQ(parsed.error().kind, ErrorKind::kBadInput);
    EXPECT_EQ(parsed.error().message.rfind("--valid-for \"", 0), 0u) << parsed.error().message;
  }
  EXPECT_FALSE(parse_duration("999999999999999d", "x")) << "overflows int64 seconds";
}

TEST(FormatDuration, LargestExactUnit) {
  EXPECT_EQ(format_duration(seconds(30 * 86400)), "30d");
  EXPECT_EQ(format_duration(seconds(7200)), "2h");
  EXPECT_EQ(format_duration(seconds(90)), "90s");
  EXPECT_EQ(format_duration(seconds(0)), "0s");
}

}  // namespace
}  // namespace kiln
