// `kiln bake --target`: a host block device that receives the image, and
// every refusal checked before the bake starts, naming what is wrong (and,
// without device-mapper, what to do instead). Block devices here are loop
// devices over scratch files.
#include <fcntl.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/files.h"
#include "tests/builder/fake_rootfs.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::read_text;
using testing::run_kiln;
using testing::run_program;
using testing::ScratchDir;
using testing::write_text;

constexpr uint64_t kMiB = 1 << 20;

class HostTargetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_fake_rootfs(dir_ / "rootfs.tar");
    write_text(dir_ / "r.toml", "[image]\nname = \"target\"\n[bootstrap]\nfrom = \"rootfs.tar\"\n[storage]\n"
                                "size = \"256M\"\n[customize]\nhostname = \"on-device\"\n");
  }
  void TearDown() override {
    for (const std::string& loop : loops_) run_program({"losetup", "-d", loop});
  }

  ProcessResult bake(const std::string& target) {
    return run_kiln({"bake", (dir_ / "r.toml").string(), "-o", (dir_ / "out").string(), "--cache",
                     (dir_ / "cache").string(), "--target", target},
                    {"SOURCE_DATE_EPOCH=1700000000"});
  }

  // A loop device over a file of `size` bytes filled with 0xff, so that
  // anything not written shows.
  std::string loop_device(const std::string& name, uint64_t size) {
    auto file = dir_ / name;
    run_program({"sh", "-c", "head -c " + std::to_string(size) + " /dev/zero | tr '\\000' '\\377' > " + file.string()});
    auto attached = run_program({"losetup", "--find", "--show", file.string()});
    EXPECT_EQ(attached.exit_code, 0) << attached.err;
    std::string loop = attached.out.substr(0, attached.out.find('\n'));
    loops_.push_back(loop);
    return loop;
  }

  ScratchDir dir_;
  std::vector<std::string> loops_;
};

TEST_F(HostTargetTest, WithoutDeviceMapperSaysSoAndWhatToDoInstead) {
  if (read_text("/proc/misc").find(" device-mapper\n") != std::string::npos)
    GTEST_SKIP() << "this host has device-mapper";
  auto result = bake("lvm:vg0/web1");
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.err,
            "kiln: error: --target lvm:vg0/web1: this host has no device-mapper (the dm-mod kernel module is not "
            "loaded: /proc/misc has no 'device-mapper'), so its logical volumes can be neither created nor opened. "
            "Load it with `modprobe dm-mod` as root, on a kernel that has it; or bake to a file with -o DIR and copy "
            "DIR/disk.raw onto the volume on a host that has device-mapper (dd if=DIR/disk.raw of=/dev/VG/LV bs=4M "
            "conv=sparse,fsync)\n");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out"));
}

TEST_F(HostTargetTest, WhatIsNotABlockDeviceIsRefused) {
  auto file = bake((dir_ / "disk.img").string());
  EXPECT_EQ(file.exit_code, 2) << file.out << file.err;
  EXPECT_THAT(file.err, HasSubstr("expected lvm:VG/LV or a block device under /dev; to write an image file, use -o DIR"));
  auto character = bake("/dev/null");
  EXPECT_EQ(character.exit_code, 2);
  EXPECT_THAT(character.err, HasSubstr("--target /dev/null: /dev/null is not a block device"));
  auto bad_name = bake("lvm:vg0/-web");
  EXPECT_EQ(bad_name.exit_code, 2);
  EXPECT_THAT(bad_name.err, HasSubstr("--target lvm:vg0/-web: \"-web\": expected letters"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out"));
}

TEST_F(HostTargetTest, ATooSmallDeviceNamesTheSizeNeeded) {
  if (::geteuid() != 0) GTEST_SKIP() << "loop devices need root";
  std::string loop = loop_device("small.img", 64 * kMiB);
  auto result = bake(loop);
  EXPECT_EQ(result.exit_code, 4);
  EXPECT_THAT(result.err, HasSubstr("--target " + loop + ": the device holds 64 MiB (67108864 bytes), but the image "
                                    "needs 256 MiB (268435456 bytes, storage.size)"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out"));
}

TEST_F(HostTargetTest, ADeviceInUseIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "loop devices need root";
  std::string loop = loop_device("busy.img", 300 * kMiB);
  UniqueFd held(::open(loop.c_str(), O_RDONLY | O_EXCL));
  ASSERT_TRUE(held);
  auto result = bake(loop);
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("--target " + loop + ": " + loop + " is in use by another program"));
}

TEST_F(HostTargetTest, TheImageLandsOnTheDeviceWithItsHolesZeroed) {
  if (::geteuid() != 0) GTEST_SKIP() << "loop devices need root";
  std::string loop = loop_device("device.img", 320 * kMiB);
  auto result = bake(loop);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("Wrote the image onto " + loop));
  run_program({"losetup", "-d", loop});
  loops_.clear();
  auto device = dir_ / "device.img";
  auto disk = dir_ / "out/disk.raw";
  // The partitions are the image's, holes included (the tables before and
  // after them differ: they describe the larger device).
  auto cmp = run_program({"cmp", "-i", std::to_string(kMiB), "-n", std::to_string(255 * kMiB - 34 * 512),
                          disk.string(), device.string()});
  EXPECT_EQ(cmp.exit_code, 0) << cmp.out;
  // The table was made for the larger device: its backup is at the end.
  auto verify = run_program({"sfdisk", "--verify", device.string()});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  EXPECT_THAT(run_program({"sfdisk", "--dump", device.string()}).out, HasSubstr("last-lba: 655326"));
}

}  // namespace
}  // namespace kiln
