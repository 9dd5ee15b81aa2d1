// What `kiln boot` decides before it makes anything, as data: the backend
// and the reason it gives, and the instance's spec from the request, the
// image and the defaults. The host is a FakeHost with plain answers, so no
// qemu, UML, KVM or root is needed.
#include "runtime/instance_plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/size.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

class FakeHost : public HostFacts {
 public:
  bool uml = true;
  bool qemu = true;
  KvmVerdict verdict{false, "no /dev/kvm"};
  uint64_t memory = 4 * kGiB;
  std::vector<std::string> bridges;
  bool root = true;
  std::string no_fence;  // why UML cannot be fenced here; "": it can
  mutable int kvm_probes = 0;

  Result<std::string> program(std::string_view name) const override {
    bool here = name == "linux.uml" ? uml : qemu;
    if (!here) return fail(ErrorKind::kMissingTool, "{} not found", name);
    return "/usr/bin/" + std::string(name);
  }
  KvmVerdict kvm(const std::string&) const override {
    ++kvm_probes;
    return verdict;
  }
  uint64_t memory_bytes() const override { return memory; }
  bool has_bridge(const std::string& name) const override {
    return std::find(bridges.begin(), bridges.end(), name) != bridges.end();
  }
  bool is_root() const override { return root; }
  Result<> uml_fence() const override {
    if (no_fence.empty()) return {};
    return fail(ErrorKind::kMissingTool, "{}", no_fence);
  }
};

class InstancePlanTest : public ::testing::Test {
 protected:
  InstancePlanTest() {
    for (const char* file : {"vmlinuz", "initrd.img", "root.img", "disk.raw"}) testing::write_text(dir_ / file, "x");
    image_.name = "web";
    image_.description = (dir_ / "image").string();
    image_.kernel = dir_ / "vmlinuz";
    image_.initrd = dir_ / "initrd.img";
    image_.disks = {{dir_ / "root.img", false, false}};
    image_.firmware_disk = dir_ / "disk.raw";
    image_.root_uuid = "0b3d6c1e-8f4f-4b8e-9a43-2a7e1c5d9f10";
  }
  Result<BackendChoice> backend() { return choose_backend(request_, image_, host_); }
  Result<InstanceSpec> plan(BackendKind kind = BackendKind::kQemu) {
    return plan_instance(request_, image_, BackendChoice{kind, false, ""}, host_);
  }

  testing::ScratchDir dir_;
  BootSource image_;
  BootRequest request_;
  FakeHost host_;
};

// --- The backend ------------------------------------------------------------

TEST_F(InstancePlanTest, KvmThatWorksMeansQemu) {
  host_.verdict = {true, "probe guest ran under KVM"};
  auto choice = backend();
  ASSERT_TRUE(choice) << choice.error().to_string();
  EXPECT_EQ(choice->kind, BackendKind::kQemu);
  EXPECT_TRUE(choice->kvm);
  EXPECT_EQ(choice->why, "qemu with KVM: probe guest ran under KVM");
}

TEST_F(InstancePlanTest, WithoutKvmUmlIsPreferredOverTcgAndTheReasonSaysWhy) {
  auto choice = backend();
  ASSERT_TRUE(choice);
  EXPECT_EQ(choice->kind, BackendKind::kUml);
  EXPECT_EQ(choice->why, "uml: KVM does not work here (no /dev/kvm), and UML is faster than qemu's TCG");
}

TEST_F(InstancePlanTest, WithoutKvmOrUmlItIsTcg) {
  host_.uml = false;
  auto choice = backend();
  ASSERT_TRUE(choice);
  EXPECT_EQ(choice->kind, BackendKind::kQemu);
  EXPECT_FALSE(choice->kvm);
  EXPECT_EQ(choice->why, "qemu with TCG: KVM does not work here (no /dev/kvm)");
}

TEST_F(InstancePlanTest, WithoutLandlockUmlIsNeverChosenAndAskingForItSaysWhy) {
  host_.no_fence = "the uml backend needs Landlock";
  auto choice = backend();
  ASSERT_TRUE(choice) << choice.error().to_string();
  EXPECT_EQ(choice->kind, BackendKind::kQemu);
  EXPECT_EQ(choice->why, "qemu with TCG: KVM does not work here (no /dev/kvm), and UML would be faster but cannot be "
                         "fenced from the host's files here (the uml backend needs Landlock)");
  request_.backend = "uml";
  auto refused = backend();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind, ErrorKind::kMissingTool);
  EXPECT_THAT(refused.error().message, HasSubstr("needs Landlock"));
}

TEST_F(InstancePlanTest, ARootOnlyTheInitramfsOpensGoesToTcgNotUml) {
  image_.root_needs_initramfs = "an encrypted root (luks2)";
  auto choice = backend();
  ASSERT_TRUE(choice);
  EXPECT_EQ(choice->kind, BackendKind::kQemu);
  EXPECT_THAT(choice->why, HasSubstr("an encrypted root (luks2) needs the image's initramfs"));
  request_.backend = "uml";
  auto refused = backend();
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message, HasSubstr("use --backend qemu"));
}

TEST_F(InstancePlanTest, AskingForUmlNeedsNoKvmProbe) {
  request_.backend = "uml";
  auto choice = backend();
  ASSERT_TRUE(choice);
  EXPECT_EQ(choice->why, "uml, as asked");
  EXPECT_EQ(host_.kvm_probes, 0) << "the probe boots a guest: only when the choice depends on it";
}

TEST_F(InstancePlanTest, AMissingProgramIsAMissingTool) {
  request_.backend = "uml";
  host_.uml = false;
  auto choice = backend();
  ASSERT_FALSE(choice);
  EXPECT_EQ(choice.error().kind, ErrorKind::kMissingTool);
}

TEST_F(InstancePlanTest, FirmwareBootNeedsQemu) {
  request_.firmware = true;
  request_.backend = "uml";
  EXPECT_THAT(backend().error().message, HasSubstr("--firmware needs the qemu backend"));
  request_.backend = "auto";
  EXPECT_EQ(backend()->kind, BackendKind::kQemu);
}

TEST_F(InstancePlanTest, AForwardedSshPortNeedsQemu) {
  request_.ssh_port = 2222;
  auto choice = backend();
  ASSERT_TRUE(choice);
  EXPECT_EQ(choice->kind, BackendKind::kQemu);
  EXPECT_THAT(choice->why, HasSubstr("--ssh-port needs qemu's user networking"));
  request_.backend = "uml";
  EXPECT_THAT(backend().error().message, HasSubstr("--ssh-port needs the qemu backend"));
}

TEST_F(InstancePlanTest, AnUnknownBackendIsNamed) {
  request_.backend = "xen";
  EXPECT_EQ(backend().error().message, "unknown backend \"xen\": expected auto, qemu or uml");
}

// --- The spec ---------------------------------------------------------------

TEST_F(InstancePlanTest, DefaultsComeFromTheImageThenFromKiln) {
  auto spec = plan();
  ASSERT_TRUE(spec) << spec.error().to_string();
  EXPECT_EQ(spec->name, "web");
  EXPECT_EQ(spec->memory_mib, 512u);
  EXPECT_EQ(spec->vcpus, 1);
  EXPECT_EQ(spec->network.kind, NetworkKind::kUser);
  EXPECT_EQ(spec->on_crash, LifecyclePolicy::kDestroy);
  EXPECT_EQ(spec->personality.hostname, "web");  // a canned image is named for its instance
  image_.memory_mib = 1024;
  image_.vcpus = 2;
  EXPECT_EQ(plan()->memory_mib, 1024u);
  request_.memory_mib = 256;
  request_.vcpus = 3;
  EXPECT_EQ(plan()->memory_mib, 256u);
  EXPECT_EQ(plan()->vcpus, 3);
}

TEST_F(InstancePlanTest, TheRootIsFoundByUuidOnlyWithAnInitramfs) {
  EXPECT_EQ(plan()->root, "UUID=" + image_.root_uuid);
  image_.initrd.clear();
  EXPECT_EQ(plan()->root, "/dev/vda");
  EXPECT_EQ(plan(BackendKind::kUml)->root, "/dev/ubda");
}

TEST_F(InstancePlanTest, MoreMemoryThanTheHostHasBlamesWhereItCameFrom) {
  host_.memory = kGiB;
  image_.memory_mib = 2048;
  EXPECT_EQ(plan().error().message, "2048 MiB of memory (from " + image_.description +
                                        ") is more than this host has (1.0 GiB)");
  request_.memory_mib = 4096;
  EXPECT_EQ(plan().error().message, "4096 MiB of memory (--memory) is more than this host has (1.0 GiB)");
}

TEST_F(InstancePlanTest, ATapNeedsTheBridgeAndRoot) {
  request_.network = "tap:br0";
  EXPECT_EQ(plan().error().message, "--net tap:br0: the host has no bridge named br0");
  host_.bridges = {"br0"};
  host_.root = false;
  EXPECT_EQ(plan().error().kind, ErrorKind::kMissingTool);
  host_.root = true;
  auto spec = plan();
  ASSERT_TRUE(spec) << spec.error().to_string();
  EXPECT_EQ(spec->network.kind, NetworkKind::kTap);
  EXPECT_EQ(spec->network.bridge, "br0");
}

TEST_F(InstancePlanTest, AConfigsBridgeIsTheDefaultNetwork) {
  image_.bridge = "xenbr0";
  EXPECT_EQ(plan().error().message, "--net tap:xenbr0: the host has no bridge named xenbr0");
  request_.network = "none";
  EXPECT_EQ(plan()->network.kind, NetworkKind::kNone);
}

// A Xen config's vif bridge that the host lacks: the error names the
// config's line, not a --net the user never gave, and says what works.
TEST_F(InstancePlanTest, AConfigsMissingBridgeNamesItsVifLineAndTheFallback) {
  image_.bridge = "xenbr0";
  image_.bridge_key = Location{"feisty.cfg", 9};
  EXPECT_EQ(plan().error().message,
            "feisty.cfg:9: vif bridge=xenbr0: the host has no bridge named xenbr0; boot it with --net user (user "
            "networking, no bridge) or --net none");
  request_.network = "user";
  EXPECT_EQ(plan()->network.kind, NetworkKind::kUser);
}

TEST_F(InstancePlanTest, XenRootIsTranslatedForTheBackend) {
  image_.disks = {{dir_ / "disk.raw", false, false}, {dir_ / "root.img", false, false}};
  image_.xen_devices = {"xvda", "xvdb"};
  image_.xen_root = "/dev/xvda2";
  EXPECT_EQ(plan()->root, "/dev/vda2");
  EXPECT_EQ(plan(BackendKind::kUml)->root, "/dev/ubda2");
  image_.xen_root = "/dev/xvdc";
  image_.xen_root_key = Location{"x.cfg", 3};
  EXPECT_EQ(plan().error().to_string(), "x.cfg:3: root=/dev/xvdc names no disk of the config (its disks are xvda, xvdb)");
}

TEST_F(InstancePlanTest, AnHvmDomainBootsThroughFirmwareOnQemuOnly) {
  image_.boots_through_firmware = true;
  image_.disks = {{dir_ / "disk.raw", false, false}, {dir_ / "root.img", false, true}};
  auto choice = backend();
  ASSERT_TRUE(choice);
  EXPECT_EQ(choice->kind, BackendKind::kQemu);
  EXPECT_THAT(choice->why, HasSubstr("an hvm domain boots through firmware"));
  auto spec = plan();
  ASSERT_TRUE(spec) << spec.error().to_string();
  EXPECT_TRUE(spec->firmware);
  EXPECT_TRUE(spec->kernel.empty());
  ASSERT_EQ(spec->disks.size(), 2u);
  EXPECT_TRUE(spec->disks[0].partitioned);
  EXPECT_TRUE(spec->disks[1].read_only);
  request_.backend = "uml";
  EXPECT_THAT(backend().error().message, HasSubstr("which needs the qemu backend: UML has no firmware"));
}

TEST_F(InstancePlanTest, WhatOnlyQemuCanAttachKeepsUmlOut) {
  image_.needs_qemu = "hdc (x.cfg:3) is a cdrom, and UML has no CD-ROM drive";
  EXPECT_EQ(backend()->kind, BackendKind::kQemu);
  EXPECT_THAT(backend()->why, HasSubstr("hdc (x.cfg:3) is a cdrom"));
  request_.backend = "uml";
  EXPECT_THAT(backend().error().message, HasSubstr("is a cdrom, and UML has no CD-ROM drive: use --backend qemu"));
}

TEST_F(InstancePlanTest, AnSshPortNeedsUserNetworking) {
  request_.ssh_port = 2222;
  EXPECT_EQ(plan()->network.ssh_port, 2222);
  request_.network = "none";
  EXPECT_THAT(plan().error().message, HasSubstr("--ssh-port forwards through user networking"));
}

TEST_F(InstancePlanTest, FirmwareBootsTheWholeDiskWithoutAKernel) {
  request_.firmware = true;
  auto spec = plan();
  ASSERT_TRUE(spec);
  ASSERT_EQ(spec->disks.size(), 1u);
  EXPECT_EQ(spec->disks[0].base, dir_ / "disk.raw");
  EXPECT_TRUE(spec->kernel.empty());
  image_.firmware_disk.clear();
  EXPECT_THAT(plan().error().message, HasSubstr("--firmware boots disk.raw, and this image has none"));
}

TEST_F(InstancePlanTest, MissingFilesOfTheImageAreNamed) {
  std::filesystem::remove(dir_ / "vmlinuz");
  EXPECT_THAT(plan().error().message, HasSubstr("kernel " + (dir_ / "vmlinuz").string() + " is missing"));
  EXPECT_TRUE(plan(BackendKind::kUml)) << "UML boots its own kernel";
  std::filesystem::remove(dir_ / "root.img");
  EXPECT_THAT(plan(BackendKind::kUml).error().message,
              HasSubstr("image " + (dir_ / "root.img").string() + " is missing"));
}

TEST_F(InstancePlanTest, EachInstanceGetsItsOwnIdentity) {
  auto a = plan();
  auto b = plan();
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->id, b->id);
  EXPECT_NE(a->personality.machine_id, b->personality.machine_id);
  EXPECT_NE(a->personality.mac, b->personality.mac);
  EXPECT_EQ(a->personality.ssh_host_keys.size(), 2u);
}

}  // namespace
}  // namespace kiln
