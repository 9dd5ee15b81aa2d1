// What `kiln boot` makes of its argument: a baked image directory, or a Xen
// domain config in the Xen era's own words.
#include "runtime/boot_source.h"

#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "formats/image/image_manifest.h"
#include "runtime/hypervisor_command.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ScratchDir;
using testing::write_text;

// A manifest as the bake writes it, of an image named `name`.
ImageManifest manifest_named(const std::string& name) {
  ImageManifest manifest;
  manifest.name = name;
  manifest.version = "1.0";
  manifest.layout = "gpt";
  return manifest;
}

void write_manifest(const ScratchDir& dir, const ImageManifest& manifest) {
  write_text(dir / "manifest.json", write_image_manifest(manifest));
}

TEST(BootSource, ImageDirectoryGivesKernelRootAndUuid) {
  ScratchDir dir;
  for (const char* file : {"vmlinuz", "initrd.img", "root.img", "disk.raw"}) write_text(dir / file, "x");
  ImageManifest manifest = manifest_named("web");
  manifest.root_filesystem_uuid = "1234";
  manifest.kernel_cmdline = "root=UUID=1234 ro console=tty0 console=ttyS0 quiet";
  manifest.memory_mib = 1024;
  manifest.vcpus = 2;
  write_manifest(dir, manifest);
  auto source = read_boot_source(dir.path());
  ASSERT_TRUE(source) << source.error().to_string();
  EXPECT_EQ(source->name, "web");
  EXPECT_EQ(source->kernel, dir / "vmlinuz");
  ASSERT_EQ(source->disks.size(), 1u);
  EXPECT_EQ(source->disks[0].base, dir / "root.img");
  EXPECT_EQ(source->root_uuid, "1234");
  EXPECT_EQ(source->firmware_disk, dir / "disk.raw");
  EXPECT_EQ(source->kernel_args, "quiet");  // root, ro and consoles are kiln's to set per boot
  EXPECT_EQ(source->memory_mib, 1024u);       // the recipe's [output], unless kiln boot is told otherwise
  EXPECT_EQ(source->vcpus, 2);
}

// A recipe without the "partitions" output leaves no root.img: the root
// partition of disk.raw is booted in its place.
TEST(BootSource, WithoutRootImgTheDisksRootPartitionIsBooted) {
  ScratchDir dir;
  for (const char* file : {"vmlinuz", "initrd.img", "disk.raw"}) write_text(dir / file, "x");
  ImageManifest manifest = manifest_named("web");
  manifest.partitions = {{1, "esp", "", "", 1 << 20, 64 << 20}, {2, "root", "", "", 65 << 20, 1 << 30}};
  write_manifest(dir, manifest);
  auto source = read_boot_source(dir.path());
  ASSERT_TRUE(source) << source.error().to_string();
  ASSERT_EQ(source->disks.size(), 1u);
  EXPECT_EQ(source->disks[0].base, dir / "disk.raw");
  EXPECT_EQ(source->root_partition, 2);
  EXPECT_EQ(guest_device(BackendKind::kUml, 0, source->root_partition), "/dev/ubda2");
  // A disk without a partition named root is no root to boot.
  manifest.partitions.pop_back();
  write_manifest(dir, manifest);
  EXPECT_TRUE(read_boot_source(dir.path())->disks.empty());
}

TEST(BootSource, AnEncryptedRootIsNamedByItsEncryption) {
  ScratchDir dir;
  write_text(dir / "root.img", "x");
  ImageManifest vault = manifest_named("vault");
  vault.encryption = ManifestEncryption{.type = "luks2"};
  write_manifest(dir, vault);
  auto source = read_boot_source(dir.path());
  ASSERT_TRUE(source) << source.error().to_string();
  EXPECT_EQ(source->root_encryption, "luks2");
  EXPECT_EQ(source->root_needs_initramfs, "an encrypted root (luks2)");
  write_manifest(dir, manifest_named("plain"));
  EXPECT_EQ(read_boot_source(dir.path())->root_encryption, "");
  EXPECT_EQ(read_boot_source(dir.path())->root_needs_initramfs, "");
  EXPECT_FALSE(read_boot_source(dir.path())->vcpus) << "an image baked before kiln recorded them";
}

TEST(BootSource, ARootOnLvmBootsFromTheWholeDiskWithTheBakesRootDevice) {
  ScratchDir dir;
  for (const char* file : {"vmlinuz", "initrd.img", "root.img", "disk.raw"}) write_text(dir / file, "x");
  ImageManifest lvm = manifest_named("lvm");
  lvm.layout = "lvm";
  lvm.root_device = "/dev/mapper/vg0-root";
  lvm.root_filesystem_uuid = "1234";
  lvm.lvm = ManifestLvm{.vg = "vg0"};
  write_manifest(dir, lvm);
  auto source = read_boot_source(dir.path());
  ASSERT_TRUE(source) << source.error().to_string();
  ASSERT_EQ(source->disks.size(), 1u);
  EXPECT_EQ(source->disks[0].base, dir / "disk.raw");  // root.img is the root volume alone
  EXPECT_EQ(source->root_device, "/dev/mapper/vg0-root");
  EXPECT_EQ(source->root_needs_initramfs, "a root on LVM");
}

TEST(BootSource, DirectoryWithoutManifestSaysWhatItWants) {
  ScratchDir dir;
  auto source = read_boot_source(dir.path());
  ASSERT_FALSE(source);
  EXPECT_THAT(source.error().message, HasSubstr("not a baked image (no manifest.json)"));
}

TEST(BootSource, XenEraConfigMapsToTheSameVm) {
  ScratchDir dir;
  write_text(dir / "vmlinuz-2.6.18-xen", "k");
  write_text(dir / "initrd.img-2.6.18-xen", "i");
  write_text(dir / "feisty.img", "root");
  write_text(dir / "feisty-swap.img", "swap");
  write_text(dir / "feisty.cfg", R"(# the book's example
kernel  = "vmlinuz-2.6.18-xen"
ramdisk = "initrd.img-2.6.18-xen"
memory  = 128
name    = "feisty"
vcpus   = 2
builder = 'linux'
disk    = ['tap:aio:)" + (dir / "feisty.img").string() + R"(,sda1,w','tap:aio:)" +
                                      (dir / "feisty-swap.img").string() + R"(,sda3,w']
vif     = [ 'mac=00:16:3e:00:00:10, bridge=xenbr0' ]
root    = "/dev/sda1 ro"
extra   = "console=hvc0 xencons=tty"
on_reboot = 'restart'
on_crash  = 'preserve'
)");
  std::vector<std::string> warnings;
  BootSourceOptions options;
  options.warn = [&warnings](const std::string& warning) { warnings.push_back(warning); };
  auto source = read_boot_source(dir / "feisty.cfg", options);
  ASSERT_TRUE(source) << source.error().to_string();
  EXPECT_EQ(source->name, "feisty");
  EXPECT_EQ(source->kernel, dir / "vmlinuz-2.6.18-xen");
  EXPECT_EQ(source->initrd, dir / "initrd.img-2.6.18-xen");
  EXPECT_EQ(*source->memory_mib, 128u);
  EXPECT_EQ(*source->vcpus, 2);
  ASSERT_EQ(source->disks.size(), 2u);
  EXPECT_EQ(source->disks[0].base, dir / "feisty.img");  // the one root= names comes first
  EXPECT_EQ(source->root_partition, 0);                   // sda1 is a bare filesystem
  ASSERT_EQ(source->nics.size(), 1u);
  EXPECT_EQ(source->nics[0].mac, "00:16:3e:00:00:10");
  EXPECT_EQ(source->nics[0].bridge, "xenbr0");
  EXPECT_EQ(*source->on_crash, LifecyclePolicy::kPreserve);
  // Nothing the user wrote is dropped: root= goes first for translation,
  // and Xen's console is kiln's serial console.
  EXPECT_EQ(source->kernel_args, "ro console=ttyS0 xencons=tty");
  EXPECT_EQ(source->xen_root, "/dev/sda1");
  EXPECT_EQ(source->xen_devices, (std::vector<std::string>{"sda1", "sda3"}));
  EXPECT_TRUE(warnings.empty()) << warnings[0];
  EXPECT_EQ(*translate_xen_root(source->xen_root, source->xen_devices, BackendKind::kQemu, {}), "/dev/vda");
  EXPECT_EQ(*translate_xen_root(source->xen_root, source->xen_devices, BackendKind::kUml, {}), "/dev/ubda");
}

TEST(BootSource, EveryVifIsANicInOrderAndKeysNotActedOnWarnOnceEach) {
  ScratchDir dir;
  write_text(dir / "vmlinuz", "k");
  write_text(dir / "root.img", "root");
  write_text(dir / "two.cfg", R"(kernel = "vmlinuz"
disk = ['file:root.img,xvda1,w']
root = "/dev/xvda1"
vif = [ 'mac=00:16:3e:00:00:10, bridge=lan0, ip=10.77.0.9, vifname=web0, script=vif-bridge',
        'script=vif-nat, ip=10.0.0.5' ]
)");
  std::vector<std::string> warnings;
  BootSourceOptions options;
  options.warn = [&warnings](const std::string& warning) { warnings.push_back(warning); };
  auto source = read_boot_source(dir / "two.cfg", options);
  ASSERT_TRUE(source) << source.error().to_string();
  ASSERT_EQ(source->nics.size(), 2u);
  EXPECT_EQ(source->nics[0].mac, "00:16:3e:00:00:10");
  EXPECT_EQ(source->nics[0].bridge, "lan0");
  EXPECT_EQ(source->nics[0].ip, "10.77.0.9");
  EXPECT_EQ(source->nics[0].vifname, "web0");
  EXPECT_EQ(source->nics[0].where.line, 4);
  EXPECT_EQ(source->nics[1].bridge, "");  // user networking
  EXPECT_EQ(source->nics[1].ip, "");      // which hands out its own address, and says so
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_THAT(warnings[0], HasSubstr("two.cfg:4:9: vif script= is not acted on"));
  EXPECT_THAT(warnings[1], HasSubstr("vif ip=10.0.0.5 is not acted on"));
}

TEST(BootSource, XenRootIsTranslatedForEveryForm) {
  std::vector<std::string> whole = {"xvda", "xvdb"};
  EXPECT_EQ(*translate_xen_root("/dev/xvda2", whole, BackendKind::kQemu, {}), "/dev/vda2");
  EXPECT_EQ(*translate_xen_root("/dev/xvda2", whole, BackendKind::kUml, {}), "/dev/ubda2");
  EXPECT_EQ(*translate_xen_root("/dev/xvdb", whole, BackendKind::kQemu, {}), "/dev/vdb");
  EXPECT_EQ(*translate_xen_root("UUID=1234", whole, BackendKind::kQemu, {}), "UUID=1234");
  EXPECT_EQ(*translate_xen_root("/dev/sda1", {"sda3", "sda1"}, BackendKind::kQemu, {}), "/dev/vdb");
  auto missing = translate_xen_root("/dev/xvdc1", whole, BackendKind::kQemu, {"x.cfg", 4});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().to_string(), "x.cfg:4: root=/dev/xvdc1 names no disk of the config (its disks are xvda, xvdb)");
}

TEST(BootSource, RootInExtraOrCmdlineWinsAndNamesItsLine) {
  ScratchDir dir;
  write_text(dir / "vmlinuz", "k");
  write_text(dir / "disk.raw", "d");
  std::string disk = "disk = [ '" + (dir / "disk.raw").string() + ",raw,xvda,rw' ]\n";
  write_text(dir / "a.cfg", "kernel = 'vmlinuz'\n" + disk + "root = '/dev/xvda1 ro'\nextra = 'root=/dev/xvda2 rw quiet'\n");
  auto a = read_boot_source(dir / "a.cfg");
  ASSERT_TRUE(a) << a.error().to_string();
  EXPECT_EQ(a->xen_root, "/dev/xvda2");
  EXPECT_EQ(a->xen_root_key.to_string(), (dir / "a.cfg").string() + ":4:1");
  EXPECT_EQ(a->kernel_args, "ro rw quiet") << "rw comes last, as written, so it wins";
  write_text(dir / "b.cfg", "kernel = 'vmlinuz'\n" + disk + "cmdline = 'root=/dev/xvda1 console=hvc0'\n");
  auto b = read_boot_source(dir / "b.cfg");
  ASSERT_TRUE(b) << b.error().to_string();
  EXPECT_EQ(b->xen_root, "/dev/xvda1");
  EXPECT_EQ(b->kernel_args, "console=ttyS0");
}

TEST(BootSource, HvmBootsTheFirstDiskThroughFirmwareAndCdromsNeedQemu) {
  ScratchDir dir;
  write_text(dir / "disk.raw", "d");
  write_text(dir / "install.iso", "i");
  write_text(dir / "hvm.cfg", "type = 'hvm'\nboot = 'dc'\ndisk = [ '" + (dir / "disk.raw").string() +
                                  ",raw,xvda,rw', '" + (dir / "install.iso").string() + ",,hdc,cdrom', ',,hdd:cdrom,r' ]\n");
  std::vector<std::string> warnings;
  BootSourceOptions options;
  options.warn = [&warnings](const std::string& warning) { warnings.push_back(warning); };
  auto source = read_boot_source(dir / "hvm.cfg", options);
  ASSERT_TRUE(source) << source.error().to_string();
  EXPECT_TRUE(source->boots_through_firmware);
  EXPECT_EQ(source->firmware_disk, dir / "disk.raw");
  ASSERT_EQ(source->disks.size(), 2u) << "the empty drive is left out";
  EXPECT_TRUE(source->disks[1].read_only);
  EXPECT_THAT(source->needs_qemu, HasSubstr("hdc"));
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_THAT(warnings[0], HasSubstr("boot = \"dc\": kiln boots the first disk (xvda)"));
  EXPECT_THAT(warnings[1], HasSubstr("hdd is an empty cdrom drive; left out"));
}

TEST(BootSource, NothingToBootNamesTheWays) {
  ScratchDir dir;
  write_text(dir / "disk.raw", "d");
  write_text(dir / "x.cfg", "name = 'x'\nsdl = 1\ndisk = [ '" + (dir / "disk.raw").string() + ",raw,xvda,rw' ]\n");
  std::vector<std::string> warnings;
  BootSourceOptions options;
  options.warn = [&warnings](const std::string& warning) { warnings.push_back(warning); };
  auto source = read_boot_source(dir / "x.cfg", options);
  ASSERT_FALSE(source);
  EXPECT_THAT(source.error().message, HasSubstr("nothing to boot: give kernel"));
  ASSERT_EQ(warnings.size(), 1u) << "the warning is given although the boot fails";
  EXPECT_THAT(warnings[0], HasSubstr("x.cfg:2:1: 'sdl' is not acted on"));
}

TEST(BootSource, XenConfigErrorsNameTheLine) {
  ScratchDir dir;
  write_text(dir / "bad.cfg", "name = \"x\"\nkernel = \"/nonexistent/vmlinuz\"\ndisk = ['file:/x,xvda1,w']\n");
  auto source = read_boot_source(dir / "bad.cfg");
  ASSERT_FALSE(source);
  EXPECT_EQ(source.error().to_string(), (dir / "bad.cfg").string() + ":2:1: kernel /nonexistent/vmlinuz: no such file");
  EXPECT_FALSE(read_boot_source(dir / "missing"));
}

TEST(GuestCommandLine, CarriesRootConsoleIdentityTheSeedDeviceAndTheExecChannel) {
  InstanceSpec spec;
  spec.id = "abc";
  spec.root = "UUID=1234";
  spec.kernel_args = "quiet";
  spec.personality.hostname = "web1";
  spec.personality.machine_id = "0123";
  spec.disks.resize(1);
  spec.network.nics = {NicSpec{}};  // user networking: SLIP through slirp under UML
  EXPECT_EQ(guest_command_line(spec),
            "root=UUID=1234 ro quiet console=ttyS0 kiln.instance=abc kiln.seed=/dev/vdb "
            "kiln.agent=virtio:org.kiln.exec.0 net.ifnames=0 systemd.machine_id=0123 systemd.hostname=web1");
  spec.backend = BackendKind::kUml;
  spec.disks.resize(2);
  EXPECT_THAT(guest_command_line(spec),
              HasSubstr("console=ttyS0 kiln.instance=abc kiln.seed=/dev/ubdc kiln.agent=/dev/ttyS1 kiln.net=slirp "
                        "kiln.cad=poweroff pty.legacy_count=0"));
}

TEST(GuestCommandLine, AMachineWithoutNicsIsToldSoThatItsNetworkDaemonsStayDown) {
  InstanceSpec spec;
  spec.id = "abc";
  spec.root = "/dev/vda";
  spec.disks.resize(1);
  for (BackendKind backend : {BackendKind::kQemu, BackendKind::kUml}) {
    spec.backend = backend;
    spec.network.nics.clear();
    EXPECT_THAT(guest_command_line(spec), HasSubstr(" kiln.net=none"));
    spec.network.nics = {NicSpec{}};
    EXPECT_THAT(guest_command_line(spec), Not(HasSubstr("kiln.net=none")));
  }
}

TEST(GuestCommandLine, TheConsoleIsTheFirstSerialLineOfTheGuestsMachine) {
  InstanceSpec spec;
  spec.id = "abc";
  spec.root = "/dev/vda";
  spec.disks.resize(1);
  spec.architecture = "arm64";
  EXPECT_THAT(guest_command_line(spec), HasSubstr(" console=ttyAMA0 "));
  spec.architecture = "i386";
  EXPECT_THAT(guest_command_line(spec), HasSubstr(" console=ttyS0 "));
}

TEST(HypervisorNics, EachNicInOrderWithItsMacAndPortsThroughTheFirst) {
  NetworkSpec net;
  net.nics = {NicSpec{.mac = "00:16:3e:00:00:01"},
              NicSpec{.kind = NetworkKind::kTap, .bridge = "br0", .tap = "web0", .mac = "00:16:3e:00:00:02"}};
  net.published = {{"127.0.0.1", 8080, 80, "tcp"}, {"0.0.0.0", 5353, 53, "udp"}};
  net.ssh_port = 2222;
  EXPECT_EQ(qemu_nic_arguments(net),
            (std::vector<std::string>{
                "-netdev",
                "user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:0.0.0.0:5353-:53,hostfwd=tcp:127.0.0.1:2222-:22",
                "-device", "virtio-net-pci,netdev=net0,mac=00:16:3e:00:00:01",
                "-netdev", "tap,id=net1,ifname=web0,script=no,downscript=no",
                "-device", "virtio-net-pci,netdev=net1,mac=00:16:3e:00:00:02"}));
  EXPECT_EQ(uml_nic_arguments(net, "/usr/bin/slirp"),
            (std::vector<std::string>{"eth0=slirp,,/usr/bin/slirp", "eth1=tuntap,web0,00:16:3e:00:00:02"}));
  EXPECT_TRUE(qemu_nic_arguments(NetworkSpec{}).empty());
  net.nics[1] = NicSpec{.mac = "00:16:3e:00:00:02"};
  EXPECT_EQ(qemu_nic_arguments(net)[5], "user,id=net1,net=10.0.3.0/24");  // its own subnet
}

// qemu's socket on loopback, UML's with a TTL of 0: frames of a socket
// network never leave the host.
TEST(HypervisorNics, ASocketNetworksNicIsAMulticastSocketKeptToTheHost) {
  NetworkSpec net;
  net.nics = {NicSpec{.kind = NetworkKind::kSocket, .network = "lan0", .mac = "00:16:3e:00:00:01",
                      .socket = "239.255.1.2:20001"}};
  EXPECT_EQ(qemu_nic_arguments(net),
            (std::vector<std::string>{"-netdev", "socket,id=net0,mcast=239.255.1.2:20001,localaddr=127.0.0.1",
                                      "-device", "virtio-net-pci,netdev=net0,mac=00:16:3e:00:00:01"}));
  EXPECT_EQ(uml_nic_arguments(net, "/usr/bin/slirp"),
            (std::vector<std::string>{"eth0=mcast,00:16:3e:00:00:01,239.255.1.2,20001,0"}));
}

TEST(UmlHostCpu, IsOneOfTheAllowedCpusTheSameForAnInstanceAndSpreadsInstances) {
  std::vector<int> allowed = {2, 5, 7};
  std::set<int> used;
  for (int i = 0; i < 30; ++i) {
    std::string id = random_hex(8);
    int cpu = uml_host_cpu(allowed, id);
    EXPECT_TRUE(cpu == 2 || cpu == 5 || cpu == 7) << cpu;
    EXPECT_EQ(uml_host_cpu(allowed, id), cpu);
    used.insert(cpu);
  }
  EXPECT_EQ(used.size(), 3u) << "30 instances all on the same CPUs";
  EXPECT_FALSE(allowed_cpus().empty());
}

}  // namespace
}  // namespace kiln
