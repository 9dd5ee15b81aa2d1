// LVM metadata from lvm2's own tools inside an image file, read back with
// lvm2 (pvs, vgs, lvs on a loop device): the volume group and volumes the
// caller asked for, where kiln says they are, and the host's LVM state
// untouched.
#include "formats/disk/lvm_layout.h"

#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::read_text;
using testing::run_program;
using testing::ScratchDir;
using testing::write_text;

constexpr uint64_t kMiB = 1 << 20;

// Everything under a directory with its modification time, to see that
// nothing changed there.
std::string snapshot(const std::filesystem::path& dir) {
  std::string out;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return "(none)";
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir, ec))
    out += entry.path().string() + " " +
           std::to_string(std::filesystem::last_write_time(entry.path(), ec).time_since_epoch().count()) + "\n";
  return out;
}

class LvmLayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "lvm2's tools need a loop device, hence root";
    write_text(image_, "");
    std::filesystem::resize_file(image_, 4 * kMiB + 300 * kMiB);
  }

  // Reads the metadata back with lvm2 on a loop device of its own, with a
  // private configuration like kiln's.
  std::string lvm_report(const std::vector<std::string>& args) {
    auto attached = run_program({"losetup", "--find", "--show", "--offset", std::to_string(4 * kMiB), "--sizelimit",
                                 std::to_string(300 * kMiB), image_.string()});
    EXPECT_EQ(attached.exit_code, 0) << attached.err;
    std::string loop = attached.out.substr(0, attached.out.find('\n'));
    write_text(dir_ / "lvm/lvm.conf",
               "devices { filter = [ \"a|^" + loop + "$|\", \"r|.*|\" ] use_devicesfile = 0 hints = \"none\" "
               "obtain_device_list_from_udev = 0 }\nglobal { locking_dir = \"" + (dir_ / "lvm").string() +
                   "\" notify_dbus = 0 }\nbackup { backup = 0 archive = 0 }\n");
    std::vector<std::string> argv = {"lvm"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto report = run_program(argv, {"LVM_SYSTEM_DIR=" + (dir_ / "lvm").string(), "LVM_SUPPRESS_FD_WARNINGS=1"});
    run_program({"losetup", "-d", loop});
    EXPECT_EQ(report.exit_code, 0) << report.err;
    return report.out;
  }

  ScratchDir dir_;
  std::filesystem::path image_ = dir_ / "disk.raw";
};

TEST_F(LvmLayoutTest, ToolsWriteTheVolumesAskedFor) {
  std::string run_lvm = snapshot("/run/lvm"), etc_lvm = snapshot("/etc/lvm"), run_lock = snapshot("/run/lock/lvm");
  LogicalVolumeRequest volumes[] = {{"root", 0}, {"swap", 64 * kMiB}, {"srv", 10 * kMiB}};
  auto layout = write_lvm_layout(image_, 4 * kMiB, 300 * kMiB, "vg0", 4 * kMiB, volumes);
  ASSERT_TRUE(layout) << layout.error().to_string();
  EXPECT_EQ(layout->vg, "vg0");
  EXPECT_EQ(layout->pe_start, 1 * kMiB);
  EXPECT_EQ(layout->extent_size, 4 * kMiB);
  EXPECT_EQ(layout->extent_count, 74u);  // (300 - 1) MiB in 4 MiB extents
  ASSERT_EQ(layout->volumes.size(), 3u);
  // In the order asked for, contiguous, the rest volume first here.
  EXPECT_EQ(layout->volumes[0].name, "root");
  EXPECT_EQ(layout->volumes[0].offset, 1 * kMiB);
  EXPECT_EQ(layout->volumes[0].size, (74 - 16 - 3) * 4 * kMiB);
  EXPECT_EQ(layout->volumes[1].offset, 1 * kMiB + 55 * 4 * kMiB);
  EXPECT_EQ(layout->volumes[1].size, 64 * kMiB);
  EXPECT_EQ(layout->volumes[2].size, 12 * kMiB);  // rounded up to whole extents

  std::string lvs = lvm_report({"lvs", "--noheadings", "--separator", ",", "--units", "b", "--nosuffix", "-o",
                                "lv_name,lv_size,seg_pe_ranges", "vg0"});
  EXPECT_THAT(lvs, HasSubstr("root,230686720,"));
  EXPECT_THAT(lvs, HasSubstr("swap,67108864,"));
  EXPECT_THAT(lvs, HasSubstr("srv,12582912,"));
  std::string vgs = lvm_report({"vgs", "--noheadings", "--separator", ",", "--units", "b", "--nosuffix", "-o",
                                "vg_name,vg_size,vg_free,lv_count"});
  EXPECT_THAT(vgs, HasSubstr("vg0,310378496,0,3"));
  EXPECT_THAT(read_text(image_), HasSubstr("creation_host = \"kiln\""));
  EXPECT_EQ(snapshot("/run/lvm"), run_lvm);
  EXPECT_EQ(snapshot("/etc/lvm"), etc_lvm);
  EXPECT_EQ(snapshot("/run/lock/lvm"), run_lock);
  // No loop device is left attached to the image.
  EXPECT_EQ(run_program({"losetup", "-j", image_.string()}).out, "");
}

TEST_F(LvmLayoutTest, VolumesThatDoNotFitAreRefused) {
  LogicalVolumeRequest volumes[] = {{"root", 0}, {"big", 400 * kMiB}};
  auto layout = write_lvm_layout(image_, 4 * kMiB, 300 * kMiB, "vg0", 4 * kMiB, volumes);
  ASSERT_FALSE(layout);
  EXPECT_EQ(layout.error().kind, ErrorKind::kNoSpace);
  EXPECT_EQ(layout.error().message,
            "the logical volumes take 100 of the volume group's 74 extents of 4194304 bytes, and leave none for \"root\"");
  EXPECT_EQ(run_program({"losetup", "-j", image_.string()}).out, "");
}

}  // namespace
}  // namespace kiln
