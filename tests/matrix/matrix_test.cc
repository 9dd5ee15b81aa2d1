// The CI matrix (`make test-matrix`, ctest label "matrix"): the default
// recipe baked for real for other architectures (arm64 through qemu-user
// emulation, i386 natively) and other suites (trixie, sid, bullseye), each
// booted or checked as a user would. The bakes are ctest fixtures
// (tests/CMakeLists.txt), shared by the tests here. They are kept out of
// `make test`: an arm64 bake alone runs its package scripts under qemu-user
// for 15-20 minutes on these 2-core machines.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/root_filesystem.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::read_text;
using testing::run_program;

const std::filesystem::path kMatrix = std::filesystem::path(KILN_INTEGRATION_DIR) / "matrix";

nlohmann::json manifest(const std::string& image) {
  return nlohmann::json::parse(read_text(kMatrix / image / "manifest.json"));
}

std::string debugfs(const std::string& image, const std::string& request) {
  return run_program({"debugfs", "-R", request, testing::root_filesystem(kMatrix / image)}).out;
}

// Instances of one test, in its own state directory, destroyed at its end.
class MatrixBootTest : public ::testing::Test {
 protected:
  std::vector<std::string> env() const {
    return {"KILN_RUNTIME_DIR=" + (dir_ / "run").string(), "KILN_STATE_DIR=" + (dir_ / "state").string()};
  }
  ProcessResult kiln(std::vector<std::string> args) const { return testing::run_kiln(args, env()); }
  ProcessResult boot(const std::string& image, const std::string& name, std::vector<std::string> more = {}) {
    names_.push_back(name);
    std::vector<std::string> args = {"boot", (kMatrix / image).string(), "--name", name, "--detach", "--wait-ready=900"};
    args.insert(args.end(), more.begin(), more.end());
    return kiln(args);
  }
  std::string exec(const std::string& name, const std::string& command) {
    ProcessResult result = kiln({"exec", name, "--", "sh", "-c", command});
    EXPECT_EQ(result.exit_code, 0) << command << ": " << result.err;
    return result.out;
  }
  void TearDown() override {
    for (const std::string& name : names_) kiln({"destroy", name});
  }
  testing::ScratchDir dir_;
  std::vector<std::string> names_;
};

TEST(MatrixBake, EachImageRecordsItsArchitectureAndPassesFsck) {
  for (const auto& [image, arch] : std::vector<std::pair<std::string, std::string>>{
           {"arm64", "arm64"}, {"i386", "i386"}, {"trixie", "amd64"}, {"sid", "amd64"}, {"bullseye", "amd64"}}) {
    SCOPED_TRACE(image);
    EXPECT_EQ(manifest(image)["image"]["architecture"], arch);
    auto fsck = run_program({"e2fsck", "-fn", testing::root_filesystem(kMatrix / image)});
    EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
    EXPECT_EQ(debugfs(image, "cat /etc/hostname"), image + "\n");
  }
}

TEST(MatrixBake, TheKernelAndTheEfiBootLoaderFollowTheArchitecture) {
  // Kept: a range-for over a temporary's member would read freed memory.
  const nlohmann::json arm64 = manifest("arm64");
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
  EXPECT_THAT(manifest("i386")["packages"].dump(), HasSubstr("\"linux-image-686\""));
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

TEST_F(MatrixBootTest, AnI386ImageBootsUnderQemuSystemI386AndAnswersExec) {
  ProcessResult booted = boot("i386", "x86-32");
  ASSERT_EQ(booted.exit_code, 0) << booted.err;
  EXPECT_EQ(exec("x86-32", "uname -m; dpkg --print-architecture"), "i686\ni386\n");
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
