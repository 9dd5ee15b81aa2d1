// The CI matrix's long part (`make test-matrix`, ctest label "matrix"): the
// default recipe baked for arm64 (through qemu-user emulation) and for
// bullseye, checked and booted as a user would, the trixie and sid images
// booted, and the arm64 bake's reproducibility. The bakes are ctest fixtures
// (tests/CMakeLists.txt). They are kept out of `make test`: an arm64 bake
// alone runs its package scripts under qemu-user for 13 minutes or more on
// these 2-core machines. The i386, trixie and sid bakes, and the i386 boot,
// are in `make test` (tests/matrix/suites_test.cc).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/matrix/matrix_images.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::run_program;

using testing::kMatrix;
using testing::matrix_manifest;
using testing::MatrixBootTest;

TEST(MatrixBake, Arm64AndBullseyeRecordTheirArchitectureAndPassFsck) {
  testing::expect_baked_for("arm64", "arm64");
  testing::expect_baked_for("bullseye", "amd64");
}

TEST(MatrixBake, TheKernelAndTheEfiBootLoaderFollowTheArchitecture) {
  // Kept: a range-for over a temporary's member would read freed memory.
  const nlohmann::json arm64 = matrix_manifest("arm64");
  std::map<std::string, std::string> kernel_of;
  for (const auto& package : arm64["packages"]) {
    std::string name = package["name"];
    if (name.starts_with("linux-image-")) kernel_of[name] = package["architecture"];
  }
  EXPECT_EQ(kernel_of["linux-image-arm64"], "arm64");
  EXPECT_EQ(kernel_of.count("linux-image-amd64"), 0u);
  // The ESP is read with mtools, as firmware would: BOOTAA64.EFI, not BOOTX64.EFI.
  uint64_t esp = 0;
  for (const auto& partition : arm64["image"]["partitions"])
    if (partition["name"] == "esp") esp = partition["offset"];
  ASSERT_NE(esp, 0u);
  auto listing = run_program({"mdir", "-b", "-i", (kMatrix / "arm64/disk.raw").string() + "@@" + std::to_string(esp),
                              "::/EFI/BOOT"});
  EXPECT_THAT(listing.out, HasSubstr("BOOTAA64.EFI")) << listing.err;
  EXPECT_THAT(arm64["image"]["kernel_cmdline"].get<std::string>(), HasSubstr("console=ttyAMA0"));
}

TEST_F(MatrixBootTest, AnArm64ImageBootsUnderQemuSystemAarch64AndAnswersExec) {
  ProcessResult booted = boot("arm64", "arm");
  ASSERT_EQ(booted.exit_code, 0) << booted.err;
  EXPECT_THAT(booted.err, HasSubstr("qemu-system-aarch64 with TCG: the image is for arm64"));
  EXPECT_EQ(exec("arm", "uname -m; dpkg --print-architecture"), "aarch64\narm64\n");
}

TEST_F(MatrixBootTest, AnArm64ImageBootsThroughUefiFirmware) {
  ProcessResult booted = boot("arm64", "arm-efi", {"--firmware"});
  ASSERT_EQ(booted.exit_code, 0) << booted.err;
  EXPECT_EQ(exec("arm-efi", "test -d /sys/firmware/efi && uname -m"), "aarch64\n");
}

TEST_F(MatrixBootTest, UmlRefusesAnotherArchitectureByName) {
  ProcessResult booted = boot("arm64", "arm-uml", {"--backend", "uml"});
  EXPECT_NE(booted.exit_code, 0);
  EXPECT_THAT(booted.err, HasSubstr("User-Mode Linux runs amd64 images only: use --backend qemu"));
}

TEST_F(MatrixBootTest, TrixieAndSidBootToReady) {
  for (const std::string image : {"trixie", "sid"}) {
    SCOPED_TRACE(image);
    ProcessResult booted = boot(image, image, {"--backend", "qemu"});
    ASSERT_EQ(booted.exit_code, 0) << booted.err;
    EXPECT_THAT(exec(image, "cat /etc/os-release"), HasSubstr("VERSION_CODENAME="));
  }
}

// Two bakes of the arm64 recipe, the second with no stage cache, give the
// same bytes: reproducibility holds through qemu-user emulation too.
TEST(MatrixReproducibility, TwoArm64BakesAreByteIdentical) {
  testing::ScratchDir dir;
  ProcessResult again = testing::run_kiln({"bake", testing::source_path("recipes/debian-12-minimal.toml").string(),
                                           "--set", "image.arch=arm64", "--set", "customize.hostname=arm64", "--no-cache",
                                           "-o", (dir / "arm64").string()},
                                          {"SOURCE_DATE_EPOCH=1700000000"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  for (const char* file : {"disk.raw", "vmlinuz", "initrd.img"}) {
    SCOPED_TRACE(file);
    EXPECT_EQ(run_program({"cmp", (kMatrix / "arm64" / file).string(), (dir / "arm64" / file).string()}).exit_code, 0);
  }
}

}  // namespace
}  // namespace kiln
