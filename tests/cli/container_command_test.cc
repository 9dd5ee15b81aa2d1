// `kiln container`, `kiln diff` and `kiln patch` as a user runs them: exit
// codes, messages on stderr, --json results, and signed patches.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/crypto/gpg_test_home.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::read_text;
using testing::run_kiln;
using testing::write_text;

class ContainerCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_text(dir_ / "old/etc/hostname", "debian\n");
    write_text(dir_ / "new/etc/hostname", "fido\n");
    write_text(dir_ / "new/etc/motd", "composed by kiln\n");
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  testing::ScratchDir dir_;
};

TEST_F(ContainerCommandTest, DiffThenPatchTurnsOneTreeIntoTheOther) {
  auto diff = run_kiln({"diff", path("old"), path("new"), "-o", path("fido.patch"), "--json"});
  ASSERT_EQ(diff.exit_code, 0) << diff.err;
  EXPECT_EQ(nlohmann::json::parse(diff.out)["entries"], 2);
  auto printed = run_kiln({"diff", path("old"), path("new")});
  EXPECT_EQ(printed.out, read_text(dir_ / "fido.patch"));
  auto patch = run_kiln({"patch", path("old"), path("fido.patch")});
  ASSERT_EQ(patch.exit_code, 0) << patch.err;
  EXPECT_EQ(patch.out, "Patched the directory " + path("old") + ": 1 created, 1 changed, 0 removed\n");
  EXPECT_EQ(read_text(dir_ / "old/etc/motd"), "composed by kiln\n");
  // Applied twice, it no longer fits: exit 2, and the rejection on stderr.
  auto again = run_kiln({"patch", path("old"), path("fido.patch")});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_THAT(again.err, HasSubstr("kiln: error: " + path("fido.patch") + " does not apply to the directory"));
  EXPECT_THAT(again.err, HasSubstr("etc/motd: the patch expects 'none' here"));
}

TEST_F(ContainerCommandTest, PatchWithAKeyringNeedsAGoodSignature) {
  testing::GpgTestHome key{"Kiln Patches"};
  fs::path keyring = key.export_public(dir_ / "trusted.gpg");
  ASSERT_EQ(run_kiln({"diff", path("old"), path("new"), "-o", path("fido.patch")}).exit_code, 0);
  auto unsigned_ = run_kiln({"patch", path("old"), path("fido.patch"), "--keyring", keyring.string()});
  EXPECT_EQ(unsigned_.exit_code, 5);
  EXPECT_THAT(unsigned_.err, HasSubstr("no signature " + path("fido.patch") + ".asc"));
  auto sign = testing::run_program({"gpg", "--batch", "--armor", "--detach-sign", "--output", path("fido.patch.asc"),
                                    path("fido.patch")},
                                   key.env());
  ASSERT_EQ(sign.exit_code, 0) << sign.err;
  auto good = run_kiln({"patch", path("old"), path("fido.patch"), "--keyring", keyring.string(), "--json"});
  ASSERT_EQ(good.exit_code, 0) << good.err;
  EXPECT_EQ(nlohmann::json::parse(good.out)["changed"], 1);
}

TEST_F(ContainerCommandTest, ASyntaxErrorExitsTwoWithFileLineAndColumn) {
  write_text(dir_ / "fido.domain", "name = \"fido\"\n[image " + path("fido-etc") + "\n 50MB] [end]\n");
  auto result = run_kiln({"container", path("fido.domain"), "--stripped", path("fido.cfg")});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err, "kiln: error: " + path("fido.domain") + ":3:6: expected 3 or 4 fields for [image PATH SIZE "
                                                                "LABEL [FSTYPE]], found 2\n"
                                                                " 3 |  50MB] [end]\n"
                                                                "   |      ^\n");
  EXPECT_FALSE(fs::exists(dir_ / "fido.cfg"));
}

TEST_F(ContainerCommandTest, ContainerRunsAndReportsAsJson) {
  write_text(dir_ / "fido.domain", "name = \"fido\"\n[image fido-etc 8M fido_etc ext4][end]\n"
                                   "[populate image fido-etc /mnt/ etc.cpio.gz][end]\n"
                                   "[create old/etc/ etc.cpio.gz][end]\n");
  auto misordered = run_kiln({"container", path("fido.domain")});
  EXPECT_EQ(misordered.exit_code, 2);
  EXPECT_THAT(misordered.err, HasSubstr(":3:1: expected [create] at " + path("fido.domain") +
                                        ":4:1 before this [populate image]"));
  write_text(dir_ / "fido.domain", "name = \"fido\"\n[create old/etc/ etc.cpio.gz][end]\n"
                                   "[image fido-etc 8M fido_etc ext4][end]\n"
                                   "[populate image fido-etc /mnt/ etc.cpio.gz][end]\n");
  auto result = run_kiln({"container", path("fido.domain"), "--stripped", path("fido.cfg"), "--json", "--dir",
                          path("work")});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  std::string out = result.out.substr(0, result.out.size() - 1);
  auto last = nlohmann::json::parse(out.substr(out.rfind('\n') + 1));
  EXPECT_EQ(last["event"], "result");
  EXPECT_EQ(last["domain"], "fido");
  EXPECT_EQ(last["steps"].size(), 3u);
  EXPECT_EQ(read_text(dir_ / "fido.cfg"), "name = \"fido\"\n");
  EXPECT_TRUE(fs::exists(dir_ / "etc.cpio.gz"));  // relative paths are the container file's directory's
}

}  // namespace
}  // namespace kiln
