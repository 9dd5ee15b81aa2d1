// `kiln bake` with the storage layouts, on the small fake rootfs, read back
// with the real tools: lvm2 (pvs, vgs, lvs on a loop device), cryptsetup
// (luksDump, and `reencrypt --decrypt` of the data behind a header made for
// the same volume key), e2fsck, blkid. The lvm layout needs root for its
// loop device.
#include <unistd.h>

#include <optional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/sha.h>

#include "tests/builder/fake_rootfs.h"
#include "tests/test_support.h"
#include "tests/uml_guest.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ProcessResult;
using testing::read_text;
using testing::run_kiln;
using testing::run_program;
using testing::ScratchDir;
using testing::write_text;

constexpr const char* kPassphrase = "storage test passphrase";
constexpr uint64_t kMiB = 1 << 20;
constexpr const char* kNoUml = "user-mode-linux is not installed: the guest kernel's view of the image is not checked";

class StorageBakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "storage layouts change the image's initramfs in the image: root only";
    // The fake rootfs with some data for a volume of its own.
    auto tree = dir_ / "tree";
    std::filesystem::create_directories(tree);
    testing::write_fake_rootfs(dir_ / "fake.tar");
    ASSERT_EQ(run_program({"tar", "-C", tree.string(), "-xf", (dir_ / "fake.tar").string()}).exit_code, 0);
    write_text(tree / "srv/www/index.html", "served from its own volume\n");
    // What the storage layouts install and run in the image, already there:
    // the fake rootfs has no apt. update-initramfs records how it was called
    // and what crypttab it saw.
    write_text(tree / "var/lib/dpkg/status",
               read_text(tree / "var/lib/dpkg/status") +
                   "\nPackage: lvm2\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.03.16-2\n"
                   "\nPackage: cryptsetup-initramfs\nStatus: install ok installed\nArchitecture: all\n"
                   "Version: 2:2.6.1-4~deb12u2\n");
    write_text(tree / "usr/sbin/update-initramfs",
               "#!/bin/sh\necho \"$@\" > /boot/update-initramfs.args\ncat /etc/crypttab >> /boot/update-initramfs.args "
               "2>/dev/null\nexit 0\n");
    std::filesystem::permissions(tree / "usr/sbin/update-initramfs", std::filesystem::perms(0755));
    ASSERT_EQ(run_program({"tar", "-C", tree.string(), "--numeric-owner", "-cf", (dir_ / "rootfs.tar").string(), "."})
                  .exit_code,
              0);
    write_text(dir_ / "demo.passphrase", std::string(kPassphrase) + "\n");
    // cryptsetup's --key-file takes the whole file: the passphrase as typed.
    write_text(dir_ / "typed", kPassphrase);
  }

  std::string recipe(const std::string& storage, const std::string& formats = "") {
    std::string path = (dir_ / "storage.toml").string();
    write_text(path, "[image]\nname = \"store\"\n[bootstrap]\nfrom = \"rootfs.tar\"\n" + storage +
                         "[customize]\nhostname = \"sealed\"\n" +
                         (formats.empty() ? "" : "[output]\nformats = " + formats + "\n"));
    return path;
  }

  ProcessResult bake(const std::string& recipe_path, std::vector<std::string> more = {}) {
    std::vector<std::string> args = {"bake", recipe_path, "-o", out_.string(), "--cache", (dir_ / "cache").string()};
    args.insert(args.end(), more.begin(), more.end());
    return run_kiln(args, {"SOURCE_DATE_EPOCH=1700000000"});
  }

  nlohmann::json manifest() { return nlohmann::json::parse(read_text(out_ / "manifest.json")); }

  std::string debugfs(const std::filesystem::path& image, const std::string& request) {
    return run_program({"debugfs", "-R", request, image.string()}).out;
  }

  // The filesystem (or physical volume) inside an encrypted container, as
  // cryptsetup decrypts it: the volume key from the real header, then
  // `reencrypt --decrypt` of the data behind a detached header made for that
  // key (cryptsetup 2.6 decrypts only detached headers with data offset 0).
  std::filesystem::path decrypt(const std::filesystem::path& container, const std::string& cipher, int key_bits,
                                int sector_size, uint64_t data_offset, const std::string& volume_key_file = "") {
    std::string vk = volume_key_file;
    if (vk.empty()) {
      vk = (dir_ / "volume.key").string();
      std::filesystem::remove(vk);
      auto dumped = run_program({"cryptsetup", "luksDump", "--dump-volume-key", "--volume-key-file", vk, "-q",
                                 "--key-file", (dir_ / "typed").string(), container.string()});
      EXPECT_EQ(dumped.exit_code, 0) << dumped.err;
    }
    auto data = dir_ / "decrypted.img";
    run_program({"dd", "if=" + container.string(), "of=" + data.string(), "bs=1M",
                 "skip=" + std::to_string(data_offset / kMiB), "conv=sparse", "status=none"});
    std::filesystem::remove(dir_ / "detached.hdr");
    auto header = run_program({"cryptsetup", "luksFormat", "-q", "--type", "luks2", "--header",
                               (dir_ / "detached.hdr").string(), "--volume-key-file", vk, "--cipher", cipher,
                               "--key-size", std::to_string(key_bits), "--sector-size", std::to_string(sector_size),
                               "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file",
                               (dir_ / "typed").string(), data.string()});
    EXPECT_EQ(header.exit_code, 0) << header.err;
    auto decrypted = run_program({"cryptsetup", "reencrypt", "--decrypt", "-q", "--force-offline-reencrypt",
                                  "--header", (dir_ / "detached.hdr").string(), "--key-file",
                                  (dir_ / "typed").string(), data.string()});
    EXPECT_EQ(decrypted.exit_code, 0) << decrypted.err;
    return data;
  }

  // lvm2's own report on the physical volume at `offset` of `image`, from a
  // loop device and a private configuration.
  std::string lvm_report(const std::filesystem::path& image, uint64_t offset, const std::vector<std::string>& args) {
    auto attached = run_program({"losetup", "--find", "--show", "--read-only", "--offset", std::to_string(offset),
                                 image.string()});
    EXPECT_EQ(attached.exit_code, 0) << attached.err;
    std::string loop = attached.out.substr(0, attached.out.find('\n'));
    write_text(dir_ / "lvm/lvm.conf", "devices { filter = [ \"a|^" + loop + "$|\", \"r|.*|\" ] use_devicesfile = 0 "
                                      "hints = \"none\" obtain_device_list_from_udev = 0 }\nglobal { locking_dir = \"" +
                                          (dir_ / "lvm").string() + "\" notify_dbus = 0 }\nbackup { backup = 0 "
                                          "archive = 0 }\n");
    std::vector<std::string> argv = {"lvm"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto report = run_program(argv, {"LVM_SYSTEM_DIR=" + (dir_ / "lvm").string(), "LVM_SUPPRESS_FD_WARNINGS=1"});
    run_program({"losetup", "-d", loop});
    EXPECT_EQ(report.exit_code, 0) << report.err;
    return report.out;
  }

  // Runs `script` in a UML guest with `disks` and returns what it printed;
  // nullopt where UML is not installed (the caller skips, visibly). A guest
  // that does not reach the script's end is a failure. An lvm2
  // configuration for the guest (the host's is not read) is in
  // $LVM_SYSTEM_DIR.
  std::optional<std::string> in_kernel(const std::vector<std::filesystem::path>& disks, const std::string& script) {
    write_text(dir_ / "uml-lvm/lvm.conf",
               "devices { filter = [ \"a|^/dev/ubd|\", \"a|^/dev/mapper/crypt|\", \"r|.*|\" ] use_devicesfile = 0 hints = \"none\" "
               "obtain_device_list_from_udev = 0 }\nglobal { locking_dir = \"/run\" notify_dbus = 0 }\n"
               "activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }\nbackup { backup = 0 archive = 0 }\n");
    auto run = testing::run_in_uml(dir_.path(), disks,
                                   "export LVM_SYSTEM_DIR=" + (dir_ / "uml-lvm").string() + "\n" + script);
    if (!run.available) return std::nullopt;
    EXPECT_TRUE(run.finished) << "the UML guest did not finish its script:\n" << run.console;
    return run.console;
  }

  void expect_no_passphrase_in_outputs() {
    for (const auto& file : testing::list_tree(out_))
      EXPECT_EQ(read_text(out_ / file).find(kPassphrase), std::string::npos) << file;
  }

  ScratchDir dir_;
  std::filesystem::path out_ = dir_ / "out";
};

constexpr const char* kLvmStorage = R"([storage]
size = "512M"
layout = "lvm"
[storage.lvm]
vg = "vg-kiln"
[[storage.lvm.volumes]]
name = "root"
size = "rest"
mountpoint = "/"
[[storage.lvm.volumes]]
name = "swap"
size = "64M"
filesystem = "swap"
[[storage.lvm.volumes]]
name = "srv"
size = "30M"
filesystem = "ext3"
mountpoint = "/srv"
label = "data"
)";

TEST_F(StorageBakeTest, LvmLayoutHasTheRecipesVolumesEachWithItsFiles) {
  auto result = bake(recipe(kLvmStorage));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(testing::list_tree(out_), ElementsAre("disk.raw", "initrd.img", "manifest.json", "root.img", "srv.img",
                                                    "store.libvirt.xml", "store.xl.cfg", "swap.img", "vmlinuz"));
  auto m = manifest();
  const auto& storage = m["storage"];
  EXPECT_EQ(storage["layout"], "lvm");
  EXPECT_EQ(storage["lvm"]["vg"], "vg-kiln");
  EXPECT_EQ(storage["root_device"], "/dev/mapper/vg--kiln-root");
  EXPECT_THAT(m["image"]["kernel_cmdline"].get<std::string>(), HasSubstr("root=/dev/mapper/vg--kiln-root ro"));
  uint64_t partition = 0;
  for (const auto& p : m["image"]["partitions"])
    if (p["name"] == "root") {
      partition = p["offset"];
      EXPECT_EQ(p["type"], "E6D6D379-F507-44C2-A23C-238F2A3DF928");  // Linux LVM
    }

  // lvm2 reads back the recipe's volume group and volumes, at their sizes.
  std::string lvs = lvm_report(out_ / "disk.raw", partition,
                               {"lvs", "--noheadings", "--separator", ",", "--units", "b", "--nosuffix", "-o",
                                "vg_name,lv_name,lv_size"});
  EXPECT_THAT(lvs, HasSubstr("vg-kiln,swap,67108864"));
  EXPECT_THAT(lvs, HasSubstr("vg-kiln,srv,33554432"));  // 30M in whole 4 MiB extents
  EXPECT_THAT(lvs, HasSubstr("vg-kiln,root,"));
  std::string vgs = lvm_report(out_ / "disk.raw", partition,
                               {"vgs", "--noheadings", "--separator", ",", "-o", "vg_name,pv_count,lv_count"});
  EXPECT_THAT(vgs, HasSubstr("vg-kiln,1,3"));

  // Each volume is its own filesystem, clean, holding its part of the tree.
  for (const char* image : {"root.img", "srv.img"}) {
    auto fsck = run_program({"e2fsck", "-fn", (out_ / image).string()});
    EXPECT_EQ(fsck.exit_code, 0) << image << fsck.out;
  }
  EXPECT_EQ(debugfs(out_ / "srv.img", "cat /www/index.html"), "served from its own volume\n");
  EXPECT_THAT(debugfs(out_ / "root.img", "ls -l /srv"), Not(HasSubstr("www")));
  EXPECT_EQ(debugfs(out_ / "root.img", "cat /etc/hostname"), "sealed\n");
  EXPECT_THAT(run_program({"blkid", "-o", "export", (out_ / "srv.img").string()}).out, HasSubstr("LABEL=data"));
  auto swap = run_program({"blkid", "-o", "export", (out_ / "swap.img").string()}).out;
  EXPECT_THAT(swap, HasSubstr("TYPE=swap"));
  std::string fstab = debugfs(out_ / "root.img", "cat /etc/fstab");
  for (const auto& volume : storage["volumes"]) {
    std::string uuid = volume["uuid"];
    EXPECT_THAT(fstab, HasSubstr("UUID=" + uuid)) << volume;
  }
  EXPECT_THAT(fstab, HasSubstr("\t/srv\text3\tdefaults\t0\t2\n"));
  EXPECT_THAT(fstab, HasSubstr("\tnone\tswap\tsw\t0\t0\n"));
  // The volumes inside disk.raw are the partition images, byte for byte.
  for (const auto& volume : storage["volumes"]) {
    std::string name = volume["name"];
    auto cmp = run_program({"cmp", "-n", std::to_string(volume["size"].get<uint64_t>()),
                            "-i", std::to_string(partition + volume["offset"].get<uint64_t>()) + ":0",
                            (out_ / "disk.raw").string(), (out_ / (name + ".img")).string()});
    EXPECT_EQ(cmp.exit_code, 0) << name << cmp.out;
  }
  // Xen sees the Xen-era layout: one file per partition, root first.
  std::string xl = read_text(out_ / "store.xl.cfg");
  EXPECT_THAT(xl, HasSubstr("/out/root.img,xvda1,w'"));
  EXPECT_THAT(xl, HasSubstr("/out/swap.img,xvda2,w'"));
  EXPECT_THAT(xl, HasSubstr("/out/srv.img,xvda3,w'"));
  EXPECT_THAT(xl, HasSubstr("root = \"/dev/xvda1 ro\""));
  // The image's initramfs was rebuilt for LVM.
  EXPECT_THAT(debugfs(out_ / "root.img", "cat /boot/update-initramfs.args"), HasSubstr("-u -k all\n"));
  EXPECT_EQ(run_program({"losetup", "-j", (out_ / "disk.raw").string()}).out, "");

  // A real kernel activates the volume group from the partition.
  auto kernel = in_kernel({out_ / "disk.raw"},
                                 "lvm vgchange -ay vg-kiln; e2fsck -fn /dev/mapper/vg--kiln-root >/dev/null && "
                                 "echo ROOT-CLEAN; e2fsck -fn /dev/mapper/vg--kiln-srv >/dev/null && echo SRV-CLEAN; "
                                 "blkid /dev/mapper/vg--kiln-swap");
  if (!kernel) GTEST_SKIP() << kNoUml;
  EXPECT_THAT(*kernel, HasSubstr("3 logical volume(s) in volume group \"vg-kiln\" now active"));
  EXPECT_THAT(*kernel, HasSubstr("ROOT-CLEAN"));
  EXPECT_THAT(*kernel, HasSubstr("SRV-CLEAN"));
  EXPECT_THAT(*kernel, HasSubstr("TYPE=\"swap\""));
}

TEST_F(StorageBakeTest, LuksRootDecryptsToACleanFilesystem) {
  auto result = bake(recipe(R"([storage]
size = "256M"
[storage.luks]
passphrase_file = "demo.passphrase"
pbkdf = "pbkdf2"
pbkdf_iterations = 1000
label = "sealed-root"
)"), {"--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out + result.err, Not(HasSubstr(kPassphrase)));
  expect_no_passphrase_in_outputs();
  // Nothing of the filesystem reads without the key: neither a file in use
  // nor one the bake deleted (the ssh host key), though kiln encrypts in place.
  for (const char* plaintext : {"# skel profile", "Written by kiln from the recipe", "PRIVATE KEY"})
    for (const char* file : {"disk.raw", "root.img"})
      EXPECT_EQ(run_program({"grep", "-q", "-F", "-a", plaintext, (out_ / file).string()}).exit_code, 1)
          << plaintext << " in " << file;
  auto m = manifest();
  const auto& encryption = m["storage"]["encryption"];
  EXPECT_EQ(encryption["type"], "luks2");
  EXPECT_EQ(encryption["method"], "kiln");
  EXPECT_EQ(encryption["keyslots"], 1);
  uint64_t data_offset = encryption["data_offset"];
  EXPECT_EQ(data_offset, 16 * kMiB);
  // Only the blocks in use were encrypted: far less than the partition.
  EXPECT_LT(encryption["encrypted_bytes"].get<uint64_t>(), 64 * kMiB);

  auto dump = run_program({"cryptsetup", "luksDump", (out_ / "root.img").string()});
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  EXPECT_THAT(dump.out, HasSubstr("Version:       \t2"));
  EXPECT_THAT(dump.out, HasSubstr("Label:         \tsealed-root"));
  EXPECT_THAT(dump.out, HasSubstr("UUID:          \t" + encryption["uuid"].get<std::string>()));
  EXPECT_THAT(dump.out, HasSubstr("cipher: aes-xts-plain64"));
  EXPECT_THAT(dump.out, HasSubstr("  0: luks2"));
  EXPECT_THAT(dump.out, Not(HasSubstr("  1: luks2")));
  EXPECT_EQ(run_program({"cryptsetup", "open", "--test-passphrase", "--key-file", (dir_ / "typed").string(),
                         (out_ / "root.img").string()})
                .exit_code,
            0);
  auto sfdisk = run_program({"sfdisk", "--dump", (out_ / "disk.raw").string()});
  EXPECT_THAT(sfdisk.out, HasSubstr("type=CA7D7CCB-63ED-4C53-861C-1742536059CC"));  // Linux LUKS

  auto plain = decrypt(out_ / "root.img", "aes-xts-plain64", 512, 4096, data_offset);
  auto fsck = run_program({"e2fsck", "-fn", plain.string()});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out;
  EXPECT_EQ(debugfs(plain, "cat /etc/hostname"), "sealed\n");
  EXPECT_EQ(debugfs(plain, "cat /etc/crypttab"),
            "# <target name>\t<source device>\t<key file>\t<options>\n# Written by kiln from the recipe's "
            "[storage].\ncryptroot\tUUID=" +
                encryption["uuid"].get<std::string>() + "\tnone\tluks,initramfs\n");
  EXPECT_THAT(run_program({"blkid", "-o", "export", plain.string()}).out,
              HasSubstr("UUID=" + m["image"]["root_filesystem"]["uuid"].get<std::string>()));
  // The initramfs was rebuilt once crypttab was in place.
  EXPECT_THAT(debugfs(plain, "cat /boot/update-initramfs.args"),
              HasSubstr("-u -k all\n# <target name>\t<source device>\t<key file>\t<options>\n"));
  EXPECT_THAT(m["image"]["kernel_cmdline"].get<std::string>(),
              HasSubstr("root=UUID=" + m["image"]["root_filesystem"]["uuid"].get<std::string>() + " ro"));
  // The staging file and the scratch header are gone.
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path()))
    EXPECT_FALSE(entry.path().filename().string().starts_with(".")) << entry.path();
}

TEST_F(StorageBakeTest, Luks1WithAKeyFileTakesTwoKeyslots) {
  write_text(dir_ / "secret.key", std::string("\x01\x02binary key\n\x00\xff", 16));
  auto result = bake(recipe(R"([storage]
size = "160M"
[storage.luks]
version = "luks1"
cipher = "aes-cbc-essiv:sha256"
passphrase_file = "demo.passphrase"
key_file = "secret.key"
pbkdf_iterations = 1000
)", "[\"disk\", \"partitions\"]"));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto dump = run_program({"cryptsetup", "luksDump", (out_ / "root.img").string()});
  EXPECT_THAT(dump.out, HasSubstr("Version:       \t1"));
  EXPECT_THAT(dump.out, HasSubstr("Cipher mode:   \tcbc-essiv:sha256"));
  EXPECT_THAT(dump.out, HasSubstr("Key Slot 0: ENABLED"));
  EXPECT_THAT(dump.out, HasSubstr("Key Slot 1: ENABLED"));
  EXPECT_EQ(run_program({"cryptsetup", "open", "--test-passphrase", "--key-file", (dir_ / "secret.key").string(),
                         (out_ / "root.img").string()})
                .exit_code,
            0);
  auto plain = decrypt(out_ / "root.img", "aes-cbc-essiv:sha256", 256, 512,
                       manifest()["storage"]["encryption"]["data_offset"]);
  EXPECT_EQ(run_program({"e2fsck", "-fn", plain.string()}).exit_code, 0);
  EXPECT_EQ(debugfs(plain, "cat /etc/hostname"), "sealed\n");
  // The kernel's dm-crypt opens it with the key file.
  auto kernel = in_kernel({out_ / "root.img"}, "cryptsetup open --readonly --key-file " +
                                                          (dir_ / "secret.key").string() +
                                                          " /dev/ubda r && e2fsck -fn /dev/mapper/r >/dev/null && "
                                                          "echo KERNEL-CLEAN");
  if (!kernel) GTEST_SKIP() << kNoUml;
  EXPECT_THAT(*kernel, HasSubstr("KERNEL-CLEAN")) << *kernel;
}

TEST_F(StorageBakeTest, LvmOnLuksDecryptsToTheVolumeGroup) {
  auto result = bake(recipe(std::string(kLvmStorage) + R"([storage.luks]
passphrase_file = "demo.passphrase"
pbkdf = "argon2id"
pbkdf_iterations = 4
pbkdf_memory = "32M"
)"));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto m = manifest();
  // One encrypted container as the partition image, holding the PV.
  EXPECT_THAT(testing::list_tree(out_), Not(::testing::Contains("srv.img")));
  EXPECT_THAT(run_program({"cryptsetup", "luksDump", (out_ / "root.img").string()}).out,
              HasSubstr("PBKDF:      argon2id"));
  auto plain = decrypt(out_ / "root.img", "aes-xts-plain64", 512, 4096, m["storage"]["encryption"]["data_offset"]);
  std::string lvs = lvm_report(plain, 0, {"lvs", "--noheadings", "--separator", ",", "-o", "vg_name,lv_name"});
  EXPECT_THAT(lvs, HasSubstr("vg-kiln,root"));
  EXPECT_THAT(lvs, HasSubstr("vg-kiln,srv"));
  for (const auto& volume : m["storage"]["volumes"]) {
    if (volume["filesystem"] == "swap") continue;
    auto fs = dir_ / "volume.img";
    run_program({"dd", "if=" + plain.string(), "of=" + fs.string(), "bs=1M",
                 "skip=" + std::to_string(volume["offset"].get<uint64_t>() / kMiB),
                 "count=" + std::to_string(volume["size"].get<uint64_t>() / kMiB), "conv=sparse", "status=none"});
    auto fsck = run_program({"e2fsck", "-fn", fs.string()});
    EXPECT_EQ(fsck.exit_code, 0) << volume << fsck.out;
  }
  EXPECT_THAT(read_text(out_ / "store.xl.cfg"), HasSubstr("root = \"/dev/mapper/vg--kiln-root ro\""));
  // As the guest's initramfs does: unlock the partition of disk.raw (which
  // dm-crypt maps only in whole sectors), then activate the volume group.
  auto kernel = in_kernel({out_ / "disk.raw"}, "cryptsetup open --readonly --key-file " +
                                                          (dir_ / "typed").string() +
                                                          " /dev/ubda2 cryptroot && lvm vgchange -ay vg-kiln && "
                                                          "e2fsck -fn /dev/mapper/vg--kiln-root >/dev/null && "
                                                          "echo KERNEL-CLEAN");
  if (!kernel) GTEST_SKIP() << kNoUml;
  EXPECT_THAT(*kernel, HasSubstr("KERNEL-CLEAN")) << *kernel;
}

// cryptsetup's plain mode: the key is the passphrase hashed (sha256, then
// sha256 of "A" + passphrase for the second half of a 512-bit key).
TEST_F(StorageBakeTest, PlainDmCryptDecryptsWithTheHashedPassphrase) {
  auto result = bake(recipe(R"([storage]
size = "200M"
[storage.dmcrypt]
passphrase_file = "demo.passphrase"
)"));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  unsigned char key[64];
  std::string a = std::string("A") + kPassphrase;
  SHA256(reinterpret_cast<const unsigned char*>(kPassphrase), std::strlen(kPassphrase), key);
  SHA256(reinterpret_cast<const unsigned char*>(a.data()), a.size(), key + 32);
  write_text(dir_ / "plain.key", std::string(reinterpret_cast<char*>(key), 64));
  auto plain = decrypt(out_ / "root.img", "aes-xts-plain64", 512, 512, 0, (dir_ / "plain.key").string());
  EXPECT_EQ(run_program({"e2fsck", "-fn", plain.string()}).exit_code, 0);
  EXPECT_EQ(debugfs(plain, "cat /etc/hostname"), "sealed\n");
  auto m = manifest();
  std::string partuuid;
  for (const auto& p : m["image"]["partitions"])
    if (p["name"] == "root") partuuid = p["uuid"];
  EXPECT_THAT(debugfs(plain, "cat /etc/crypttab"),
              HasSubstr("cryptroot\tPARTUUID=" + partuuid + "\tnone\tplain,cipher=aes-xts-plain64,size=512,hash=sha256,initramfs\n"));
  // The kernel opens it as `cryptsetup create` would, from the typed passphrase.
  auto kernel = in_kernel({out_ / "root.img"}, "cryptsetup open --type plain --readonly --cipher aes-xts-plain64 "
                                                      "--key-size 512 --hash sha256 /dev/ubda r < " +
                                                          (dir_ / "typed").string() +
                                                          " && e2fsck -fn /dev/mapper/r >/dev/null && echo KERNEL-CLEAN");
  if (!kernel) GTEST_SKIP() << kNoUml;
  EXPECT_THAT(*kernel, HasSubstr("KERNEL-CLEAN")) << *kernel;
  expect_no_passphrase_in_outputs();
}

// A cipher kiln does not implement goes through libcryptsetup's reencryption.
TEST_F(StorageBakeTest, OtherCiphersGoThroughLibcryptsetup) {
  auto result = bake(recipe(R"([storage]
size = "160M"
[storage.luks]
cipher = "aes-cbc-benbi"
sector_size = 512
passphrase_file = "demo.passphrase"
pbkdf = "pbkdf2"
pbkdf_iterations = 1000
)", "[\"disk\", \"partitions\"]"));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto m = manifest();
  EXPECT_EQ(m["storage"]["encryption"]["method"], "libcryptsetup reencryption");
  auto plain = decrypt(out_ / "root.img", "aes-cbc-benbi", 256, 512, m["storage"]["encryption"]["data_offset"]);
  EXPECT_EQ(run_program({"e2fsck", "-fn", plain.string()}).exit_code, 0);
  EXPECT_EQ(debugfs(plain, "cat /etc/hostname"), "sealed\n");
}

TEST_F(StorageBakeTest, AMissingPassphraseFileIsABadRecipe) {
  auto result = bake(recipe("[storage.luks]\npassphrase_file = \"nowhere.passphrase\"\n"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("storage.toml:6:19: storage.luks.passphrase_file: "));
  EXPECT_THAT(result.err, HasSubstr("nowhere.passphrase: no such file"));
  EXPECT_FALSE(std::filesystem::exists(out_));
}

}  // namespace
}  // namespace kiln
