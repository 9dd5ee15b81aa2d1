// The qemu command line for each architecture: its own qemu-system, machine,
// CPU model, panic device, serial console and firmware. A tool test: it
// needs qemu-system-x86, qemu-system-arm (scripts/install-deps.sh).
#include "runtime/hypervisor_command.h"

#include <algorithm>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::Contains;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;

// The argument after `flag`, or "" when there is none.
std::string after(const std::vector<std::string>& argv, std::string_view flag) {
  auto at = std::find(argv.begin(), argv.end(), flag);
  return at == argv.end() || at + 1 == argv.end() ? "" : *(at + 1);
}

class HypervisorCommandTest : public ::testing::Test {
 protected:
  HypervisorCommandTest() {
    spec_.name = "web";
    spec_.id = "0123456789abcdef";
    spec_.kernel = "/images/vmlinuz";
    spec_.root = "/dev/vda";
    spec_.disks = {{"/images/root.img", false, false, false}};
    paths_.state_dir = dir_.path();
  }
  std::vector<std::string> command(const LaunchOptions& options = {}) {
    auto argv = qemu_command(spec_, paths_, options);
    EXPECT_TRUE(argv) << argv.error().to_string();
    return argv ? *argv : std::vector<std::string>{};
  }
  testing::ScratchDir dir_;
  InstanceSpec spec_;
  InstancePaths paths_;
};

TEST_F(HypervisorCommandTest, Amd64RunsOnQ35WithItsTcgCpu) {
  auto argv = command();
  ASSERT_FALSE(argv.empty());
  EXPECT_THAT(argv[0], EndsWith("/qemu-system-x86_64"));
  EXPECT_EQ(after(argv, "-machine"), "q35,accel=tcg");
  EXPECT_EQ(after(argv, "-cpu"), find_architecture("amd64")->tcg_cpu);
  EXPECT_THAT(argv, Contains("pvpanic"));
  EXPECT_THAT(after(argv, "-append"), HasSubstr("console=ttyS0"));
}

TEST_F(HypervisorCommandTest, Arm64RunsOnTheVirtMachineWithItsOwnQemuConsoleAndFirmware) {
  spec_.architecture = "arm64";
  auto argv = command();
  ASSERT_FALSE(argv.empty());
  EXPECT_THAT(argv[0], EndsWith("/qemu-system-aarch64"));
  EXPECT_EQ(after(argv, "-machine"), "virt,accel=tcg");
  EXPECT_EQ(after(argv, "-cpu"), "cortex-a72");
  EXPECT_THAT(argv, Contains("pvpanic-pci"));
  EXPECT_THAT(argv, Not(Contains("pvpanic")));
  EXPECT_THAT(after(argv, "-append"), HasSubstr("console=ttyAMA0"));
  spec_.firmware = true;
  argv = command();
  EXPECT_THAT(argv, Contains("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd"));
  EXPECT_EQ(after(argv, "-kernel"), "");
}

// A snapshot's machine keeps hotplug slots free; the instance resumed from
// it starts without its NICs (the supervisor plugs them in), and once
// rebooted or restored has them in the same slots on its command line.
TEST_F(HypervisorCommandTest, NicsInHotplugSlotsAreTheSameWhetherOnTheCommandLineOrPluggedInLater) {
  spec_.nic_slots = 2;
  spec_.network.nics = {NicSpec{.mac = "00:16:3e:00:00:01"}};
  auto argv = command();
  ASSERT_FALSE(argv.empty());
  EXPECT_THAT(argv, Contains("pcie-root-port,id=kiln-slot0,chassis=1"));
  EXPECT_THAT(argv, Contains("pcie-root-port,id=kiln-slot1,chassis=2"));
  std::vector<QemuNic> nics = qemu_nics(spec_.network, spec_.nic_slots);
  ASSERT_EQ(nics.size(), 1u);
  EXPECT_EQ(nics[0].device, "virtio-net-pci,netdev=net0,mac=00:16:3e:00:00:01,id=kiln-nic0,bus=kiln-slot0");
  EXPECT_EQ(after(argv, "-netdev"), nics[0].netdev);
  EXPECT_THAT(argv, Contains(nics[0].device));
  // The root port comes before the NIC that sits on it.
  EXPECT_LT(std::find(argv.begin(), argv.end(), "pcie-root-port,id=kiln-slot0,chassis=1"),
            std::find(argv.begin(), argv.end(), nics[0].device));

  argv = command({.incoming = true, .nics_later = true});
  EXPECT_EQ(after(argv, "-netdev"), "");
  EXPECT_THAT(argv, Not(Contains(nics[0].device)));
  EXPECT_THAT(argv, Contains("pcie-root-port,id=kiln-slot0,chassis=1"));

  spec_.nic_slots = 0;
  argv = command();
  EXPECT_THAT(argv, Contains("virtio-net-pci,netdev=net0,mac=00:16:3e:00:00:01"));
  EXPECT_THAT(argv, Not(Contains("pcie-root-port,id=kiln-slot0,chassis=1")));
}

}  // namespace
}  // namespace kiln
