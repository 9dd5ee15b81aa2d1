// `kiln exec`, `kiln cp` and `kiln run` read their command lines as a user
// writes them, and refuse what cannot work before they touch an instance:
// repeatable options before `--`, a command with options of its own, a copy
// with no guest side, an instance that does not exist.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class ExecCommandTest : public ::testing::Test {
 protected:
  testing::ProcessResult kiln(std::vector<std::string> args) {
    return testing::run_kiln(args, {"KILN_RUNTIME_DIR=" + (dir_.path() / "run").string(),
                                    "KILN_STATE_DIR=" + (dir_.path() / "state").string()});
  }
  testing::ScratchDir dir_;
};

TEST_F(ExecCommandTest, RepeatedOptionsStopAtTheCommandAndItsOwnOptionsAreItsOwn) {
  auto result = kiln({"exec", "web1", "--env", "A=1", "--env", "B=2", "--", "sh", "-c", "exit 3"});
  EXPECT_EQ(result.exit_code, 255);
  EXPECT_THAT(result.err, HasSubstr("no instance named web1"));
  EXPECT_THAT(result.err, Not(HasSubstr("not expected")));
}

TEST_F(ExecCommandTest, AnUnknownInstanceIsNamedByEveryCommand) {
  EXPECT_THAT(kiln({"exec", "ghost", "--", "true"}).err, HasSubstr("ghost"));
  auto copy = kiln({"cp", "ghost:/etc/hostname", (dir_.path() / "h").string()});
  EXPECT_NE(copy.exit_code, 0);
  EXPECT_THAT(copy.err, HasSubstr("ghost"));
  EXPECT_TRUE(testing::list_tree(dir_.path()).empty()) << "a failed copy left a file";
}

TEST_F(ExecCommandTest, ACopyNeedsExactlyOneGuestSide) {
  auto neither = kiln({"cp", "a", "b"});
  EXPECT_NE(neither.exit_code, 0);
  EXPECT_THAT(neither.err, HasSubstr("exactly one side must be NAME:PATH"));
  auto both = kiln({"cp", "web1:/a", "web2:/b"});
  EXPECT_NE(both.exit_code, 0);
  EXPECT_THAT(both.err, HasSubstr("exactly one side"));
  auto no_path = kiln({"cp", "./file", "web1:"});
  EXPECT_NE(no_path.exit_code, 0);
  EXPECT_THAT(no_path.err, HasSubstr("no path in the guest"));
}

TEST_F(ExecCommandTest, RunRefusesAMalformedCopyBeforeItBoots) {
  auto result = kiln({"run", (dir_.path() / "image").string(), "--copy", "nocolon", "--", "sh", "-c", "true"});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.err, HasSubstr("--copy nocolon: expected FROM:TO"));
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "run")) << "run made an instance before it read its flags";
}

TEST_F(ExecCommandTest, HelpNamesEveryOptionAndTheExitCodes) {
  auto help = kiln({"exec", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* option : {"--interactive", "--tty", "--user", "--env", "--workdir", "--timeout", "--wait-ready"})
    EXPECT_THAT(help.out, HasSubstr(option));
  EXPECT_THAT(help.out, HasSubstr("124"));
  EXPECT_THAT(help.out, HasSubstr("255"));
}

}  // namespace
}  // namespace kiln
