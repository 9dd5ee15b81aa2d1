// What a bake of another architecture's image checks and does before it runs
// that architecture's programs, against scratch directories standing in for
// binfmt_misc and qemu-user-static's binfmt.d files.
#include "builder/foreign_emulation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kAarch64 =
    ":qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01:\\xff\\xff\\xff\\xff\\xff\\xff\\xff:"
    "/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF";

class ForeignEmulationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_ / "binfmt_misc");
    std::filesystem::create_directories(dir_ / "binfmt.d");
    host_.binfmt_misc = dir_ / "binfmt_misc";
    host_.definitions = dir_ / "binfmt.d";
    host_.interpreters = dir_.path();
    host_.runs_natively = [this](const Architecture&) { return kernel_runs_i386_; };
    host_.mount = [this] {
      ++mounts_;
      testing::write_text(dir_ / "binfmt_misc/register", "");
      return true;
    };
  }
  void install_qemu_user() {
    testing::write_text(dir_ / "binfmt.d/qemu-aarch64.conf", "# made by qemu\n\n" + std::string(kAarch64) + "\n");
  }
  Result<> ensure(std::string_view arch) {
    return ensure_foreign_emulation(*find_architecture(arch), host_, Reporter::quiet());
  }

  testing::ScratchDir dir_;
  BinfmtHost host_;
  int mounts_ = 0;
  bool kernel_runs_i386_ = true;
};

TEST_F(ForeignEmulationTest, TheHostsOwnArchitectureNeedsNothing) {
  EXPECT_TRUE(ensure("amd64"));
  EXPECT_TRUE(ensure("i386")) << "the host's kernel runs i386 programs itself";
  EXPECT_EQ(mounts_, 0);
}

// Debian's qemu-user-static has no binfmt.d file for i386 on amd64, whose
// kernels usually run it; kiln registers qemu's own entry where one does not.
TEST_F(ForeignEmulationTest, AKernelWithoutIa32EmulationRunsI386ThroughQemuWithQemusOwnEntry) {
  kernel_runs_i386_ = false;
  auto missing = ensure("i386");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().kind, ErrorKind::kMissingTool);
  EXPECT_THAT(missing.error().message, HasSubstr("does not run i386 programs itself"));
  EXPECT_THAT(missing.error().message, HasSubstr("usr/bin/qemu-i386-static is missing"));
  EXPECT_THAT(missing.error().message, HasSubstr("'qemu-user-static'"));

  testing::write_text(dir_ / "usr/bin/qemu-i386-static", "");
  ASSERT_TRUE(ensure("i386"));
  EXPECT_EQ(mounts_, 1);
  EXPECT_EQ(testing::read_text(dir_ / "binfmt_misc/register"), find_architecture("i386")->binfmt_line);
  EXPECT_THAT(find_architecture("i386")->binfmt_line,
              ::testing::StartsWith(":qemu-i386:M::\\x7fELF\\x01\\x01\\x01\\x00"));
  EXPECT_THAT(find_architecture("i386")->binfmt_line, ::testing::EndsWith(":/usr/bin/qemu-i386-static:F"));
}

TEST_F(ForeignEmulationTest, ARegisteredEntryIsUsedAsItIs) {
  testing::write_text(dir_ / "binfmt_misc/qemu-aarch64", "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n");
  EXPECT_TRUE(ensure("arm64"));
  EXPECT_EQ(mounts_, 0);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "binfmt_misc/register"));
}

TEST_F(ForeignEmulationTest, WithoutQemuUserStaticTheErrorNamesThePackage) {
  auto done = ensure("arm64");
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().kind, ErrorKind::kMissingTool);
  EXPECT_THAT(done.error().message, HasSubstr("install the Debian package 'qemu-user-static'"));
  EXPECT_THAT(done.error().message, HasSubstr("qemu-aarch64.conf"));
}

TEST_F(ForeignEmulationTest, AnUnmountedBinfmtMiscIsMountedAndTheEntryRegistered) {
  install_qemu_user();
  ASSERT_TRUE(ensure("arm64"));
  EXPECT_EQ(mounts_, 1);
  EXPECT_EQ(testing::read_text(dir_ / "binfmt_misc/register"), kAarch64) << "the first line that is not a comment";
}

TEST_F(ForeignEmulationTest, ABinfmtMiscThatCannotBeMountedIsExplained) {
  install_qemu_user();
  host_.mount = [] { return false; };
  auto done = ensure("armhf");
  ASSERT_FALSE(done);
  EXPECT_THAT(done.error().message, HasSubstr("qemu-arm.conf"));
  testing::write_text(dir_ / "binfmt.d/qemu-arm.conf", ":qemu-arm:M::x:y:/usr/libexec/qemu-binfmt/arm-binfmt-P:OPF\n");
  done = ensure("armhf");
  ASSERT_FALSE(done);
  EXPECT_THAT(done.error().message, HasSubstr("mount -t binfmt_misc binfmt_misc"));
}

}  // namespace
}  // namespace kiln
