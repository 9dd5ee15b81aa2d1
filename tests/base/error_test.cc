// What an error looks like to the person reading it: outside values quoted,
// cut and escaped; a file:line:col error shows its line with a caret.
#include "base/error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

TEST(ShownValue, QuotesEscapesAndCuts) {
  EXPECT_EQ(shown_value("web"), "\"web\"");
  EXPECT_EQ(shown_value("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(shown_value(std::string("x\0y\x1b[2J\a", 8)), "\"x\\x00y\\x1b[2J\\x07\"");
  EXPECT_EQ(shown_value(std::string(100, 'A'), 10), "\"AAAAAAAAAA\" (cut; 100 bytes in all)");
}

TEST(ErrorText, NoControlCharacterReachesTheTerminal) {
  Error error{ErrorKind::kBadInput, "entry \x1b]0;owned\a: bad", {}, "tool said \x1b[31mred\nsecond line"};
  EXPECT_EQ(error.to_string(), "entry \\x1b]0;owned\\x07: bad\n  tool said \\x1b[31mred\n  second line");
}

TEST(ErrorText, AHugeLineIsCut) {
  Error error{ErrorKind::kBadInput, std::string(10 << 20, 'v'), {}, {}};
  std::string text = error.to_string();
  EXPECT_LT(text.size(), 2100u);
  EXPECT_THAT(text, HasSubstr("... (10483760 more bytes)"));
}

TEST(ErrorDisplay, ShowsTheLineAndACaretUnderTheColumn) {
  testing::ScratchDir dir;
  testing::write_text(dir / "r.toml", "[storage]\n\tsize = \"2Q\"\n");
  Error error{ErrorKind::kBadInput, "bad size", {(dir / "r.toml").string(), 2, 9}, {}};
  EXPECT_EQ(error.display(), (dir / "r.toml").string() + ":2:9: bad size\n 2 | \tsize = \"2Q\"\n   | \t       ^");
}

TEST(ErrorDisplay, ALongLineIsShownAroundTheColumn) {
  testing::ScratchDir dir;
  testing::write_text(dir / "long.cfg", std::string(500, 'a') + "X" + std::string(500, 'b') + "\n");
  Error error{ErrorKind::kBadInput, "here", {(dir / "long.cfg").string(), 1, 501}, {}};
  std::string shown = error.display();
  EXPECT_THAT(shown, HasSubstr("\n 1 | ..." + std::string(50, 'a') + "X"));
  EXPECT_THAT(shown, HasSubstr("\n   | " + std::string(53, ' ') + "^"));
}

TEST(ErrorDisplay, WithoutAReadableLineItIsTheMessage) {
  Error in_memory{ErrorKind::kBadInput, "bad", {"r.toml", 3, 1}, {}};
  EXPECT_EQ(in_memory.display(), in_memory.to_string());
  testing::ScratchDir dir;
  testing::write_text(dir / "short", "one line\n");
  Error past_the_end{ErrorKind::kBadInput, "bad", {(dir / "short").string(), 7, 1}, {}};
  EXPECT_EQ(past_the_end.display(), past_the_end.to_string());
}

}  // namespace
}  // namespace kiln
