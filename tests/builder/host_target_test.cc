// What `kiln bake --target lvm:VG/LV` decides from what lvm2 reports,
// answered by a FakeCommandRunner: a volume that exists and is big enough,
// one too small, a volume group with and without room for a new one, and
// none at all. No device-mapper, no volume group and no root are needed.
// (tests/cli/host_target_test.cc runs the real command on this host.)
#include "builder/host_target.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/size.h"
#include "tests/fake_command_runner.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kImage = 2 * kGiB;

// lvm2's JSON report, as `lvm lvs|vgs --reportformat json` prints it.
std::string report(std::string_view kind, std::string_view row) {
  return fmt::format(R"({{
      "report": [
          {{
              "{}": [
                  {}
              ]
          }}
      ]
  }}
)",
                     kind, row);
}

class LvmTargetTest : public ::testing::Test {
 protected:
  // lvm answers `lvs` with `lv` (nothing: the volume does not exist, exit
  // 5) and `vgs` with `vg` likewise.
  void answer(std::string lv, std::string vg) {
    runner_.on_run = [lv, vg](const Command& command) -> Result<Completed> {
      const std::string& what = command.argv.at(1);
      const std::string& out = what == "lvs" ? lv : what == "vgs" ? vg : std::string();
      return Completed{out.empty() ? 5 : 0, false, out, {}};
    };
  }
  Result<HostTarget> check(std::string_view spec, bool device_mapper = true) {
    return check_host_target(spec, kImage, TargetHost{runner_, device_mapper});
  }
  testing::FakeCommandRunner runner_;
};

TEST_F(LvmTargetTest, AMissingVolumeIsMadeWhereItsGroupHasRoom) {
  answer("", report("vg", R"({"vg_free":"10737418240"})"));
  auto target = check("lvm:vg0/web1");
  ASSERT_TRUE(target) << target.error().to_string();
  EXPECT_TRUE(target->create_lv);
  EXPECT_EQ(target->device, "/dev/vg0/web1");
  EXPECT_EQ(target->needed, kImage);
  ASSERT_EQ(runner_.commands.size(), 2u);
  EXPECT_THAT(runner_.commands[0].argv, ElementsAre("lvm", "lvs", "-o", "lv_path,lv_size", "vg0/web1",
                                                    "--reportformat", "json", "--units", "b", "--nosuffix"));
  EXPECT_THAT(runner_.commands[1].argv,
              ElementsAre("lvm", "vgs", "-o", "vg_free", "vg0", "--reportformat", "json", "--units", "b", "--nosuffix"));
  // lvm2's words, whatever the user's locale, and no warning per open fd.
  EXPECT_THAT(runner_.commands[0].env, ::testing::Contains("LC_ALL=C"));
  EXPECT_THAT(runner_.commands[0].env, ::testing::Contains("LVM_SUPPRESS_FD_WARNINGS=1"));
}

TEST_F(LvmTargetTest, AGroupWithoutRoomForTheImageIsRefusedWithBothSizes) {
  answer("", report("vg", R"({"vg_free":"1073741824"})"));
  auto target = check("lvm:vg0/web1");
  ASSERT_FALSE(target);
  EXPECT_EQ(target.error().kind, ErrorKind::kNoSpace);
  EXPECT_EQ(target.error().message,
            "--target lvm:vg0/web1: volume group vg0 has 1.0 GiB free, but a new volume web1 for the image needs "
            "2.0 GiB (storage.size)");
}

TEST_F(LvmTargetTest, AHostWithoutTheGroupIsToldToLookAtVgs) {
  answer("", "");
  auto target = check("lvm:vg9/web1");
  ASSERT_FALSE(target);
  EXPECT_EQ(target.error().kind, ErrorKind::kBadInput);
  EXPECT_THAT(target.error().message, HasSubstr("this host has no volume group vg9 (see `vgs`)"));
}

TEST_F(LvmTargetTest, AnExistingVolumeTooSmallIsRefusedBeforeTheBake) {
  answer(report("lv", R"({"lv_path":"/dev/vg0/web1", "lv_size":"1073741824"})"), "");
  auto target = check("lvm:vg0/web1");
  ASSERT_FALSE(target);
  EXPECT_EQ(target.error().kind, ErrorKind::kNoSpace);
  EXPECT_THAT(target.error().message, HasSubstr("the device holds 1.0 GiB (1073741824 bytes), but the image needs "
                                                "2.0 GiB (2147483648 bytes, storage.size)"));
  EXPECT_EQ(runner_.commands.size(), 1u);  // no volume group is consulted
}

TEST_F(LvmTargetTest, WithoutDeviceMapperLvmIsNotEvenAsked) {
  auto target = check("lvm:vg0/web1", false);
  ASSERT_FALSE(target);
  EXPECT_EQ(target.error().kind, ErrorKind::kMissingTool);
  EXPECT_THAT(target.error().message, HasSubstr("this host has no device-mapper"));
  EXPECT_TRUE(runner_.commands.empty());
}

TEST_F(LvmTargetTest, ABadNameIsRefusedBeforeAnythingRuns) {
  for (std::string_view spec : {"lvm:vg0", "lvm:vg0/-web", "lvm:../web"}) {
    auto target = check(spec);
    ASSERT_FALSE(target) << spec;
    EXPECT_EQ(target.error().kind, ErrorKind::kBadInput) << spec;
  }
  EXPECT_TRUE(runner_.commands.empty());
}

TEST_F(LvmTargetTest, LvmFailingForAnotherReasonIsAnError) {
  runner_.on_run = [](const Command&) -> Result<Completed> {
    return fail(ErrorKind::kFailed, "lvm exited with status 3");
  };
  auto target = check("lvm:vg0/web1");
  ASSERT_FALSE(target);
  EXPECT_THAT(target.error().message, HasSubstr("lvm exited with status 3"));
}

}  // namespace
}  // namespace kiln
