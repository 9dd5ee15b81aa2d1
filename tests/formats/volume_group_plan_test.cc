// What kiln asks lvm2 when it lays out a volume group, and what it makes of
// lvm2's reports, answered by a FakeCommandRunner: no root, no loop device,
// no lvm2. (tests/formats/lvm_layout_test.cc runs the real tools.)
#include "formats/disk/lvm_layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "tests/fake_command_runner.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kExtent = 4 * kMiB;
const std::string kDevice = "/dev/loop7";

std::string report(std::string_view kind, std::string_view rows) {
  return fmt::format(R"({{"report": [{{"{}": [{}]}}]}})", kind, rows);
}

// lvm2 with a 100-extent group; `lvs` answers for the volumes lvcreate made,
// one after the other from extent 0, unless `lvs_answer` says otherwise.
class VolumeGroupPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runner_.on_run = [this](const Command& command) -> Result<Completed> {
      const std::string& verb = command.argv.at(1);
      // The private configuration lvm2 reads sees only our device.
      std::string dir = command.env.at(0).substr(std::string("LVM_SYSTEM_DIR=").size());
      configs_.push_back(testing::read_text(std::filesystem::path(dir) / "lvm.conf"));
      if (verb == "vgs")
        return Completed{0, false,
                         report("vg", R"({"vg_uuid":"VG-UUID", "vg_extent_size":"4194304", "vg_extent_count":"100",
                                          "vg_free_count":"100"})"),
                         {}};
      if (verb == "pvs") return Completed{0, false, report("pv", R"({"pv_uuid":"PV-UUID", "pe_start":"1048576"})"), {}};
      if (verb == "lvcreate") {
        auto extents = std::find(command.argv.begin(), command.argv.end(), "--extents");
        auto name = std::find(command.argv.begin(), command.argv.end(), "--name");
        created_.emplace_back(*(name + 1), std::stoull(*(extents + 1)));
      }
      if (verb == "lvs") return Completed{0, false, lvs_answer_.empty() ? lvs_from_created() : lvs_answer_, {}};
      return Completed{};
    };
  }

  std::string lvs_from_created() const {
    std::string rows;
    uint64_t at = 0;
    for (const auto& [name, extents] : created_) {
      rows += fmt::format(R"({}{{"lv_name":"{}", "lv_uuid":"{}-UUID", "lv_size":"{}", "seg_count":"1",
                             "seg_pe_ranges":"{}:{}-{}"}})",
                          rows.empty() ? "" : ",", name, name, extents * kExtent, kDevice, at, at + extents - 1);
      at += extents;
    }
    return report("lv", rows);
  }

  Result<LvmLayout> lay_out(std::vector<LogicalVolumeRequest> volumes) {
    return lay_out_volume_group(kDevice, "vg0", kExtent, volumes, runner_);
  }

  testing::FakeCommandRunner runner_;
  std::vector<std::pair<std::string, uint64_t>> created_;
  std::vector<std::string> configs_;
  std::string lvs_answer_;
};

TEST_F(VolumeGroupPlanTest, AsksLvm2ForTheGroupAndEachVolumeInOrder) {
  auto layout = lay_out({{"root", 200 * kMiB}, {"srv", 0}});
  ASSERT_TRUE(layout) << layout.error().to_string();
  std::vector<std::string> verbs;
  for (const Command& command : runner_.commands) verbs.push_back(command.argv.at(1));
  EXPECT_THAT(verbs, ElementsAre("pvcreate", "vgcreate", "vgs", "pvs", "lvcreate", "lvcreate", "lvs"));
  EXPECT_THAT(runner_.commands[1].argv,
              ElementsAre("lvm", "vgcreate", "--yes", "--physicalextentsize", "4194304b", "vg0", kDevice));
  // Never activated: no device-mapper is needed.
  EXPECT_THAT(runner_.commands[4].argv,
              ElementsAre("lvm", "lvcreate", "--driverloaded", "n", "--activate", "n", "--zero", "n",
                          "--wipesignatures", "n", "--yes", "--extents", "50", "--name", "root", "vg0"));
  for (const std::string& config : configs_) {
    EXPECT_THAT(config, HasSubstr("filter = [ \"a|^/dev/loop7$|\", \"r|.*|\" ]"));
    EXPECT_THAT(config, HasSubstr("backup = 0"));
  }
}

TEST_F(VolumeGroupPlanTest, TheRestVolumeTakesWhatTheOthersLeaveAndEachLiesAfterTheMetadata) {
  auto layout = lay_out({{"root", 200 * kMiB}, {"srv", 0}, {"swap", 64 * kMiB}});
  ASSERT_TRUE(layout) << layout.error().to_string();
  EXPECT_THAT(created_, ElementsAre(std::pair<std::string, uint64_t>{"root", 50},
                                    std::pair<std::string, uint64_t>{"srv", 34},
                                    std::pair<std::string, uint64_t>{"swap", 16}));
  EXPECT_EQ(layout->vg_uuid, "VG-UUID");
  EXPECT_EQ(layout->pv_uuid, "PV-UUID");
  EXPECT_EQ(layout->pe_start, kMiB);
  EXPECT_EQ(layout->extent_count, 100u);
  ASSERT_EQ(layout->volumes.size(), 3u);
  EXPECT_EQ(layout->volumes[1].name, "srv");
  EXPECT_EQ(layout->volumes[1].uuid, "srv-UUID");
  EXPECT_EQ(layout->volumes[1].offset, kMiB + 50 * kExtent);
  EXPECT_EQ(layout->volumes[1].size, 34 * kExtent);
}

TEST_F(VolumeGroupPlanTest, VolumesThatDoNotFitAreANoSpaceErrorBeforeAnyIsMade) {
  auto over = lay_out({{"root", 300 * kMiB}, {"srv", 200 * kMiB}});
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().kind, ErrorKind::kNoSpace);
  EXPECT_EQ(over.error().message, "the logical volumes need 125 extents of 4194304 bytes, but the volume group has 100");
  auto no_rest = lay_out({{"root", 400 * kMiB}, {"srv", 0}});
  ASSERT_FALSE(no_rest);
  EXPECT_THAT(no_rest.error().message, HasSubstr("leave none for \"srv\""));
  EXPECT_TRUE(created_.empty());
}

// kiln writes each filesystem straight into its volume's bytes: a volume
// lvm2 split in two would be written wrong, so it is refused.
TEST_F(VolumeGroupPlanTest, AVolumeLvm2SplitIsRefused) {
  lvs_answer_ = report("lv", R"({"lv_name":"root", "lv_uuid":"U", "lv_size":"209715200", "seg_count":"2",
                                 "seg_pe_ranges":"/dev/loop7:0-24 /dev/loop7:30-54"})");
  auto layout = lay_out({{"root", 200 * kMiB}});
  ASSERT_FALSE(layout);
  EXPECT_EQ(layout.error().message, "lvm2 split logical volume root into 2 pieces; kiln writes contiguous ones only");
}

TEST_F(VolumeGroupPlanTest, AReportKilnCannotReadIsAnErrorNotAGuess) {
  lvs_answer_ = report("lv", R"({"lv_name":"root", "lv_uuid":"U", "lv_size":"lots", "seg_count":"1",
                                 "seg_pe_ranges":"/dev/loop7:0-49"})");
  auto layout = lay_out({{"root", 200 * kMiB}});
  ASSERT_FALSE(layout);
  EXPECT_EQ(layout.error().message, "lvm2 reported lv_size = \"lots\", not a number");
  lvs_answer_ = "not json";
  auto garbled = lay_out({{"root", 200 * kMiB}});
  ASSERT_FALSE(garbled);
  EXPECT_THAT(garbled.error().message, HasSubstr("lvm lvs: unexpected report"));
}

}  // namespace
}  // namespace kiln
