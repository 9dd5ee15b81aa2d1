// The default recipe baked for real (mmdebstrap from the Debian archive):
// what is in the image, that a rebake is byte-identical, that a hostname
// change does not re-run the bootstrap, and that the image boots. The bake
// itself is the ctest fixture `bake_default_image`.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/guest_console.h"
#include "tests/integration/root_filesystem.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::read_text;
using testing::run_kiln;
using testing::run_program;

const std::filesystem::path kDir = KILN_INTEGRATION_DIR;
const std::filesystem::path kImage = kDir / "default";

std::string debugfs(const std::string& request, const std::filesystem::path& image = kImage) {
  return run_program({"debugfs", "-R", request, testing::root_filesystem(image)}).out;
}

std::string sha256(const std::filesystem::path& file) {
  return run_program({"sha256sum", file.string()}).out.substr(0, 64);
}

nlohmann::json manifest() { return nlohmann::json::parse(read_text(kImage / "manifest.json")); }

TEST(BakeDebian, RootFilesystemPassesFsck) {
  auto fsck = run_program({"e2fsck", "-fn", testing::root_filesystem(kImage)});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

TEST(BakeDebian, HostnameAndFstabAreRight) {
  EXPECT_EQ(debugfs("cat /etc/hostname"), "debian\n");
  std::string uuid = run_program({"blkid", "-p", "-O", std::to_string(testing::root_filesystem_offset(kImage)), "-o",
                                  "value", "-s", "UUID", testing::root_filesystem_file(kImage).string()})
                         .out;
  uuid = uuid.substr(0, uuid.find('\n'));
  ASSERT_EQ(uuid.size(), 36u);
  EXPECT_THAT(debugfs("cat /etc/fstab"), HasSubstr("UUID=" + uuid + "\t/\text4\t"));
  EXPECT_EQ(manifest()["image"]["root_filesystem"]["uuid"], uuid);
}

TEST(BakeDebian, KernelAndInitrdAreThere) {
  EXPECT_GT(std::filesystem::file_size(kImage / "vmlinuz"), 4u << 20);
  // The recipe's initramfs_modules: a VM's disk drivers, not initramfs-tools'
  // every driver (35 MiB).
  EXPECT_GT(std::filesystem::file_size(kImage / "initrd.img"), 2u << 20);
  EXPECT_LT(std::filesystem::file_size(kImage / "initrd.img"), 16u << 20);
  // A bzImage: the boot protocol's "HdrS" at 0x202 (Documentation/x86/boot.rst).
  std::string kernel = read_text(kImage / "vmlinuz");
  ASSERT_GT(kernel.size(), 0x206u);
  EXPECT_EQ(kernel.substr(0x202, 4), "HdrS");
}

TEST(BakeDebian, ManifestListsInstalledPackages) {
  std::vector<std::string> names;
  nlohmann::json installed = manifest()["packages"];
  for (const auto& package : installed) names.push_back(package["name"]);
  for (const char* wanted : {"systemd-sysv", "openssh-server", "udev", "iputils-ping"})
    EXPECT_THAT(names, ::testing::Contains(wanted));
}

TEST(BakeDebian, EachMachineMakesItsOwnIdentity) {
  EXPECT_EQ(debugfs("cat /etc/machine-id"), "");
  EXPECT_THAT(debugfs("ls /etc/ssh"), ::testing::Not(HasSubstr("ssh_host_")));
  EXPECT_THAT(debugfs("cat /etc/systemd/network/80-kiln-dhcp.network"), HasSubstr("DHCP=yes"));
}

TEST(BakeDebian, CapabilitiesSurviveTheStreamIntoExt4) {
  EXPECT_THAT(debugfs("ea_list /usr/bin/ping"), HasSubstr("security.capability"));
}

TEST(BakeDebian, RebakeWithoutCacheIsByteIdentical) {
  auto again = kDir / "rebake";
  auto result = run_kiln({"bake", KILN_SOURCE_DIR "/recipes/debian-12-minimal.toml", "-o", again.string(), "--no-cache"},
                         {"SOURCE_DATE_EPOCH=1700000000"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(sha256(again / "disk.raw"), sha256(kImage / "disk.raw"));
}

TEST(BakeDebian, HostnameChangeReusesTheCachedBootstrap) {
  auto renamed = kDir / "renamed";
  auto result = run_kiln({"bake", KILN_SOURCE_DIR "/recipes/debian-12-minimal.toml", "-o", renamed.string(),
                          "--cache", (kDir / "cache").string(), "--set", "customize.hostname=web1", "--json"},
                         {"SOURCE_DATE_EPOCH=1700000000"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto summary = nlohmann::json::parse(result.out.substr(result.out.rfind("{\"artifacts\"")));
  EXPECT_EQ(summary["stages"][0]["name"], "bootstrap");
  EXPECT_EQ(summary["stages"][0]["cached"], true);
  EXPECT_EQ(debugfs("cat /etc/hostname", renamed), "web1\n");
}

TEST(BakeDebian, BootsToALoginPromptWithDirectKernelBoot) {
  auto log = kDir / "direct-boot.log";
  std::filesystem::remove(log);
  testing::GuestConsole guest({"qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "1024", "-nodefaults",
                               "-display", "none", "-kernel", (kImage / "vmlinuz").string(), "-initrd",
                               (kImage / "initrd.img").string(), "-append",
                               manifest()["image"]["kernel_cmdline"].get<std::string>(), "-drive",
                               "file=" + (kImage / "disk.raw").string() + ",format=raw,if=virtio,snapshot=on",
                               "-serial", "file:" + log.string()},
                              log);
  double seconds = guest.wait_for("debian login:", std::chrono::seconds(240));
  EXPECT_GT(seconds, 0) << testing::tail(guest.output());
  RecordProperty("seconds_to_login", std::to_string(seconds));
}

TEST(BakeDebian, DiskBootsUnderOvmfFirmware) {
  auto vars = kDir / "OVMF_VARS.fd";
  std::filesystem::copy_file("/usr/share/OVMF/OVMF_VARS_4M.fd", vars,
                             std::filesystem::copy_options::overwrite_existing);
  auto log = kDir / "uefi-boot.log";
  std::filesystem::remove(log);
  testing::GuestConsole guest(
      {"qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "1024", "-nodefaults", "-display", "none",
       "-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd", "-drive",
       "if=pflash,format=raw,file=" + vars.string(), "-drive",
       "file=" + (kImage / "disk.raw").string() + ",format=raw,if=virtio,snapshot=on", "-serial",
       "file:" + log.string()},
      log);
  double seconds = guest.wait_for("debian login:", std::chrono::seconds(300));
  EXPECT_GT(seconds, 0) << testing::tail(guest.output());
}

}  // namespace
}  // namespace kiln
