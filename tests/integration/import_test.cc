// `kiln import` for real: the default image as other tools would hand it
// over (converted to qcow2, vmdk and vhdx; rebuilt on an MBR disk with a
// separate /boot partition made with sfdisk and mke2fs; its root filesystem
// alone; its root filesystem in a jailtime-style bundle with a swap image
// and a Xen config), and kiln's LVM and LUKS images (the LUKS one opened
// with its passphrase), each imported and booted to ready with kiln exec
// answering; and what is refused (a truncated image, a disk with no root,
// an encrypted root without its passphrase), leaving nothing behind. The
// bundles kiln refuses are tests/cli/import_bundle_test.cc's; LVM and LUKS
// layouts kiln did not bake, tests/cli/import_volumes_test.cc's.
#include <chrono>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/root_filesystem.h"
#include "tests/integration/storage_images.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::read_text;
using testing::run_program;

const std::filesystem::path kImage = std::filesystem::path(KILN_INTEGRATION_DIR) / "default";

class ImportTest : public ::testing::Test {
 protected:
  std::vector<std::string> env() const {
    return {"KILN_RUNTIME_DIR=" + (dir_ / "run").string(), "KILN_STATE_DIR=" + (dir_ / "state").string()};
  }
  ProcessResult kiln(std::vector<std::string> args) const { return testing::run_kiln(args, env()); }
  ProcessResult import(const std::filesystem::path& disk, const std::string& out) {
    return kiln({"import", disk.string(), "-o", (dir_ / out).string(), "--json"});
  }
  nlohmann::json manifest(const std::string& out) const {
    return nlohmann::json::parse(read_text(dir_ / out / "manifest.json"));
  }
  // Boots the imported image and returns what `cat /etc/hostname; uname -r` says in it.
  std::string boot_and_ask(const std::string& out, std::vector<std::string> more = {}) {
    names_.push_back(out);
    std::vector<std::string> args = {"boot", (dir_ / out).string(), "--name", out, "--detach", "--wait-ready=300"};
    args.insert(args.end(), more.begin(), more.end());
    ProcessResult booted = kiln(args);
    EXPECT_EQ(booted.exit_code, 0) << booted.err;
    ProcessResult asked = kiln({"exec", out, "--", "sh", "-c", "cat /etc/hostname; uname -m"});
    EXPECT_EQ(asked.exit_code, 0) << asked.err;
    return asked.out;
  }
  ProcessResult run(std::vector<std::string> argv) {
    ProcessResult result = run_program(argv);
    EXPECT_EQ(result.exit_code, 0) << argv[0] << ": " << result.err;
    return result;
  }
  // What a failed import must not leave: an output, or its staging directory.
  std::vector<std::string> leftovers() const {
    std::vector<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path()))
      if (entry.path().filename().string().starts_with("out")) out.push_back(entry.path().filename().string());
    return out;
  }
  void TearDown() override {
    for (const std::string& name : names_) kiln({"destroy", name});
  }
  testing::ScratchDir dir_;
  std::vector<std::string> names_;
};

TEST_F(ImportTest, QcowVmdkAndVhdxCopiesOfABakedDiskImportAndBoot) {
  for (const std::string format : {"qcow2", "vmdk", "vhdx"}) {
    SCOPED_TRACE(format);
    std::filesystem::path disk = dir_ / ("vendor." + format);
    run({"qemu-img", "convert", "-O", format, (kImage / "disk.raw").string(), disk.string()});
    ProcessResult imported = import(disk, "out-" + format);
    ASSERT_EQ(imported.exit_code, 0) << imported.err;
    EXPECT_THAT(imported.out, HasSubstr("partition 2 (GPT type of an amd64 root)"));
    nlohmann::json m = manifest("out-" + format);
    EXPECT_EQ(m["imported"]["format"], format);
    EXPECT_EQ(m["imported"]["sha256"], run({"sha256sum", disk.string()}).out.substr(0, 64));
    EXPECT_EQ(m["image"]["architecture"], "amd64");
    EXPECT_EQ(m["image"]["layout"], "gpt");
    EXPECT_EQ(read_text(dir_ / ("out-" + format) / "vmlinuz"), read_text(kImage / "vmlinuz"));
    std::filesystem::remove(disk);
  }
  // The three imports hold the same disk, byte for byte, so one boot speaks
  // for all three (a boot is most of this test's time).
  const std::string imported = run({"sha256sum", (dir_ / "out-qcow2/disk.raw").string()}).out.substr(0, 64);
  for (const std::string format : {"vmdk", "vhdx"})
    EXPECT_EQ(run({"sha256sum", (dir_ / ("out-" + format) / "disk.raw").string()}).out.substr(0, 64), imported)
        << format;
  EXPECT_EQ(boot_and_ask("out-vhdx"), "out-vhdx\nx86_64\n");
}

// An installer's layout: MBR, /boot on partition 1 (ext2, the kernel at its
// top), the root on partition 2 with /boot empty and an fstab line for it.
TEST_F(ImportTest, AnMbrDiskWithASeparateBootPartitionImportsAndBoots) {
  const std::string version = nlohmann::json::parse(read_text(kImage / "manifest.json"))["image"]["kernel"];
  uint64_t root_offset = testing::root_filesystem_offset(kImage);
  uint64_t root_size = 0;
  const nlohmann::json baked = nlohmann::json::parse(read_text(kImage / "manifest.json"));
  for (const auto& partition : baked["image"]["partitions"])
    if (partition["name"] == "root") root_size = partition["size"];
  ASSERT_GT(root_size, 0u);
  std::filesystem::path disk = dir_ / "installer.img";
  const uint64_t boot_mib = 96, root_start_mib = 1 + boot_mib;
  run({"truncate", "-s", std::to_string((root_start_mib << 20) + root_size + (1 << 20)), disk.string()});
  run({"sh", "-c",
       fmt::format("printf 'start=2048, size={}, type=83\\nstart={}, size={}, type=83\\n' | sfdisk -q {}",
                   boot_mib * 2048, root_start_mib * 2048, root_size / 512, disk.string())});
  std::filesystem::create_directories(dir_ / "boot");
  run({"cp", (kImage / "vmlinuz").string(), (dir_ / "boot" / ("vmlinuz-" + version)).string()});
  run({"cp", (kImage / "initrd.img").string(), (dir_ / "boot" / ("initrd.img-" + version)).string()});
  run({"mke2fs", "-q", "-t", "ext2", "-U", "7a2b6c1e-0d3f-4e55-9a6b-0c1d2e3f4a5b", "-E", "offset=1048576", "-d",
       (dir_ / "boot").string(), disk.string(), std::to_string(boot_mib << 10) + "k"});
  run({"dd", "if=" + (kImage / "disk.raw").string(), "of=" + disk.string(), "bs=1M", "conv=notrunc,sparse",
       "iflag=skip_bytes,count_bytes", "oflag=seek_bytes", "skip=" + std::to_string(root_offset),
       "count=" + std::to_string(root_size), "seek=" + std::to_string(root_start_mib << 20), "status=none"});
  std::string root = disk.string() + "?offset=" + std::to_string(root_start_mib << 20);
  std::string fstab = run({"debugfs", "-R", "cat /etc/fstab", root}).out;
  testing::write_text(dir_ / "fstab", fstab + "UUID=7a2b6c1e-0d3f-4e55-9a6b-0c1d2e3f4a5b\t/boot\text2\tdefaults\t0\t2\n");
  run({"debugfs", "-w", "-R", "rm /boot/vmlinuz-" + version, root});
  run({"debugfs", "-w", "-R", "rm /boot/initrd.img-" + version, root});
  run({"debugfs", "-w", "-R", "rm /etc/fstab", root});
  run({"debugfs", "-w", "-R", "write " + (dir_ / "fstab").string() + " /etc/fstab", root});

  ProcessResult imported = import(disk, "out-mbr");
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(manifest("out-mbr")["image"]["layout"], "mbr");
  EXPECT_EQ(manifest("out-mbr")["image"]["kernel"], version);
  EXPECT_EQ(read_text(dir_ / "out-mbr/initrd.img"), read_text(kImage / "initrd.img"));
  EXPECT_EQ(boot_and_ask("out-mbr"), "out-mbr\nx86_64\n");
  ProcessResult boot = kiln({"exec", "out-mbr", "--", "sh", "-c", "ls /boot"});
  EXPECT_THAT(boot.out, HasSubstr("vmlinuz-" + version)) << "the boot partition is mounted on /boot";
}

TEST_F(ImportTest, ABareRootFilesystemImportsAsRootImgAndBoots) {
  std::filesystem::path fs = dir_ / "rootfs.ext4";
  uint64_t offset = testing::root_filesystem_offset(kImage);
  run({"dd", "if=" + (kImage / "disk.raw").string(), "of=" + fs.string(), "bs=1M", "conv=sparse",
       "iflag=skip_bytes", "skip=" + std::to_string(offset), "status=none"});
  ProcessResult imported = import(fs, "out-bare");
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("the whole disk (it has /etc/os-release)"));
  EXPECT_EQ(manifest("out-bare")["image"]["layout"], "plain");
  EXPECT_TRUE(std::filesystem::exists(dir_ / "out-bare/root.img"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out-bare/disk.raw"));
  EXPECT_EQ(boot_and_ask("out-bare"), "out-bare\nx86_64\n");
}

// A Xen-era bundle as jailtime.org handed them out: the root filesystem as
// debian-5.0.img (sda1), a swap image made by mkswap (sda2) and the domain's
// config, in one tar.bz2. Imported, it boots to ready as an image directory,
// and through the Xen config written beside it, with the swap as its second
// disk, which the guest's swapon takes.
TEST_F(ImportTest, AJailtimeBundleImportsAndBootsWithItsSwap) {
  const std::filesystem::path bundle = dir_ / "bundle/debian-5.0";
  std::filesystem::create_directories(bundle);
  uint64_t offset = testing::root_filesystem_offset(kImage);
  run({"dd", "if=" + (kImage / "disk.raw").string(), "of=" + (bundle / "debian-5.0.img").string(), "bs=1M",
       "conv=sparse", "iflag=skip_bytes", "skip=" + std::to_string(offset), "status=none"});
  run({"truncate", "-s", "64M", (bundle / "debian-5.0.swap").string()});
  run({"mkswap", "-q", (bundle / "debian-5.0.swap").string()});
  std::string swap_uuid = run({"blkid", "-s", "UUID", "-o", "value", (bundle / "debian-5.0.swap").string()}).out;
  swap_uuid.erase(swap_uuid.find_last_not_of("\n") + 1);
  testing::write_text(bundle / "debian-5.0.xen.cfg",
                      "kernel = \"/boot/vmlinuz-2.6.26-2-xen-amd64\"\n"
                      "ramdisk = \"/boot/initrd.img-2.6.26-2-xen-amd64\"\n"
                      "memory = 384\n"
                      "name = \"debian\"\n"
                      "vif = [ '' ]\n"
                      "disk = ['file:/xen/domains/debian/debian-5.0.img,sda1,w',\n"
                      "        'file:/xen/domains/debian/debian-5.0.swap,sda2,w']\n"
                      "root = \"/dev/sda1 ro\"\n");
  const std::filesystem::path tarball = dir_ / "debian-5.0.tar.bz2";
  run({"tar", "-cSjf", tarball.string(), "-C", (dir_ / "bundle").string(), "debian-5.0"});
  std::filesystem::remove_all(dir_ / "bundle");

  ProcessResult imported = import(tarball, "out-jail");
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("sda1 (debian-5.0/debian-5.0.img), which root=/dev/sda1 names"));
  std::string last_line = imported.out.substr(imported.out.rfind('\n', imported.out.size() - 2) + 1);
  auto result = nlohmann::json::parse(last_line);
  RecordProperty("import_seconds", fmt::format("{:.1f}", result["seconds"].get<double>()));
  nlohmann::json m = manifest("out-jail");
  EXPECT_EQ(m["image"]["memory_mib"], 384);
  EXPECT_EQ(m["image"]["layout"], "plain");
  EXPECT_EQ(m["imported"]["config"], "debian-5.0/debian-5.0.xen.cfg");
  EXPECT_EQ(m["imported"]["sha256"], run({"sha256sum", tarball.string()}).out.substr(0, 64));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "out-jail/swap.img"));

  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(boot_and_ask("out-jail"), "out-jail\nx86_64\n");
  std::chrono::duration<double> ready = std::chrono::steady_clock::now() - started;
  RecordProperty("ready_seconds", fmt::format("{:.1f}", ready.count()));
  ProcessResult memory = kiln({"exec", "out-jail", "--", "sh", "-c", "grep MemTotal /proc/meminfo"});
  EXPECT_THAT(memory.out, ::testing::ContainsRegex("MemTotal: +3[0-9][0-9][0-9][0-9][0-9] kB"))
      << "the config's 384 MiB";
  kiln({"destroy", "out-jail"});
  names_.clear();

  names_.push_back("jail-swap");
  ProcessResult booted = kiln({"boot", (dir_ / "out-jail/debian.xl.cfg").string(), "--name", "jail-swap",
                               "--detach", "--wait-ready=300"});
  ASSERT_EQ(booted.exit_code, 0) << booted.err;
  // The second disk: /dev/vdb under qemu, /dev/ubdb under UML.
  ProcessResult swap =
      kiln({"exec", "jail-swap", "--", "sh", "-c", "swapon UUID=" + swap_uuid + " && cat /proc/swaps"});
  EXPECT_EQ(swap.exit_code, 0) << swap.err;
  EXPECT_THAT(swap.out, ::testing::ContainsRegex("/dev/(vdb|ubdb)[[:space:]]+partition[[:space:]]+65532"));
}

// kiln's own LVM image as a vendor would hand it over (qcow2): the root is
// found in its logical volume, and boots with the image's initramfs
// activating the volume group.
TEST_F(ImportTest, ARootOnLvmImportsAndBootsFromItsLogicalVolume) {
  std::filesystem::path disk = dir_ / "lvm.qcow2";
  run({"qemu-img", "convert", "-O", "qcow2", (testing::baked_storage_image("lvm") / "disk.raw").string(),
       disk.string()});
  ProcessResult imported = import(disk, "out-lvm");
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("logical volume vg0/root on partition 2"));
  EXPECT_EQ(manifest("out-lvm")["image"]["root_device"], "/dev/mapper/vg0-root");
  EXPECT_EQ(boot_and_ask("out-lvm"), "out-lvm\nx86_64\n");
  EXPECT_EQ(kiln({"exec", "out-lvm", "--", "findmnt", "-no", "SOURCE", "/"}).out, "/dev/mapper/vg0-root\n");
}

// kiln's own LUKS image: refused without the passphrase, opened with it;
// the output stays encrypted, and boots when the same passphrase is typed.
TEST_F(ImportTest, AnEncryptedRootImportsWithItsPassphraseAndBootsUnlocked) {
  std::filesystem::path disk = testing::baked_storage_image("luks") / "disk.raw";
  const std::string passphrase = testing::source_path("recipes/demo.passphrase").string();
  ProcessResult locked = import(disk, "out-locked");
  EXPECT_EQ(locked.exit_code, 2);
  EXPECT_THAT(locked.err, HasSubstr("give --luks-passphrase-file to look inside"));
  EXPECT_THAT(leftovers(), ::testing::IsEmpty());
  ProcessResult imported = kiln({"import", disk.string(), "-o", (dir_ / "out-luks").string(),
                                 "--luks-passphrase-file", passphrase});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("root: the LUKS volume on partition 2"));
  EXPECT_EQ(manifest("out-luks")["storage"]["encryption"]["name"], "cryptroot");
  EXPECT_EQ(boot_and_ask("out-luks", {"--luks-passphrase-file", passphrase}), "out-luks\nx86_64\n");
  EXPECT_EQ(kiln({"exec", "out-luks", "--", "findmnt", "-no", "SOURCE", "/"}).out, "/dev/mapper/cryptroot\n");
}

// A disk from elsewhere, imported once, then baked from like a bootstrap:
// a recipe's bootstrap.from names the imported directory, its root is
// exported in place and customised (a package from the mirror, a file),
// and what the vendor's root held survives the trip (ping's file
// capability, an xattr; passwd's setuid bit).
TEST_F(ImportTest, ARecipeBakesFromAnImportedImageAndItBoots) {
  std::filesystem::path disk = dir_ / "vendor.qcow2";
  run({"qemu-img", "convert", "-O", "qcow2", (kImage / "disk.raw").string(), disk.string()});
  ASSERT_EQ(import(disk, "vendor").exit_code, 0);
  testing::write_text(dir_ / "rebake.toml", R"([image]
name = "rebaked"
version = "1.0"
[bootstrap]
from = "vendor"
[customize]
hostname = "rebaked"
packages = ["hello"]
[[customize.files]]
path = "/etc/rebaked"
content = "from the vendor's disk\n"
[output]
formats = ["disk", "kernel"]
)");
  ProcessResult baked = kiln({"bake", (dir_ / "rebake.toml").string(), "-o", (dir_ / "out-rebaked").string(),
                              "--cache", (dir_ / "cache").string()});
  ASSERT_EQ(baked.exit_code, 0) << baked.err;
  EXPECT_EQ(boot_and_ask("out-rebaked"), "out-rebaked\nx86_64\n");
  ProcessResult inside = kiln({"exec", "out-rebaked", "--", "sh", "-c",
                               "hello; cat /etc/rebaked; getcap /usr/bin/ping; stat -c %a /usr/bin/passwd"});
  EXPECT_EQ(inside.exit_code, 0) << inside.err;
  EXPECT_EQ(inside.out, "Hello, world!\nfrom the vendor's disk\n/usr/bin/ping cap_net_raw=ep\n4755\n");
}

TEST_F(ImportTest, ATruncatedImageIsRefusedAndLeavesNothing) {
  std::filesystem::path disk = dir_ / "cut.qcow2";
  run({"qemu-img", "convert", "-O", "qcow2", (kImage / "disk.raw").string(), disk.string()});
  std::filesystem::resize_file(disk, std::filesystem::file_size(disk) / 2);
  ProcessResult imported = import(disk, "out-cut");
  EXPECT_NE(imported.exit_code, 0);
  EXPECT_THAT(imported.err, HasSubstr(disk.string()));
  EXPECT_THAT(leftovers(), ::testing::IsEmpty());
}

TEST_F(ImportTest, ADiskWithoutARootIsRefusedWithWhatItHas) {
  std::filesystem::path disk = dir_ / "data.img";
  run({"truncate", "-s", "64M", disk.string()});
  run({"mke2fs", "-q", "-t", "ext4", disk.string()});
  ProcessResult imported = import(disk, "out-data");
  EXPECT_NE(imported.exit_code, 0);
  EXPECT_THAT(imported.err, HasSubstr("no root filesystem in it (ext2, ext3 or ext4 with /etc/os-release)"));
  EXPECT_THAT(imported.err, HasSubstr("the whole disk: ext4"));
  EXPECT_THAT(leftovers(), ::testing::IsEmpty());
  EXPECT_NE(import(dir_ / "missing.qcow2", "out-missing").exit_code, 0);
}

}  // namespace
}  // namespace kiln
