#include "formats/domain/libvirt_xml.h"

#include <gtest/gtest.h>
#include <pugixml.hpp>

#include <string>

#include "formats/domain/xen_config.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using kiln::testing::ProcessResult;
using kiln::testing::run_program;
using kiln::testing::ScratchDir;
using kiln::testing::write_text;

// A guest as kiln bakes it: direct kernel boot, a root disk and a data disk.
DomainSpec baked_guest() {
  DomainSpec spec;
  spec.name = "web";
  spec.memory_mib = 512;
  spec.vcpus = 2;
  spec.kernel = "/abs/out/web/vmlinuz";
  spec.ramdisk = "/abs/out/web/initrd.img";
  spec.root = "UUID=8c1f0e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b ro";
  spec.extra = "console=ttyS0";
  spec.disks.push_back({DiskBackend::kFile, DiskFormat::kQcow2, "/abs/out/web/root.qcow2", "xvda1", false, {}});
  spec.disks.push_back({DiskBackend::kPhy, DiskFormat::kRaw, "/dev/vg0/data", "xvdb", true, {}});
  spec.vifs.push_back({"00:16:3e:00:00:10", "br0", {}, {}});
  spec.vifs.push_back({});
  spec.on_crash = DomainAction::kCoredumpDestroy;
  return spec;
}

std::string xml_of(const DomainSpec& spec, const LibvirtOptions& options = {}) {
  auto xml = write_libvirt_xml(spec, options);
  EXPECT_TRUE(xml) << xml.error().to_string();
  return xml ? *xml : "";
}

// The text of the first node an XPath selects in a document, "" if none.
std::string select(const std::string& xml, const char* xpath) {
  pugi::xml_document document;
  EXPECT_TRUE(document.load_string(xml.c_str())) << xml;
  pugi::xpath_node found = document.select_node(xpath);
  if (found.attribute()) return found.attribute().value();
  return found.node() ? found.node().text().get() : "";
}

// The message of a spec libvirt XML cannot carry.
std::string refusal(const DomainSpec& spec) {
  auto xml = write_libvirt_xml(spec, {});
  return xml ? "(written without error)" : xml.error().message;
}

size_t count(const std::string& xml, const char* xpath) {
  pugi::xml_document document;
  EXPECT_TRUE(document.load_string(xml.c_str())) << xml;
  return document.select_nodes(xpath).size();
}

ProcessResult check_file(const std::vector<std::string>& argv_before_file, const std::string& xml) {
  ScratchDir dir;
  write_text(dir / "domain.xml", xml);
  std::vector<std::string> argv = argv_before_file;
  argv.insert(argv.begin() + 1, (dir / "domain.xml").string());
  return run_program(argv);
}

// Well-formed for libxml2, the parser libvirt itself uses.
ProcessResult xmllint(const std::string& xml) { return check_file({"xmllint", "--noout"}, xml); }

// Valid against libvirt's own RNG schema (package libvirt-clients).
ProcessResult virt_xml_validate(const std::string& xml) {
  return check_file({"virt-xml-validate", "domain"}, xml);
}

TEST(LibvirtXml, DescribesAKvmQ35DomainWithMemoryInMiB) {
  std::string xml = xml_of(baked_guest());
  EXPECT_EQ(select(xml, "/domain/@type"), "kvm");
  EXPECT_EQ(select(xml, "/domain/name"), "web");
  EXPECT_EQ(select(xml, "/domain/memory"), "512");
  EXPECT_EQ(select(xml, "/domain/memory/@unit"), "MiB");
  EXPECT_EQ(select(xml, "/domain/vcpu"), "2");
  EXPECT_EQ(select(xml, "/domain/os/type"), "hvm");
  EXPECT_EQ(select(xml, "/domain/os/type/@arch"), "x86_64");
  EXPECT_EQ(select(xml, "/domain/os/type/@machine"), "q35");
  EXPECT_EQ(count(xml, "/domain/features/acpi"), 1u);
  // A model of the host's CPU, which migrates between hosts alike.
  EXPECT_EQ(select(xml, "/domain/cpu/@mode"), "host-model");
}

TEST(LibvirtXml, QemuTypeRunsWithoutKvmOnQemusOwnCpuModel) {
  std::string xml = xml_of(baked_guest(), {.type = LibvirtDomainType::kQemu});
  EXPECT_EQ(select(xml, "/domain/@type"), "qemu");
  EXPECT_EQ(count(xml, "/domain/cpu"), 0u);
}

TEST(LibvirtXml, AnotherArchitectureNamesItsMachineAndTheCpuModelTcgEmulates) {
  std::string xml = xml_of(baked_guest(), {.type = LibvirtDomainType::kQemu, .arch = "aarch64", .machine = "virt",
                                           .tcg_cpu = "cortex-a72"});
  EXPECT_EQ(select(xml, "/domain/os/type/@arch"), "aarch64");
  EXPECT_EQ(select(xml, "/domain/os/type/@machine"), "virt");
  EXPECT_EQ(select(xml, "/domain/cpu/@mode"), "custom");
  EXPECT_EQ(select(xml, "/domain/cpu/model"), "cortex-a72");
  EXPECT_EQ(select(xml, "/domain/cpu/model/@fallback"), "forbid");
  EXPECT_EQ(virt_xml_validate(xml).exit_code, 0) << virt_xml_validate(xml).err;
}

TEST(LibvirtXml, BootsTheKernelDirectlyWithRootAndExtraOnTheCommandLine) {
  std::string xml = xml_of(baked_guest());
  EXPECT_EQ(select(xml, "/domain/os/kernel"), "/abs/out/web/vmlinuz");
  EXPECT_EQ(select(xml, "/domain/os/initrd"), "/abs/out/web/initrd.img");
  EXPECT_EQ(select(xml, "/domain/os/cmdline"),
            "root=UUID=8c1f0e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b ro console=ttyS0");
  EXPECT_EQ(count(xml, "/domain/os/boot"), 0u);
  EXPECT_EQ(select(xml, "/domain/os/@firmware"), "");
}

TEST(LibvirtXml, WithoutAKernelBootsFromTheDisk) {
  DomainSpec spec = baked_guest();
  spec.kernel.clear();
  std::string xml = xml_of(spec);
  EXPECT_EQ(select(xml, "/domain/os/boot/@dev"), "hd");
  EXPECT_EQ(count(xml, "/domain/os/kernel | /domain/os/initrd | /domain/os/cmdline"), 0u);
}

TEST(LibvirtXml, UefiFirmwareIsPickedByLibvirtOrGivenAsALoader) {
  DomainSpec spec = baked_guest();
  spec.kernel.clear();
  std::string xml = xml_of(spec, {.uefi = true});
  EXPECT_EQ(select(xml, "/domain/os/@firmware"), "efi");
  EXPECT_EQ(count(xml, "/domain/os/loader"), 0u);
  // Never the Secure Boot firmware with Microsoft's keys, which refuses
  // kiln's unsigned systemd-boot.
  EXPECT_EQ(select(xml, "/domain/os/firmware/feature[@name='secure-boot']/@enabled"), "no");
  EXPECT_EQ(select(xml, "/domain/os/firmware/feature[@name='enrolled-keys']/@enabled"), "no");

  xml = xml_of(spec, {.uefi = true, .uefi_loader = "/usr/share/OVMF/OVMF_CODE_4M.fd"});
  EXPECT_EQ(select(xml, "/domain/os/@firmware"), "");
  EXPECT_EQ(select(xml, "/domain/os/loader"), "/usr/share/OVMF/OVMF_CODE_4M.fd");
  EXPECT_EQ(select(xml, "/domain/os/loader/@type"), "pflash");
  EXPECT_EQ(select(xml, "/domain/os/loader/@readonly"), "yes");
  EXPECT_EQ(select(xml, "/domain/os/loader/@secure"), "no");
  EXPECT_EQ(count(xml, "/domain/os/firmware"), 0u);
}

// A domain kiln's libvirt backend made says so in its metadata, which
// `kiln list --connect` reads back (as libvirt gives it, under a prefix of
// libvirt's choosing) to tell kiln's domains from others.
TEST(LibvirtXml, KilnsInstancesCarryTheirIdInMetadata) {
  std::string xml = xml_of(baked_guest(), {.instance = KilnInstanceMetadata{"0123abcd", "/out/web", std::nullopt}});
  EXPECT_EQ(select(xml, "/domain/metadata/*[local-name()='instance']/@id"), "0123abcd");
  EXPECT_NE(xml.find(std::string("xmlns:kiln='") + kKilnMetadataNamespace + "'"), std::string::npos);
  auto back = parse_kiln_metadata("<k:instance xmlns:k='x' id='0123abcd' source='/out/web' ready-seconds='4.25'/>");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->id, "0123abcd");
  EXPECT_EQ(back->source, "/out/web");
  EXPECT_EQ(back->ready_seconds, 4.25);
  EXPECT_EQ(back->exec, "");
  EXPECT_EQ(kiln_metadata_xml({"0123abcd", "/out/web", 4.25, "1"}, /*bare=*/true),
            "<instance id='0123abcd' source='/out/web' ready-seconds='4.25' exec='1'/>");
  EXPECT_EQ(parse_kiln_metadata(kiln_metadata_xml({"0123abcd", "/out/web", 4.25, "none"}))->exec, "none");
  EXPECT_FALSE(parse_kiln_metadata("<other id='1'/>"));
  EXPECT_FALSE(parse_kiln_metadata("not xml"));
}

TEST(LibvirtXml, DisksAreVirtioInOrderFilesOrBlockDevices) {
  std::string xml = xml_of(baked_guest());
  ASSERT_EQ(count(xml, "/domain/devices/disk"), 2u);
  EXPECT_EQ(select(xml, "/domain/devices/disk[1]/@type"), "file");
  EXPECT_EQ(select(xml, "/domain/devices/disk[1]/@device"), "disk");
  EXPECT_EQ(select(xml, "/domain/devices/disk[1]/driver/@name"), "qemu");
  EXPECT_EQ(select(xml, "/domain/devices/disk[1]/driver/@type"), "qcow2");
  EXPECT_EQ(select(xml, "/domain/devices/disk[1]/source/@file"), "/abs/out/web/root.qcow2");
  EXPECT_EQ(select(xml, "/domain/devices/disk[1]/target/@dev"), "vda");
  EXPECT_EQ(select(xml, "/domain/devices/disk[1]/target/@bus"), "virtio");
  EXPECT_EQ(count(xml, "/domain/devices/disk[1]/readonly"), 0u);

  EXPECT_EQ(select(xml, "/domain/devices/disk[2]/@type"), "block");
  EXPECT_EQ(select(xml, "/domain/devices/disk[2]/source/@dev"), "/dev/vg0/data");
  EXPECT_EQ(select(xml, "/domain/devices/disk[2]/driver/@type"), "raw");
  EXPECT_EQ(select(xml, "/domain/devices/disk[2]/target/@dev"), "vdb");
  EXPECT_EQ(count(xml, "/domain/devices/disk[2]/readonly"), 1u);
}

TEST(LibvirtXml, DiskNamesContinuePastVdz) {
  DomainSpec spec = baked_guest();
  spec.disks.clear();
  for (int i = 0; i < 28; ++i)
    spec.disks.push_back({DiskBackend::kFile, DiskFormat::kRaw, fmt::format("/d{}.img", i),
                          fmt::format("xvd{}{}", i < 26 ? "" : "a", char('a' + i % 26)), false, {}});
  std::string xml = xml_of(spec);
  EXPECT_EQ(select(xml, "/domain/devices/disk[26]/target/@dev"), "vdz");
  EXPECT_EQ(select(xml, "/domain/devices/disk[27]/target/@dev"), "vdaa");
  EXPECT_EQ(select(xml, "/domain/devices/disk[28]/target/@dev"), "vdab");
}

TEST(LibvirtXml, InterfacesAreBridgedOrUserNetworking) {
  std::string xml = xml_of(baked_guest());
  ASSERT_EQ(count(xml, "/domain/devices/interface"), 2u);
  EXPECT_EQ(select(xml, "/domain/devices/interface[1]/@type"), "bridge");
  EXPECT_EQ(select(xml, "/domain/devices/interface[1]/source/@bridge"), "br0");
  EXPECT_EQ(select(xml, "/domain/devices/interface[1]/mac/@address"), "00:16:3e:00:00:10");
  EXPECT_EQ(select(xml, "/domain/devices/interface[1]/model/@type"), "virtio");
  EXPECT_EQ(select(xml, "/domain/devices/interface[2]/@type"), "user");
  EXPECT_EQ(count(xml, "/domain/devices/interface[2]/mac | /domain/devices/interface[2]/source"), 0u);
}

TEST(LibvirtXml, HasASerialConsoleOnAPty) {
  std::string xml = xml_of(baked_guest());
  EXPECT_EQ(select(xml, "/domain/devices/serial/@type"), "pty");
  EXPECT_EQ(select(xml, "/domain/devices/serial/target/@port"), "0");
  EXPECT_EQ(select(xml, "/domain/devices/console/@type"), "pty");
  EXPECT_EQ(select(xml, "/domain/devices/console/target/@type"), "serial");
}

// The exec agent's channel: a virtio-serial port by the name the agent
// looks for, on a socket whose path libvirt chooses. None unless asked.
TEST(LibvirtXml, TheExecAgentsChannelIsAVirtioPortOnlyWhenAsked) {
  EXPECT_EQ(count(xml_of(baked_guest()), "/domain/devices/channel"), 0u);
  std::string xml = xml_of(baked_guest(), {.agent_channel = "org.kiln.exec.0"});
  ASSERT_EQ(count(xml, "/domain/devices/channel"), 1u);
  EXPECT_EQ(select(xml, "/domain/devices/channel/@type"), "unix");
  EXPECT_EQ(select(xml, "/domain/devices/channel/target/@type"), "virtio");
  EXPECT_EQ(select(xml, "/domain/devices/channel/target/@name"), "org.kiln.exec.0");
  EXPECT_EQ(count(xml, "/domain/devices/channel/source"), 0u);
}

// OEM strings go in an SMBIOS sysinfo block that the os element points at.
TEST(LibvirtXml, OemStringsAreSmbiosSysinfoTheGuestReads) {
  EXPECT_EQ(count(xml_of(baked_guest()), "/domain/sysinfo"), 0u);
  std::string xml = xml_of(baked_guest(), {.oem_strings = {"kiln.agent=virtio:org.kiln.exec.0"}});
  EXPECT_EQ(select(xml, "/domain/sysinfo/@type"), "smbios");
  EXPECT_EQ(select(xml, "/domain/sysinfo/oemStrings/entry"), "kiln.agent=virtio:org.kiln.exec.0");
  EXPECT_EQ(select(xml, "/domain/os/smbios/@mode"), "sysinfo");
}

TEST(LibvirtXml, LifecycleActionsKeepXenSpelling) {
  std::string xml = xml_of(baked_guest());
  EXPECT_EQ(select(xml, "/domain/on_poweroff"), "destroy");
  EXPECT_EQ(select(xml, "/domain/on_reboot"), "restart");
  EXPECT_EQ(select(xml, "/domain/on_crash"), "coredump-destroy");
}

TEST(LibvirtXml, EscapesWhatXmlMustEscape) {
  DomainSpec spec = baked_guest();
  spec.name = "a<b>&'c\"";
  spec.disks[0].path = "/srv/it's & <here>.qcow2";
  std::string xml = xml_of(spec);
  EXPECT_EQ(select(xml, "/domain/name"), spec.name);
  EXPECT_EQ(select(xml, "/domain/devices/disk[1]/source/@file"), spec.disks[0].path);
  EXPECT_EQ(xmllint(xml).exit_code, 0) << xmllint(xml).err;
}

TEST(LibvirtXml, RefusesWhatLibvirtCannotTake) {
  DomainSpec spec = baked_guest();
  spec.name.clear();
  EXPECT_EQ(refusal(spec),
            "a libvirt domain needs a name without '/'; set name = \"...\"");
  spec = baked_guest();
  spec.memory_mib = 0;
  EXPECT_EQ(refusal(spec),
            "a libvirt domain needs its memory size; set memory = MB");
  spec = baked_guest();
  spec.extra = "console=ttyS0\x01";
  EXPECT_EQ(refusal(spec),
            "extra \"console=ttyS0\\x01\" holds a control character or invalid UTF-8, which "
            "libvirt XML cannot carry");
  spec = baked_guest();
  spec.disks[0].path = "/srv/\xff.img";
  EXPECT_EQ(refusal(spec), "disk path \"/srv/\\xff.img\" holds a control character or invalid "
                           "UTF-8, which libvirt XML cannot carry");
  spec.disks[0].path = "/srv/caf\xc3\xa9.img";  // valid UTF-8 is fine
  EXPECT_EQ(refusal(spec), "(written without error)");
}

TEST(LibvirtXml, ErrorsPointIntoTheXenConfigTheSpecCameFrom) {
  auto spec = parse_xen_config("name = 'feisty'\nkernel = \"/boot/vmlinuz\\x07\"\nmemory = 128\n",
                               "feisty.cfg");
  ASSERT_TRUE(spec) << spec.error().to_string();
  auto xml = write_libvirt_xml(*spec, {});
  ASSERT_FALSE(xml);
  EXPECT_EQ(xml.error().where.to_string(), "feisty.cfg:2:1");
}

// --- Checked by the tools libvirt users have ---------------------------------

TEST(LibvirtXmlTools, EveryVariantIsWellFormedAndValidForLibvirt) {
  DomainSpec no_kernel = baked_guest();
  no_kernel.kernel.clear();
  DomainSpec minimal;
  minimal.name = "minimal";
  minimal.memory_mib = 64;
  struct Variant {
    const char* what;
    DomainSpec spec;
    LibvirtOptions options;
  };
  for (const Variant& variant :
       {Variant{"direct kernel boot", baked_guest(), {}},
        Variant{"qemu, bios disk boot", no_kernel, {.type = LibvirtDomainType::kQemu}},
        Variant{"uefi auto", no_kernel, {.uefi = true}},
        Variant{"uefi auto, oem strings, agent channel", no_kernel,
                {.uefi = true, .oem_strings = {"kiln.agent=virtio:org.kiln.exec.0"}, .agent_channel = "org.kiln.exec.0"}},
        Variant{"uefi loader + kernel", baked_guest(), {.uefi = true, .uefi_loader = "/usr/share/OVMF/OVMF_CODE_4M.fd"}},
        Variant{"no devices", minimal, {}},
        Variant{"kiln's instance", baked_guest(),
                {.type = LibvirtDomainType::kQemu, .instance = KilnInstanceMetadata{"0123abcd", "/out/web", 1.5, "1"},
                 .agent_channel = "org.kiln.exec.0"}}}) {
    SCOPED_TRACE(variant.what);
    std::string xml = xml_of(variant.spec, variant.options);
    ProcessResult lint = xmllint(xml);
    EXPECT_EQ(lint.exit_code, 0) << lint.err << xml;
    ProcessResult valid = virt_xml_validate(xml);
    EXPECT_EQ(valid.exit_code, 0) << valid.out << valid.err << xml;
  }
}

TEST(LibvirtXmlTools, TheChecksFailOnABrokenDomain) {
  // The validity test above can only fail if the tools really reject bad
  // documents: an unknown lifecycle action and a memory size that is no number.
  std::string xml = xml_of(baked_guest());
  std::string invalid = xml;
  invalid.replace(invalid.find("<on_reboot>restart"), 18, "<on_reboot>explode");
  EXPECT_GT(virt_xml_validate(invalid).exit_code, 0);  // -1 would mean "not run"
  std::string not_a_number = xml;
  not_a_number.replace(not_a_number.find(">512<"), 5, ">lots<");
  EXPECT_GT(virt_xml_validate(not_a_number).exit_code, 0);
  EXPECT_GT(xmllint(xml.substr(0, xml.size() / 2)).exit_code, 0);
}

}  // namespace
}  // namespace kiln
