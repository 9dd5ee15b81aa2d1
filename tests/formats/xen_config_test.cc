#include "formats/domain/xen_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

// A domain config as the Xen books of the 2.6.18 era printed it.
constexpr std::string_view kFeistyConfig = R"(# Ubuntu feisty guest
kernel = "/boot/vmlinuz-2.6.18-xen"
ramdisk = "/boot/initrd.img-2.6.18-xen"
memory = 128
name = "feisty"
vcpus = 2
builder = 'linux'
disk = ['tap:aio:/srv/img/feisty.img,sda1,w',
        'tap:aio:/srv/img/feisty-swap.img,sda3,w']
vif = [ 'mac=00:16:3e:00:00:10, bridge=xenbr0' ]
root = "/dev/sda1 ro"
extra = "console=hvc0 xencons=tty"

on_reboot = 'restart'
on_crash = 'restart'
)";

DomainSpec parse_ok(std::string_view text) {
  auto spec = parse_xen_config(text, "test.cfg");
  EXPECT_TRUE(spec) << spec.error().to_string();
  return spec ? std::move(*spec) : DomainSpec{};
}

// "FILE:LINE: message" of a config that must not parse.
std::string parse_error(std::string_view text, std::string_view file = "bad.cfg") {
  auto spec = parse_xen_config(text, file);
  if (spec) return "(parsed without error)";
  EXPECT_EQ(spec.error().kind, ErrorKind::kBadInput);
  return spec.error().to_string();
}

// The message of a spec no config could express.
std::string refusal(const DomainSpec& spec) {
  auto text = write_xen_config(spec);
  return text ? "(written without error)" : text.error().message;
}

// --- Reading ----------------------------------------------------------------

TEST(XenConfig, ReadsTheClassicFeistyConfig) {
  DomainSpec spec = parse_ok(kFeistyConfig);
  EXPECT_EQ(spec.name, "feisty");
  EXPECT_EQ(spec.kernel, "/boot/vmlinuz-2.6.18-xen");
  EXPECT_EQ(spec.ramdisk, "/boot/initrd.img-2.6.18-xen");
  EXPECT_EQ(spec.memory_mib, 128u);
  EXPECT_EQ(spec.vcpus, 2);
  EXPECT_EQ(spec.root, "/dev/sda1 ro");
  EXPECT_EQ(spec.extra, "console=hvc0 xencons=tty");
  EXPECT_EQ(spec.kernel_command_line(), "root=/dev/sda1 ro console=hvc0 xencons=tty");
  ASSERT_EQ(spec.disks.size(), 2u);
  ASSERT_EQ(spec.vifs.size(), 1u);
  EXPECT_EQ(spec.on_poweroff, DomainAction::kDestroy);  // not written: Xen's default
  EXPECT_EQ(spec.on_reboot, DomainAction::kRestart);
  EXPECT_EQ(spec.on_crash, DomainAction::kRestart);
}

TEST(XenConfig, TapAioDisksKeepTheirPathFrontendAndMode) {
  DomainSpec spec = parse_ok(
      "disk = ['tap:aio:/srv/img/feisty.img,sda1,w','tap:aio:/srv/img/feisty-swap.img,sda3,w']");
  ASSERT_EQ(spec.disks.size(), 2u);
  EXPECT_EQ(spec.disks[0].backend, DiskBackend::kTapAio);
  EXPECT_EQ(spec.disks[0].format, DiskFormat::kRaw);
  EXPECT_EQ(spec.disks[0].path, "/srv/img/feisty.img");
  EXPECT_EQ(spec.disks[0].frontend, "sda1");
  EXPECT_FALSE(spec.disks[0].read_only);
  EXPECT_EQ(spec.disks[1].path, "/srv/img/feisty-swap.img");
  EXPECT_EQ(spec.disks[1].frontend, "sda3");
}

TEST(XenConfig, PhyPathsWithoutSlashAreUnderDev) {
  DomainSpec spec = parse_ok("disk = ['phy:vg0/feisty,sda1,w', 'phy:/dev/sdb,xvdb,r']");
  ASSERT_EQ(spec.disks.size(), 2u);
  EXPECT_EQ(spec.disks[0].backend, DiskBackend::kPhy);
  EXPECT_EQ(spec.disks[0].path, "/dev/vg0/feisty");
  EXPECT_EQ(spec.disks[1].path, "/dev/sdb");
  EXPECT_TRUE(spec.disks[1].read_only);
}

TEST(XenConfig, ShortPhyFormWithoutAGuestDeviceIsAnErrorShowingTheFullForm) {
  EXPECT_EQ(parse_error("disk = ['phy:vg0/feisty']", "feisty.cfg"),
            "feisty.cfg:1:9: bad disk spec 'phy:vg0/feisty': no guest device (vdev): write it as in "
            "'/srv/disk.raw,raw,xvda,rw' or 'phy:vg0/feisty,xvda1,w'");
}

TEST(XenConfig, DiskModesAreROrWOrRw) {
  DomainSpec spec = parse_ok("disk = ['file:/a.img,xvda,r', 'file:/b.img,xvdb,w', 'file:/c.img,xvdc,rw']");
  ASSERT_EQ(spec.disks.size(), 3u);
  EXPECT_TRUE(spec.disks[0].read_only);
  EXPECT_FALSE(spec.disks[1].read_only);
  EXPECT_FALSE(spec.disks[2].read_only);
  EXPECT_EQ(spec.disks[0].backend, DiskBackend::kFile);
}

TEST(XenConfig, FrontendsAreSdHdOrXvdWithAnOptionalPartition) {
  DomainSpec spec = parse_ok(
      "disk = ['file:/a,hda,w', 'file:/b,xvdb2,w', 'file:/c,sdaa,w', 'file:/d,ioemu:hdc,w']");
  ASSERT_EQ(spec.disks.size(), 4u);
  EXPECT_EQ(spec.disks[0].frontend, "hda");
  EXPECT_EQ(spec.disks[1].frontend, "xvdb2");
  EXPECT_EQ(spec.disks[2].frontend, "sdaa");
  EXPECT_EQ(spec.disks[3].frontend, "hdc");  // HVM configs' "ioemu:" only asked for emulation
}

TEST(XenConfig, XlKeywordDiskSpecsAreReadToo) {
  DomainSpec spec = parse_ok(
      "disk = ['format=qcow2, vdev=xvda, access=ro, target=/srv/a,b.qcow2',\n"
      "        'vdev=xvdb, backendtype=phy, target=vg0/data']");
  ASSERT_EQ(spec.disks.size(), 2u);
  EXPECT_EQ(spec.disks[0].format, DiskFormat::kQcow2);
  EXPECT_EQ(spec.disks[0].backend, DiskBackend::kFile);
  EXPECT_EQ(spec.disks[0].path, "/srv/a,b.qcow2");  // target= takes the rest, commas too
  EXPECT_TRUE(spec.disks[0].read_only);
  EXPECT_EQ(spec.disks[1].backend, DiskBackend::kPhy);
  EXPECT_EQ(spec.disks[1].path, "/dev/vg0/data");
  EXPECT_FALSE(spec.disks[1].read_only);  // xl's default access is rw
}

TEST(XenConfig, VifKeepsMacBridgeAndOtherKeys) {
  DomainSpec spec = parse_ok("vif = [ 'mac=00:16:3e:00:00:10, bridge=xenbr0' ]");
  ASSERT_EQ(spec.vifs.size(), 1u);
  EXPECT_EQ(spec.vifs[0].mac, "00:16:3e:00:00:10");
  EXPECT_EQ(spec.vifs[0].bridge, "xenbr0");
  EXPECT_TRUE(spec.vifs[0].other_keys.empty());

  spec = parse_ok("vif = ['ip=10.0.0.5,script=vif-route', '']");
  ASSERT_EQ(spec.vifs.size(), 2u);
  using Keys = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(spec.vifs[0].other_keys, (Keys{{"ip", "10.0.0.5"}, {"script", "vif-route"}}));
  EXPECT_EQ(spec.vifs[1], DomainVif{});  // '' is one interface with defaults
}

TEST(XenConfig, RootIsTheRootArgumentAsWritten) {
  EXPECT_EQ(parse_ok("root = \"/dev/sda1 ro\"").root, "/dev/sda1 ro");
  EXPECT_EQ(parse_ok("root = \"/dev/sda1 ro\"").kernel_command_line(), "root=/dev/sda1 ro");
}

TEST(XenConfig, ValuesArePythonLikeStringsIntegersAndLists) {
  DomainSpec spec = parse_ok(
      "\n"
      "  # comments and blank lines are ignored\n"
      "name = 'it\\'s'  # a comment after a value\n"
      "kernel = \"/boot/a \\\"b\\\" #c\"\n"
      "memory = '4096'\n"
      "vcpus = 0x4; on_poweroff = \"preserve\"\n"
      "disk = [\n"
      "  'file:/a.img,xvda,w',\n"
      "]\n");
  EXPECT_EQ(spec.name, "it's");
  EXPECT_EQ(spec.kernel, "/boot/a \"b\" #c");
  EXPECT_EQ(spec.memory_mib, 4096u);  // xm ran int() over quoted numbers
  EXPECT_EQ(spec.vcpus, 4);
  EXPECT_EQ(spec.on_poweroff, DomainAction::kPreserve);
  EXPECT_EQ(spec.disks.size(), 1u);  // a trailing comma is fine
}

TEST(XenConfig, CmdlineIsXlsWholeCommandLine) {
  DomainSpec spec = parse_ok("cmdline = \"root=/dev/xvda1 ro quiet\"");
  EXPECT_EQ(spec.kernel_command_line(), "root=/dev/xvda1 ro quiet");
  EXPECT_EQ(parse_error("root = '/dev/xvda1'\ncmdline = 'quiet'"),
            "bad.cfg:2:1: cmdline replaces root and extra: set either cmdline, or root and extra");
}

TEST(XenConfig, CrashActionsIncludeCoredumps) {
  EXPECT_EQ(parse_ok("on_crash = 'coredump-restart'").on_crash, DomainAction::kCoredumpRestart);
  EXPECT_EQ(parse_ok("on_reboot = 'rename-restart'").on_reboot, DomainAction::kRenameRestart);
  EXPECT_EQ(parse_error("on_poweroff = 'coredump-destroy'"),
            "bad.cfg:1:15: bad on_poweroff 'coredump-destroy': expected destroy, restart, preserve "
            "or rename-restart");
}

// --- Keys kiln does not act on ------------------------------------------------

TEST(XenConfig, KeysKilnDoesNotActOnAreListedOnceEachWithTheReason) {
  DomainSpec spec = parse_ok("bootloader = '/usr/bin/pygrub'\nkeymap = 'de'\n"
                             "vfb = ['type=vnc,vncunused=1']\ncpus = [0, 1]\nkeymap = 'de'\nvnc = 0\nsdl = 1\n");
  std::vector<std::string> keys;
  for (const UnsupportedKey& key : spec.source.unsupported) keys.push_back(key.where.to_string() + " " + key.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"test.cfg:2:1 keymap", "test.cfg:3:1 vfb", "test.cfg:4:1 cpus",
                                            "test.cfg:7:1 sdl"}))
      << "vnc = 0 asks for no display, so it needs no word";
  EXPECT_THAT(spec.source.unsupported[3].why, HasSubstr("no display"));
  EXPECT_EQ(spec.bootloader, "/usr/bin/pygrub");
}

TEST(XenConfig, TypeBuilderAndPvhSayHowTheDomainIsBuilt) {
  EXPECT_EQ(parse_ok("type = 'hvm'").type, DomainType::kHvm);
  EXPECT_EQ(parse_ok("builder = 'hvm'").type, DomainType::kHvm);
  EXPECT_EQ(parse_ok("builder = 'linux'").type, DomainType::kPv);
  EXPECT_EQ(parse_ok("type = 'pvh'").type, DomainType::kPvh);
  EXPECT_EQ(parse_ok("pvh = 1").type, DomainType::kPvh);
  EXPECT_EQ(parse_ok("").type, DomainType::kPv);
  EXPECT_EQ(parse_error("type = 'hvm'\nbuilder = 'linux'\n"),
            "bad.cfg:2:11: builder says the domain is pv, but line 1 said hvm");
  EXPECT_EQ(parse_error("type = 'kvm'"), "bad.cfg:1:8: bad type 'kvm': expected pv, pvh or hvm");
}

TEST(XenConfig, BootloaderArgsAreAListOrOneStringOfWords) {
  EXPECT_EQ(parse_ok("bootloader_args = ['--entry=1', '--args=quiet']").bootloader_args,
            (std::vector<std::string>{"--entry=1", "--args=quiet"}));
  EXPECT_EQ(parse_ok("bootloader_args = '-q  --entry=xvda2:/boot/vmlinuz'").bootloader_args,
            (std::vector<std::string>{"-q", "--entry=xvda2:/boot/vmlinuz"}));
}

TEST(XenConfig, HvmBootOrderAndSerialAreRead) {
  DomainSpec spec = parse_ok("type = 'hvm'\nboot = 'dc'\nserial = 'pty'\n");
  EXPECT_EQ(spec.boot, "dc");
  EXPECT_TRUE(spec.source.unsupported.empty()) << "serial = 'pty' is the console kiln gives";
  EXPECT_EQ(parse_ok("serial = 'file:/tmp/x'").source.unsupported.size(), 1u);
  EXPECT_EQ(parse_error("boot = 'x'"),
            "bad.cfg:1:8: bad boot 'x': expected devices in order, c (disk), d (cdrom), n (network), e.g. boot = \"c\"");
}

TEST(XenConfig, PassthroughIsRefusedWithTheReasonUnlessEmpty) {
  EXPECT_EQ(parse_error("name = 'a'\npci = ['01:00.0']\n"),
            "bad.cfg:2:7: pci = ...: passes a host device through to the guest; kiln gives guests virtual devices only");
  EXPECT_TRUE(parse_ok("pci = []").source.unsupported.empty());
  EXPECT_THAT(parse_error("nfs_root = '/srv/x'"), HasSubstr("a root over NFS"));
}

TEST(XenConfig, WarningsAreGivenWhetherTheConfigParsesOrNot) {
  std::vector<UnsupportedKey> notes;
  ASSERT_TRUE(parse_xen_config("sdl = 1\n", "x.cfg", &notes));
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].key, "sdl");
}

TEST(XenConfig, WarningsReadBeforeAnErrorAreStillGiven) {
  std::vector<UnsupportedKey> notes;
  auto spec = parse_xen_config("maxmem = 1024\nsdl = 1\nmemory = 'lots'\n", "x.cfg", &notes);
  ASSERT_FALSE(spec);
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_EQ(notes[0].key, "maxmem");
  EXPECT_EQ(notes[1].key, "sdl");
}

TEST(XenConfig, EveryKeyOfTheTableIsInTheReference) {
  std::string text = xen_config_reference_text();
  std::string markdown = xen_config_reference_markdown();
  for (const XenKeyInfo& key : xen_config_keys()) {
    EXPECT_THAT(markdown, HasSubstr("| `" + std::string(key.key) + "` |")) << key.key;
    EXPECT_THAT(text, HasSubstr("  " + std::string(key.key) + " ")) << key.key;
    EXPECT_FALSE(key.doc.empty()) << key.key;
  }
  EXPECT_EQ(testing::read_text(testing::source_path("docs/xen-config.md")), markdown)
      << "regenerate with: build/kiln help xen --markdown > docs/xen-config.md";
}

TEST(XenConfig, KeysXenDoesNotKnowAreAnError) {
  EXPECT_THAT(parse_error("name = 'a'\nmemroy = 128\n"),
              HasSubstr("bad.cfg:2:1: unknown key 'memroy': not a Xen domain config key (kiln reads name, type, "));
}

// --- Where things were written --------------------------------------------------

TEST(XenConfig, RemembersTheLineOfEachKeyAndListItem) {
  DomainSpec spec = parse_ok(kFeistyConfig);
  EXPECT_EQ(spec.source.of("kernel").to_string(), "test.cfg:2:1");
  EXPECT_EQ(spec.source.of("on_crash").to_string(), "test.cfg:15:1");
  EXPECT_EQ(spec.source.of("on_poweroff").to_string(), "test.cfg");  // not written
  EXPECT_EQ(spec.disks[0].where.to_string(), "test.cfg:8:9");
  EXPECT_EQ(spec.disks[1].where.to_string(), "test.cfg:9:9");
  EXPECT_EQ(spec.vifs[0].where.to_string(), "test.cfg:10:9");
}

TEST(XenConfigParser, TakesLinesWithTheirNumbersInAnEnclosingFile) {
  XenConfigParser parser("web.vmc");
  ASSERT_TRUE(parser.feed_line("name = 'web'", 3));
  ASSERT_TRUE(parser.feed_line("disk = ['file:/a.img,xvda1,w',", 7));
  ASSERT_TRUE(parser.feed_line("        'file:/b.img,xvda2,w']", 12));
  ASSERT_TRUE(parser.feed_line("memory = 256", 13));
  auto spec = parser.finish();
  ASSERT_TRUE(spec) << spec.error().to_string();
  EXPECT_EQ(spec->name, "web");
  EXPECT_EQ(spec->source.of("memory").to_string(), "web.vmc:13:1");
  ASSERT_EQ(spec->disks.size(), 2u);
  EXPECT_EQ(spec->disks[1].where.to_string(), "web.vmc:12:9");

  XenConfigParser open_list("web.vmc");
  ASSERT_TRUE(open_list.feed_line("vif = [", 4));
  ASSERT_TRUE(open_list.feed_line("  'bridge=br0',", 9));
  auto unfinished = open_list.finish();
  ASSERT_FALSE(unfinished);
  EXPECT_EQ(unfinished.error().to_string(),
            "web.vmc:9: unterminated list (opened at line 4): the file ends before its closing ']'");
}

// --- Malformed input ----------------------------------------------------------

TEST(XenConfigErrors, KeyWithoutEquals) {
  EXPECT_EQ(parse_error("name = 'a'\n\nkernel \"/boot/vmlinuz\"\n"),
            "bad.cfg:3:1: expected '=' after key 'kernel'");
}

TEST(XenConfigErrors, UnterminatedString) {
  EXPECT_EQ(parse_error("name = 'a'\nkernel = \"/boot/vmlinuz\n"),
            "bad.cfg:2:10: unterminated string: add the closing \" on the same line");
}

TEST(XenConfigErrors, UnterminatedListAtTheEndOfTheFile) {
  EXPECT_EQ(parse_error("disk = [\n  'file:/a.img,xvda,w',\n  'file:/b.img,xvdb,w'\n"),
            "bad.cfg:3: unterminated list (opened at line 1): the file ends before its closing ']'");
}

TEST(XenConfigErrors, UnterminatedListFollowedByAnotherKey) {
  EXPECT_EQ(parse_error("name = 'a'\ndisk = [ 'file:/a.img,xvda,w',\nmemory = 128\n"),
            "bad.cfg:3:1: unterminated list (opened at line 2): expected a value, ',' or ']' "
            "before 'memory'");
}

TEST(XenConfigErrors, BadDiskSpec) {
  EXPECT_EQ(parse_error("disk = ['/srv/a.img']"),
            "bad.cfg:1:9: bad disk spec '/srv/a.img': no guest device (vdev): write it as in "
            "'/srv/disk.raw,raw,xvda,rw' or 'phy:vg0/feisty,xvda1,w'");
  EXPECT_EQ(parse_error("disk = ['file:,xvda,w']"),
            "bad.cfg:1:9: bad disk spec 'file:,xvda,w': the path after file: is empty");
}

TEST(XenConfigErrors, BadDiskModeOrFrontend) {
  EXPECT_EQ(parse_error("disk = [\n'file:/a.img,xvda,x']"),
            "bad.cfg:2:1: bad disk spec 'file:/a.img,xvda,x': bad access 'x': expected r, ro, w or rw");
  EXPECT_EQ(parse_error("disk = ['file:/a.img,vda,w']"),
            "bad.cfg:1:9: bad disk spec 'file:/a.img,vda,w': bad guest device 'vda': expected sdX, "
            "hdX or xvdX with an optional partition number, e.g. xvda1");
  EXPECT_EQ(parse_error("disk = ['file:/a.img,xvda1,w',\n        'file:/b.img,xvda1,w']"),
            "bad.cfg:2:9: guest device 'xvda1' is used by two disks; give each its own");
}

TEST(XenConfigErrors, BadXlDiskParameters) {
  EXPECT_EQ(parse_error("disk = ['vdev=hdc, devtype=tape, target=/x.iso']"),
            "bad.cfg:1:9: bad disk spec 'vdev=hdc, devtype=tape, target=/x.iso': bad devtype 'tape': "
            "expected disk or cdrom");
  EXPECT_EQ(parse_error("disk = ['format=vhd, vdev=xvda, target=/x.vhd']"),
            "bad.cfg:1:9: bad disk spec 'format=vhd, vdev=xvda, target=/x.vhd': format vhd: kiln reads "
            "raw and qcow2 disks (convert with qemu-img convert -O qcow2)");
}

TEST(XenConfigErrors, MemoryMustBeAPositiveInteger) {
  std::string expected = "bad.cfg:2:10: memory must be a positive integer (MB), e.g. memory = 512";
  EXPECT_EQ(parse_error("name = 'a'\nmemory = 0\n"), expected);
  EXPECT_EQ(parse_error("name = 'a'\nmemory = '1G'\n"), expected);
  EXPECT_EQ(parse_error("name = 'a'\nmemory = -5\n"), expected);
  EXPECT_EQ(parse_error("memory = 128 * 2"),
            "bad.cfg:1:14: unexpected '*': a value is a \"string\", an integer or a [list]");
}

TEST(XenConfigErrors, BadVif) {
  EXPECT_EQ(parse_error("vif = ['mac=00:16:3e:00:00, bridge=xenbr0']"),
            "bad.cfg:1:8: bad MAC address '00:16:3e:00:00' in vif spec "
            "'mac=00:16:3e:00:00, bridge=xenbr0': expected six hex octets like 00:16:3e:12:34:56");
  EXPECT_EQ(parse_error("vif = ['xenbr0']"),
            "bad.cfg:1:8: bad vif spec 'xenbr0': 'xenbr0' is not KEY=VALUE; write e.g. "
            "'mac=00:16:3e:00:00:10, bridge=xenbr0'");
}

TEST(XenConfigErrors, WrongValueTypes) {
  EXPECT_EQ(parse_error("disk = 'file:/a.img,xvda,w'"),
            "bad.cfg:1:8: disk must be a list of strings, e.g. disk = ['file:/srv/img/root.img,xvda1,w']");
  EXPECT_EQ(parse_error("kernel = ['/boot/vmlinuz']"),
            "bad.cfg:1:10: kernel must be a string, e.g. kernel = \"...\"");
}

TEST(XenConfigErrors, SupportedKeySetTwice) {
  EXPECT_EQ(parse_error("memory = 128\nname = 'a'\nmemory = 256\n"),
            "bad.cfg:3:1: 'memory' is set twice (first at line 1); keep one");
}

TEST(XenConfigErrors, StrayTokens) {
  EXPECT_EQ(parse_error("name = 'a' 'b'"),
            "bad.cfg:1:12: unexpected string 'b' after the value of 'name': write one KEY = "
            "VALUE per line, or separate them with ';'");
  EXPECT_EQ(parse_error("vcpus = 1]"), "bad.cfg:1:10: unexpected ']': no list is open");
  EXPECT_EQ(parse_error("= 5"), "bad.cfg:1:1: expected KEY = VALUE, found '='");
  EXPECT_EQ(parse_error("name ="), "bad.cfg:1:1: missing value after 'name ='");
}

// --- Writing ------------------------------------------------------------------

TEST(WriteXenConfig, UsesTheConventionalLayout) {
  DomainSpec spec;
  spec.name = "web";
  spec.memory_mib = 512;
  spec.kernel = "/abs/out/vmlinuz";
  spec.root = "UUID=0f2e ro";
  spec.disks.push_back({DiskBackend::kFile, DiskFormat::kRaw, "/abs/out/root.img", "xvda1", false, {}});
  spec.vifs.push_back({"00:16:3e:00:00:10", "xenbr0", {}, {}});
  auto text = write_xen_config(spec);
  ASSERT_TRUE(text) << text.error().to_string();
  EXPECT_EQ(*text,
            "# Xen domain config (xm/xl syntax), written by kiln\n"
            "name = \"web\"\n"
            "kernel = \"/abs/out/vmlinuz\"\n"
            "memory = 512\n"
            "vcpus = 1\n"
            "root = \"UUID=0f2e ro\"\n"
            "disk = ['file:/abs/out/root.img,xvda1,w']\n"
            "vif = ['mac=00:16:3e:00:00:10, bridge=xenbr0']\n"
            "on_poweroff = \"destroy\"\n"
            "on_reboot = \"restart\"\n"
            "on_crash = \"destroy\"\n");
}

TEST(WriteXenConfig, ParsesBackToTheSameSpec) {
  DomainSpec original = parse_ok(kFeistyConfig);
  auto text = write_xen_config(original);
  ASSERT_TRUE(text) << text.error().to_string();
  DomainSpec reread = parse_ok(*text);
  EXPECT_EQ(reread, original) << *text;
  EXPECT_NE(text->find("disk = [\n    'tap:aio:/srv/img/feisty.img,sda1,w',\n"), std::string::npos) << *text;
}

TEST(WriteXenConfig, RoundTripsWhatTheXmFormCannotSay) {
  DomainSpec spec;
  spec.name = "odd 'name' with \"quotes\", \\ and\na newline";
  spec.extra = "console=ttyS0\tinit=/bin/sh";
  spec.disks.push_back({DiskBackend::kPhy, DiskFormat::kQcow2, "/dev/vg0/a", "xvda", true, {}});
  spec.disks.push_back({DiskBackend::kTapAio, DiskFormat::kRaw, "/srv/with,comma.img", "xvdb", false, {}});
  spec.vifs.push_back({"", "", {{"ip", "10.0.0.1"}, {"script", "vif-route"}}, {}});
  spec.vifs.push_back({});
  spec.on_crash = DomainAction::kCoredumpDestroy;
  auto text = write_xen_config(spec);
  ASSERT_TRUE(text) << text.error().to_string();
  EXPECT_EQ(parse_ok(*text), spec) << *text;
}

TEST(WriteXenConfig, RefusesASpecNoConfigCouldExpress) {
  DomainSpec spec;
  spec.disks.push_back({DiskBackend::kFile, DiskFormat::kRaw, "/a.img", "", false, {}});
  EXPECT_EQ(refusal(spec),
            "bad guest device '': expected sdX, hdX or xvdX with an optional partition number, e.g. xvda1");

  spec.disks[0].frontend = "xvda";
  spec.on_reboot = DomainAction::kCoredumpRestart;
  EXPECT_EQ(refusal(spec),
            "on_reboot cannot be 'coredump-restart': coredump actions apply to on_crash only");

  spec.on_reboot = DomainAction::kRestart;
  spec.disks[0].backend = DiskBackend::kPhy;
  spec.disks[0].path = "vg0/root";
  EXPECT_EQ(refusal(spec), "phy disk path 'vg0/root' must be absolute, e.g. /dev/vg0/root");
}

}  // namespace
}  // namespace kiln
