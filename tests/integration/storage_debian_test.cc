// recipes/debian-12-luks.toml and recipes/debian-12-lvm.toml baked for real
// (tests/integration/storage_images.h),
// read back with the real tools and booted under qemu without KVM: the LUKS
// image decrypts (cryptsetup) to a clean filesystem, and `kiln boot` unlocks
// it by answering its passphrase prompt on the serial console; the LVM image
// has the recipe's volumes (lvm2) and boots with its root on LVM.
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/storage_images.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::read_text;
using testing::run_kiln;
using testing::run_program;
using testing::tail;
using testing::write_text;

const std::filesystem::path kDir = KILN_INTEGRATION_DIR;
constexpr uint64_t kMiB = 1 << 20;

std::filesystem::path baked(const std::string& name) { return testing::baked_storage_image(name); }

nlohmann::json manifest(const std::filesystem::path& image) {
  return nlohmann::json::parse(read_text(image / "manifest.json"));
}

std::string debugfs(const std::filesystem::path& fs, const std::string& request) {
  return run_program({"debugfs", "-R", request, fs.string()}).out;
}

// cryptsetup takes key files whole: the demo passphrase without its newline.
std::filesystem::path typed_passphrase() {
  std::string line = read_text(testing::source_path("recipes/demo.passphrase"));
  auto path = kDir / "demo.typed";
  write_text(path, line.substr(0, line.find('\n')));
  return path;
}

// What cryptsetup decrypts the container to (see tests/cli/storage_bake_test.cc
// for why through a detached header of the same volume key).
std::filesystem::path decrypt(const std::filesystem::path& container, const nlohmann::json& encryption) {
  auto key = typed_passphrase();
  auto vk = kDir / "volume.key";
  std::filesystem::remove(vk);
  auto dumped = run_program({"cryptsetup", "luksDump", "--dump-volume-key", "--volume-key-file", vk.string(), "-q",
                             "--key-file", key.string(), container.string()});
  EXPECT_EQ(dumped.exit_code, 0) << dumped.err;
  auto data = kDir / "decrypted.img";
  run_program({"dd", "if=" + container.string(), "of=" + data.string(), "bs=1M",
               "skip=" + std::to_string(encryption["data_offset"].get<uint64_t>() / kMiB), "conv=sparse",
               "status=none"});
  auto header = kDir / "detached.hdr";
  std::filesystem::remove(header);
  auto formatted = run_program({"cryptsetup", "luksFormat", "-q", "--type", "luks2", "--header", header.string(),
                                "--volume-key-file", vk.string(), "--cipher", encryption["cipher"], "--key-size",
                                std::to_string(encryption["key_bits"].get<int>()), "--sector-size",
                                std::to_string(encryption["sector_size"].get<int>()), "--pbkdf", "pbkdf2",
                                "--pbkdf-force-iterations", "1000", "--key-file", key.string(), data.string()});
  EXPECT_EQ(formatted.exit_code, 0) << formatted.err;
  auto decrypted = run_program({"cryptsetup", "reencrypt", "--decrypt", "-q", "--force-offline-reencrypt", "--header",
                                header.string(), "--key-file", key.string(), data.string()});
  EXPECT_EQ(decrypted.exit_code, 0) << decrypted.err;
  std::filesystem::remove(vk);
  return data;
}

TEST(StorageDebian, LuksHeaderAndDecryptedFilesystem) {
  auto image = baked("luks");
  auto m = manifest(image);
  const auto& encryption = m["storage"]["encryption"];
  auto dump = run_program({"cryptsetup", "luksDump", (image / "root.img").string()});
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  EXPECT_THAT(dump.out, HasSubstr("Version:       \t2"));
  EXPECT_THAT(dump.out, HasSubstr("Label:         \tdebian-root"));
  EXPECT_THAT(dump.out, HasSubstr("cipher: aes-xts-plain64"));
  EXPECT_THAT(dump.out, HasSubstr("  0: luks2"));
  EXPECT_THAT(dump.out, HasSubstr("PBKDF:      argon2id"));
  auto plain = decrypt(image / "root.img", encryption);
  auto fsck = run_program({"e2fsck", "-fn", plain.string()});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out;
  EXPECT_EQ(debugfs(plain, "cat /etc/hostname"), "debian-luks\n");
  EXPECT_THAT(debugfs(plain, "cat /etc/crypttab"),
              HasSubstr("cryptroot\tUUID=" + encryption["uuid"].get<std::string>() + "\tnone\tluks,initramfs\n"));
  std::filesystem::remove(plain);
  // The passphrase is nowhere in the output, images included.
  std::string passphrase = read_text(typed_passphrase());
  for (const auto& file : testing::list_tree(image)) {
    auto found = run_program({"grep", "-F", "-q", "-a", "--", passphrase, (image / file).string()});
    EXPECT_EQ(found.exit_code, 1) << file;
  }
}

// `kiln boot` of the storage images, which only their own initramfs can
// open, so `--backend auto` picks qemu. The LUKS image's initramfs asks for
// the passphrase on the serial console, and kiln types it from
// --luks-passphrase-file, which stays out of every file kiln writes.
class StorageBootTest : public ::testing::Test {
 protected:
  std::vector<std::string> env() const {
    return {"KILN_RUNTIME_DIR=" + (dir_ / "run").string(), "KILN_STATE_DIR=" + (dir_ / "state").string()};
  }
  testing::ProcessResult boot(const std::string& image, const std::string& name, std::vector<std::string> more) {
    names_.push_back(name);
    std::vector<std::string> args = {"boot", baked(image).string(), "--name", name, "--net", "none", "--detach",
                                     "--wait-ready=300"};
    args.insert(args.end(), more.begin(), more.end());
    return run_kiln(args, env());
  }
  std::string console(const std::string& name) const { return read_text(dir_ / "run" / name / "console.log"); }
  void TearDown() override {
    for (const std::string& name : names_) run_kiln({"destroy", name}, env());
  }

  testing::ScratchDir dir_;
  std::vector<std::string> names_;
};

TEST_F(StorageBootTest, WithoutAPassphraseTheBootSaysWhatTheGuestWaitsFor) {
  auto result = boot("luks", "asks", {});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("asks is waiting for the passphrase for cryptroot (give --luks-passphrase-file"));
  EXPECT_THAT(result.err, HasSubstr("qemu with TCG"));  // auto: UML cannot unlock it
  EXPECT_THAT(console("asks"), HasSubstr("Please unlock disk cryptroot:"));
  auto listed = run_kiln({"list"}, env());
  EXPECT_THAT(listed.out, HasSubstr("waiting for the passphrase for cryptroot"));  // still running, and why
}

TEST_F(StorageBootTest, ThePassphraseFileUnlocksTheRootAndStaysInMemory) {
  auto result = boot("luks", "unlocked", {"--luks-passphrase-file", testing::source_path("recipes/demo.passphrase").string()});
  ASSERT_EQ(result.exit_code, 0) << result.err << tail(console("unlocked"));
  EXPECT_THAT(console("unlocked"), HasSubstr("typed the passphrase for cryptroot"));
  EXPECT_THAT(console("unlocked"), HasSubstr("KILN-READY"));
  std::string passphrase = read_text(typed_passphrase());
  for (const auto& top : {dir_ / "run", dir_ / "state"}) {
    auto found = run_program({"grep", "-r", "-F", "-q", "-a", "--", passphrase, top.string()});
    EXPECT_EQ(found.exit_code, 1) << top;
  }
}

TEST_F(StorageBootTest, AWrongPassphraseIsTypedOnceAndNamed) {
  write_text(dir_ / "wrong", "not the passphrase\n");
  auto result = boot("luks", "wrong", {"--luks-passphrase-file", (dir_ / "wrong").string()});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("wrong is waiting for the passphrase for cryptroot: the one in " +
                                    (dir_ / "wrong").string() + " did not unlock it"));
}

TEST(StorageDebian, LvmVolumesAndFilesystemsReadBack) {
  if (::geteuid() != 0) GTEST_SKIP() << "reading LVM back needs a loop device";
  auto image = baked("lvm");
  auto m = manifest(image);
  uint64_t partition = 0;
  for (const auto& p : m["image"]["partitions"])
    if (p["name"] == "root") partition = p["offset"];
  auto attached = run_program({"losetup", "--find", "--show", "--read-only", "--offset", std::to_string(partition),
                               (image / "disk.raw").string()});
  ASSERT_EQ(attached.exit_code, 0) << attached.err;
  std::string loop = attached.out.substr(0, attached.out.find('\n'));
  write_text(kDir / "lvm-read/lvm.conf", "devices { filter = [ \"a|^" + loop + "$|\", \"r|.*|\" ] use_devicesfile = 0 "
                                         "hints = \"none\" obtain_device_list_from_udev = 0 }\nglobal { locking_dir = \"" +
                                             (kDir / "lvm-read").string() +
                                             "\" notify_dbus = 0 }\nbackup { backup = 0 archive = 0 }\n");
  std::vector<std::string> env = {"LVM_SYSTEM_DIR=" + (kDir / "lvm-read").string(), "LVM_SUPPRESS_FD_WARNINGS=1"};
  auto lvs = run_program({"lvm", "lvs", "--noheadings", "--separator", ",", "--units", "b", "--nosuffix", "-o",
                          "vg_name,lv_name,lv_size"},
                         env);
  auto pvs = run_program({"lvm", "pvs", "--noheadings", "--separator", ",", "-o", "pv_name,vg_name"}, env);
  run_program({"losetup", "-d", loop});
  EXPECT_THAT(lvs.out, HasSubstr("vg0,swap,268435456"));
  EXPECT_THAT(lvs.out, HasSubstr("vg0,root,"));
  EXPECT_THAT(pvs.out, HasSubstr(loop + ",vg0"));
  auto fsck = run_program({"e2fsck", "-fn", (image / "root.img").string()});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out;
  EXPECT_THAT(run_program({"blkid", "-o", "export", (image / "swap.img").string()}).out, HasSubstr("TYPE=swap"));
  EXPECT_THAT(debugfs(image / "root.img", "cat /etc/fstab"), HasSubstr("\tnone\tswap\tsw\t0\t0\n"));
  EXPECT_THAT(m["image"]["kernel_cmdline"].get<std::string>(), HasSubstr("root=/dev/mapper/vg0-root ro"));
  // lvm2 is installed in the image (hence in its initramfs).
  bool has_lvm2 = false;
  for (const auto& package : m["packages"]) has_lvm2 |= package["name"] == "lvm2";
  EXPECT_TRUE(has_lvm2);
}

TEST_F(StorageBootTest, TheLvmImageBootsWithItsRootOnLvm) {
  write_text(dir_ / "root.sh", "#!/bin/sh\necho \"ROOT-IS $(findmnt -no SOURCE /)\" > /dev/ttyS0\n");
  std::filesystem::permissions(dir_ / "root.sh", std::filesystem::perms::owner_all);
  auto result = boot("lvm", "onlvm", {"--firstboot", (dir_ / "root.sh").string()});
  ASSERT_EQ(result.exit_code, 0) << result.err << tail(console("onlvm"));
  EXPECT_TRUE(testing::wait_for([&] { return console("onlvm").find("ROOT-IS ") != std::string::npos; },
                                std::chrono::seconds(60), [&] { return tail(console("onlvm")); }));
  EXPECT_THAT(console("onlvm"), HasSubstr("ROOT-IS /dev/mapper/vg0-root"));
}

}  // namespace
}  // namespace kiln
