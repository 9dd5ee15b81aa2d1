// What `kiln boot` decides before it makes anything, as data: the backend
// and the reason it gives, and the instance's spec from the request, the
// image and the defaults. The host is a FakeHost with plain answers, so no
// qemu, UML, KVM or root is needed.
#include "runtime/instance_plan.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <map>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/files.h"
#include "base/size.h"
#include "runtime/port_publication.h"
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
  std::vector<uint16_t> busy_ports;
  std::vector<KilnNetwork> networks;
  std::map<std::string, std::set<uint32_t>> taken;
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
  Result<> host_port_free(const PortPublication& port) const override {
    if (std::find(busy_ports.begin(), busy_ports.end(), port.host_port) == busy_ports.end()) return {};
    return fail(ErrorKind::kBadInput, "{}:{}/{} is already in use on this host", port.host_address, port.host_port,
                port.protocol);
  }
  std::optional<KilnNetwork> kiln_network(const std::string& name) const override {
    for (const KilnNetwork& network : networks)
      if (network.name == name) return network;
    return std::nullopt;
  }
  std::set<uint32_t> addresses_taken(const std::string& network) const override {
    auto found = taken.find(network);
    return found == taken.end() ? std::set<uint32_t>{} : found->second;
  }
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

TEST_F(InstancePlanTest, AnotherArchitectureBootsUnderItsQemuWithTcgAndNeverUml) {
  host_.verdict = {true, "probe guest ran under KVM"};
  image_.architecture = "arm64";
  auto choice = backend();
  ASSERT_TRUE(choice) << choice.error().to_string();
  EXPECT_EQ(choice->kind, BackendKind::kQemu);
  EXPECT_FALSE(choice->kvm);
  EXPECT_EQ(choice->why, "qemu-system-aarch64 with TCG: the image is for arm64, and KVM runs only this host's own architecture (amd64)");
  EXPECT_EQ(host_.kvm_probes, 0);
  request_.backend = "uml";
  EXPECT_THAT(backend().error().message, HasSubstr("User-Mode Linux runs amd64 images only: use --backend qemu"));
  auto spec = plan();
  ASSERT_TRUE(spec) << spec.error().to_string();
  EXPECT_EQ(spec->architecture, "arm64");
}

TEST_F(InstancePlanTest, AnArchitectureWithoutFirmwareRefusesFirmwareBoot) {
  image_.architecture = "i386";
  request_.firmware = true;
  EXPECT_THAT(backend().error().message, HasSubstr("no UEFI firmware for i386 guests"));
  image_.architecture = "sparc64";
  request_.firmware = false;
  EXPECT_THAT(backend().error().message, HasSubstr("an image for sparc64, which this kiln does not boot"));
}

TEST_F(InstancePlanTest, AMissingForeignQemuNamesItsPackage) {
  host_.qemu = false;
  image_.architecture = "armhf";
  auto choice = backend();
  ASSERT_FALSE(choice);
  EXPECT_EQ(choice.error().kind, ErrorKind::kMissingTool);
  EXPECT_THAT(choice.error().message, HasSubstr("qemu-system-arm"));
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
  EXPECT_THAT(backend().error().message, HasSubstr("--ssh-port needs qemu's user networking"));
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
  ASSERT_EQ(spec->network.nics.size(), 1u);
  EXPECT_EQ(spec->network.nics[0].kind, NetworkKind::kUser);
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
  request_.networks = {"tap:br0"};
  EXPECT_EQ(plan().error().message, "--net tap:br0: the host has no bridge named br0");
  host_.bridges = {"br0"};
  host_.root = false;
  EXPECT_EQ(plan().error().kind, ErrorKind::kMissingTool);
  host_.root = true;
  auto spec = plan();
  ASSERT_TRUE(spec) << spec.error().to_string();
  ASSERT_EQ(spec->network.nics.size(), 1u);
  EXPECT_EQ(spec->network.nics[0].kind, NetworkKind::kTap);
  EXPECT_EQ(spec->network.nics[0].bridge, "br0");
  EXPECT_EQ(spec->network.nics[0].tap, "kiln-" + spec->id.substr(0, 8) + "-0");
}

TEST_F(InstancePlanTest, SeveralNicsComeInOrderEachWithAMacStableForTheInstanceName) {
  host_.bridges = {"br0"};
  request_.networks = {"user", "tap:br0", "user"};
  auto spec = plan();
  ASSERT_TRUE(spec) << spec.error().to_string();
  ASSERT_EQ(spec->network.nics.size(), 3u);
  EXPECT_EQ(spec->network.nics[0].kind, NetworkKind::kUser);
  EXPECT_EQ(spec->network.nics[1].tap, "kiln-" + spec->id.substr(0, 8) + "-1");
  std::set<std::string> macs;
  for (const NicSpec& nic : spec->network.nics) {
    EXPECT_TRUE(nic.mac.starts_with("00:16:3e:")) << nic.mac;
    macs.insert(nic.mac);
  }
  EXPECT_EQ(macs.size(), 3u);
  EXPECT_EQ(plan()->network.nics[2].mac, spec->network.nics[2].mac);
  request_.name = "db";
  EXPECT_NE(plan()->network.nics[0].mac, spec->network.nics[0].mac);
}

TEST_F(InstancePlanTest, NoneGoesAloneAndNineNicsAreTooMany) {
  request_.networks = {"none"};
  EXPECT_TRUE(plan()->network.nics.empty());
  request_.networks = {"user", "none"};
  EXPECT_THAT(plan().error().message, HasSubstr("--net none: a guest without a network has no other --net"));
  request_.networks = std::vector<std::string>(9, "user");
  EXPECT_EQ(plan().error().message, "9 NICs asked for (--net); kiln gives a guest at most 8");
  request_.networks = {"lan/0"};
  EXPECT_EQ(plan().error().message, "--net lan/0: expected user, a network's name, tap:BRIDGE or none");
  request_.networks = {"lan0"};
  EXPECT_EQ(plan().error().message,
            "--net lan0: no network named lan0: `kiln network create lan0` makes one (or: user, tap:BRIDGE, none)");
}

// A Xen config's vif bridge that the host lacks: the error names the
// config's line, not a --net the user never gave, and says what works.
TEST_F(InstancePlanTest, AConfigsMissingBridgeNamesItsVifLineAndTheFallback) {
  image_.nics = {{.bridge = "xenbr0", .where = Location{"feisty.cfg", 9}}};
  EXPECT_EQ(plan().error().message,
            "feisty.cfg:9: vif bridge=xenbr0: no kiln network and no host bridge named xenbr0: `kiln network create "
            "xenbr0` makes one; or boot it with --net user (user networking, no bridge) or --net none");
  request_.networks = {"user"};
  EXPECT_EQ(plan()->network.nics[0].kind, NetworkKind::kUser);
  request_.networks = {"none"};
  EXPECT_TRUE(plan()->network.nics.empty());
}

TEST_F(InstancePlanTest, AVifsMacIpAndVifnameAreHonoured) {
  host_.bridges = {"xenbr0"};
  image_.nics = {{.mac = "00:16:3e:00:00:10", .bridge = "xenbr0", .ip = "192.168.1.20", .vifname = "web0",
                  .where = Location{"web.cfg", 4}},
                 {.where = Location{"web.cfg", 4}}};
  auto spec = plan();
  ASSERT_TRUE(spec) << spec.error().to_string();
  ASSERT_EQ(spec->network.nics.size(), 2u);
  EXPECT_EQ(spec->network.nics[0].mac, "00:16:3e:00:00:10");
  EXPECT_EQ(spec->network.nics[0].address, "192.168.1.20/24");
  EXPECT_EQ(spec->network.nics[0].tap, "web0");
  EXPECT_EQ(spec->network.nics[1].kind, NetworkKind::kUser);
  EXPECT_THAT(backend()->why, HasSubstr("user networking on a NIC after the first needs qemu's"));
  image_.nics[0].ip = "192.168.1.300";
  EXPECT_EQ(plan().error().message,
            "web.cfg:4: vif bridge=xenbr0: ip=192.168.1.300 is not an IPv4 address with an optional /PREFIX");
  image_.nics[0].ip = "";
  image_.nics[0].mac = "01:16:3e:00:00:10";
  EXPECT_THAT(plan().error().message, HasSubstr("mac=01:16:3e:00:00:10 is a multicast address"));
  image_.nics[0].mac = "";
  image_.nics[0].vifname = "a-name-far-too-long";
  EXPECT_THAT(plan().error().message, HasSubstr("vifname=a-name-far-too-long is not an interface name"));
}

TEST_F(InstancePlanTest, ANicOnAKilnNetworkGetsTheLowestFreeAddressItsGatewayAndItsDns) {
  host_.networks = {{"lan0", NetworkMode::kNat, *Ipv4Subnet::parse("10.77.0.0/24")},
                    {"quiet", NetworkMode::kIsolated, *Ipv4Subnet::parse("10.78.0.0/24")}};
  host_.taken["lan0"] = {*parse_ipv4("10.77.0.2")};
  request_.networks = {"lan0", "quiet", "lan0"};
  auto spec = plan();
  ASSERT_TRUE(spec) << spec.error().to_string();
  const auto& nics = spec->network.nics;
  ASSERT_EQ(nics.size(), 3u);
  EXPECT_EQ(nics[0].network, "lan0");
  EXPECT_EQ(nics[0].bridge, "lan0");
  EXPECT_EQ(nics[0].address, "10.77.0.3/24");  // .2 is another instance's
  EXPECT_EQ(nics[0].gateway, "10.77.0.1");
  EXPECT_EQ(nics[0].dns, "10.77.0.1");
  EXPECT_EQ(nics[1].address, "10.78.0.2/24");
  EXPECT_EQ(nics[1].gateway, "");  // isolated: no way out
  EXPECT_EQ(nics[1].dns, "10.78.0.1");
  EXPECT_EQ(nics[2].address, "10.77.0.4/24");  // not its own eth0's
  host_.root = false;
  EXPECT_EQ(plan().error().kind, ErrorKind::kMissingTool);
}

// Without root, on either backend: its address comes from kiln, and there
// is no gateway or DNS server on a network of sockets.
TEST_F(InstancePlanTest, ANicOnASocketNetworkNeedsNoRootAndHasAnAddressButNoGateway) {
  host_.root = false;
  host_.networks = {{"lan0", NetworkMode::kSocket, *Ipv4Subnet::parse("10.77.0.0/24"), "", *parse_ipv4("239.255.1.2"),
                     20001}};
  host_.taken["lan0"] = {*parse_ipv4("10.77.0.2")};
  request_.networks = {"user", "lan0"};
  for (BackendKind backend : {BackendKind::kQemu, BackendKind::kUml}) {
    auto spec = plan(backend);
    ASSERT_TRUE(spec) << spec.error().to_string();
    const NicSpec& nic = spec->network.nics[1];
    EXPECT_EQ(nic.kind, NetworkKind::kSocket);
    EXPECT_EQ(nic.network, "lan0");
    EXPECT_EQ(nic.socket, "239.255.1.2:20001");
    EXPECT_EQ(nic.address, "10.77.0.3/24");
    EXPECT_EQ(nic.gateway, "");
    EXPECT_EQ(nic.dns, "");
    EXPECT_EQ(nic.tap, "");
  }
  // Its ports are published through a first NIC on user networking; a
  // socket network has no host side to publish them on.
  request_.publish = {"8080:80"};
  EXPECT_TRUE(plan());
  request_.networks = {"lan0", "user"};
  EXPECT_THAT(plan().error().message, HasSubstr("--publish 8080:80: ports are published through the first NIC, and "
                                                "this one is on socket network lan0"));
}

TEST_F(InstancePlanTest, AVifsBridgeIsAKilnNetworkFirstAndItsIpTheAddress) {
  host_.networks = {{"xenbr0", NetworkMode::kNat, *Ipv4Subnet::parse("10.77.0.0/24")}};
  host_.taken["xenbr0"] = {*parse_ipv4("10.77.0.7")};
  host_.bridges = {"xenbr0"};  // a host bridge of that name loses to the network
  image_.nics = {{.bridge = "xenbr0", .ip = "10.77.0.9", .where = Location{"web.cfg", 4}}};
  auto spec = plan();
  ASSERT_TRUE(spec) << spec.error().to_string();
  EXPECT_EQ(spec->network.nics[0].network, "xenbr0");
  EXPECT_EQ(spec->network.nics[0].address, "10.77.0.9/24");
  image_.nics[0].ip = "10.77.0.7";
  EXPECT_EQ(plan().error().message, "web.cfg:4: vif bridge=xenbr0: 10.77.0.7 is taken on network xenbr0 by another instance");
  image_.nics[0].ip = "10.77.0.1";
  EXPECT_EQ(plan().error().message, "web.cfg:4: vif bridge=xenbr0: 10.77.0.1 is network xenbr0's gateway");
  image_.nics[0].ip = "192.168.0.9";
  EXPECT_THAT(plan().error().message, HasSubstr("192.168.0.9 is not an instance's address on network xenbr0 (10.77.0.0/24)"));
  image_.nics[0].ip = "10.77.0.9/16";
  EXPECT_THAT(plan().error().message, HasSubstr("ip=10.77.0.9/16 is not on network xenbr0 (10.77.0.0/24)"));
  host_.networks.clear();
  image_.nics[0].ip = "10.77.0.9";
  EXPECT_EQ(plan()->network.nics[0].network, "");  // the host's bridge xenbr0, then
}

TEST_F(InstancePlanTest, PortsArePublishedThroughAKilnNetworkUnderEitherBackend) {
  host_.networks = {{"lan0", NetworkMode::kNat, *Ipv4Subnet::parse("10.77.0.0/24")}};
  request_.networks = {"lan0"};
  request_.publish = {"8080:80"};
  EXPECT_EQ(backend()->kind, BackendKind::kUml);  // nft forwards them, not slirp
  auto spec = plan(BackendKind::kUml);
  ASSERT_TRUE(spec) << spec.error().to_string();
  EXPECT_EQ(spec->network.published.size(), 1u);
}

TEST_F(InstancePlanTest, PublishedPortsAreCheckedBeforeAnythingStarts) {
  request_.publish = {"8080:80", "127.0.0.1:5353:53/udp"};
  auto spec = plan();
  ASSERT_TRUE(spec) << spec.error().to_string();
  ASSERT_EQ(spec->network.published.size(), 2u);
  EXPECT_EQ(publication_text(spec->network.published[0]), "127.0.0.1:8080:80/tcp");
  EXPECT_EQ(publication_text(spec->network.published[1]), "127.0.0.1:5353:53/udp");
  host_.busy_ports = {8080};
  EXPECT_EQ(plan().error().message, "127.0.0.1:8080/tcp is already in use on this host");
  host_.busy_ports.clear();
  request_.publish = {"8080:80", "0.0.0.0:8080:81"};
  EXPECT_EQ(plan().error().message, "--publish 0.0.0.0:8080:81: host port 8080/tcp is published twice");
  request_.publish = {"8080:80"};
  request_.networks = {"none"};
  EXPECT_THAT(plan().error().message, HasSubstr("the guest has no network to publish a port of"));
  host_.bridges = {"br0"};
  request_.networks = {"tap:br0", "user"};
  EXPECT_THAT(plan().error().message, HasSubstr("ports are published through the first NIC"));
}

TEST_F(InstancePlanTest, APublishOnUserNetworkingKeepsUmlOut) {
  EXPECT_EQ(backend()->kind, BackendKind::kUml);
  request_.publish = {"8080:80"};
  EXPECT_EQ(backend()->kind, BackendKind::kQemu);
  EXPECT_THAT(backend()->why, HasSubstr("--publish on user networking needs qemu's"));
  request_.backend = "uml";
  EXPECT_THAT(backend().error().message, HasSubstr("use --backend qemu"));
}

TEST(PortPublication, ReadsEveryFormAndNamesWhatIsWrong) {
  auto full = parse_publication("10.0.0.1:8443:443/tcp");
  ASSERT_TRUE(full) << full.error().to_string();
  EXPECT_EQ(full->host_address, "10.0.0.1");
  EXPECT_EQ(full->host_port, 8443);
  EXPECT_EQ(full->guest_port, 443);
  EXPECT_EQ(parse_publication("53:53/udp")->protocol, "udp");
  EXPECT_EQ(parse_publication("8080:80")->host_address, "127.0.0.1");
  EXPECT_THAT(parse_publication("80").error().message, HasSubstr("--publish 80: no guest port"));
  EXPECT_THAT(parse_publication("8080:80/sctp").error().message, HasSubstr("the protocol must be tcp or udp"));
  EXPECT_THAT(parse_publication("8080:0").error().message, HasSubstr("'0' is not a port (1-65535)"));
  EXPECT_THAT(parse_publication("70000:80").error().message, HasSubstr("'70000' is not a port"));
  EXPECT_THAT(parse_publication("localhost:8080:80").error().message, HasSubstr("'localhost' is not an IPv4 address"));
}

TEST(PortPublication, APortAnotherProgramHoldsIsInUse) {
  UniqueFd held(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(held.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  socklen_t size = sizeof address;
  ::getsockname(held.get(), reinterpret_cast<sockaddr*>(&address), &size);
  std::string port = std::to_string(ntohs(address.sin_port));
  auto result = check_host_port_free(*parse_publication(port + ":80"));
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message, "--publish 127.0.0.1:" + port + ":80/tcp: 127.0.0.1:" + port + "/tcp is already in use on this host");
  EXPECT_TRUE(check_host_port_free(*parse_publication(port + ":80/udp")));
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
  request_.networks = {"none"};
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
  EXPECT_EQ(a->personality.ssh_host_keys.size(), 2u);
}

}  // namespace
}  // namespace kiln
