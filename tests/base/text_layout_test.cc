// Prose laid out for the terminal by the generated references.
#include "base/text_layout.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

TEST(TextLayout, WrapsAtTheWidthUnderAnIndentOrABullet) {
  EXPECT_EQ(wrap_text("one two three four", 2, {}, 12), "  one two\n  three four\n");
  EXPECT_EQ(wrap_text("one two three four", 4, "  - ", 14), "  - one two\n    three four\n");
  EXPECT_EQ(wrap_text("short", 0), "short\n");
}

TEST(TextLayout, AWordLongerThanALineStandsAlone) {
  EXPECT_EQ(wrap_text("a https://example.org/a/very/long/path b", 2, {}, 16),
            "  a\n  https://example.org/a/very/long/path\n  b\n");
}

TEST(TextLayout, IndentsEveryLineWithoutAddingOne) {
  EXPECT_EQ(indent_lines("a\n b", "    "), "    a\n     b\n");
  EXPECT_EQ(indent_lines("a\n", "> "), "> a\n");
  EXPECT_EQ(indent_lines("a\n\nb", "> "), "> a\n> \n> b\n");
  EXPECT_EQ(indent_lines("", "> "), "");
}

}  // namespace
}  // namespace kiln
