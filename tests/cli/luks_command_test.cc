// `kiln luks` on a disk image whose second partition is a LUKS volume, as a
// user runs it: the partition is found, keys come from files, and a refused
// operation leaves the image byte for byte as it was.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "crypto/luks.h"
#include "formats/disk/gpt_disk.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ProcessResult;
using testing::read_text;
using testing::run_kiln;
using testing::run_program;
using testing::ScratchDir;
using testing::write_text;

constexpr uint64_t kMiB = 1 << 20;

class LuksCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GptLayout layout;
    layout.disk_size = 64 * kMiB;
    layout.disk_guid = Uuid::from_name("disk");
    layout.partitions = {{"esp", GptType::kEfiSystem, Uuid::from_name("esp"), 8 * kMiB},
                         {"root", GptType::kLinuxLuks, Uuid::from_name("root"), 0}};
    auto placed = write_gpt(disk_, layout);
    ASSERT_TRUE(placed) << placed.error().to_string();
    const PlacedPartition& root = (*placed)[1];
    auto volume = dir_ / "volume";
    write_text(volume, "");
    // Whole 4096-byte sectors, as kiln's bakes use the partition.
    std::filesystem::resize_file(volume, root.size / 4096 * 4096);
    LuksSettings settings;
    settings.pbkdf = PbkdfSettings{"pbkdf2", "sha256", 0, 1000, 0};
    settings.uuid = Uuid::from_name("luks").to_string();
    Secret key = *Secret::random(64);
    Secret passphrase = Secret::from("old passphrase");
    const Secret* keys[] = {&passphrase};
    auto formatted = format_luks(volume, settings, key, keys);
    ASSERT_TRUE(formatted) << formatted.error().to_string();
    run_program({"dd", "if=" + volume.string(), "of=" + disk_.string(), "bs=1M",
                 "seek=" + std::to_string(root.offset / kMiB), "conv=notrunc,sparse", "status=none"});
    std::filesystem::remove(volume);
    write_text(dir_ / "old.passphrase", "old passphrase\n");  // first line, as typed
    write_text(dir_ / "new.passphrase", "new passphrase\n");
    write_text(dir_ / "wrong.passphrase", "not it\n");
    write_text(dir_ / "new.key", std::string("\x00\x01\x02 key bytes", 13));
  }

  ProcessResult luks(std::vector<std::string> args) {
    args.insert(args.begin(), "luks");
    return run_kiln(args);
  }
  std::string file(const std::string& name) { return (dir_ / name).string(); }
  std::string sha256() { return run_program({"sha256sum", disk_.string()}).out.substr(0, 64); }

  // Decrypts a volume kiln wrote with cryptsetup's own code, into data.img.
  void expect_decrypts_to_a_clean_filesystem(const std::string& sealed, int header_mib) {
    write_text(dir_ / "typed", "old passphrase");
    auto vk = run_program({"cryptsetup", "luksDump", "--dump-volume-key", "--volume-key-file", file("vk"), "-q",
                           "--key-file", file("typed"), file(sealed)});
    ASSERT_EQ(vk.exit_code, 0) << vk.err;
    run_program({"dd", "if=" + file(sealed), "of=" + file("data.img"), "bs=1M", "skip=" + std::to_string(header_mib),
                 "status=none"});
    auto header = run_program({"cryptsetup", "luksFormat", "-q", "--header", file("detached"), "--volume-key-file",
                               file("vk"), "--key-size", "512", "--sector-size", "4096", "--pbkdf", "pbkdf2",
                               "--pbkdf-force-iterations", "1000", "--key-file", file("typed"), file("data.img")});
    ASSERT_EQ(header.exit_code, 0) << header.err;
    auto decrypted = run_program({"cryptsetup", "reencrypt", "--decrypt", "-q", "--force-offline-reencrypt",
                                  "--header", file("detached"), "--key-file", file("typed"), file("data.img")});
    ASSERT_EQ(decrypted.exit_code, 0) << decrypted.err;
    auto check = run_program({"e2fsck", "-fn", file("data.img")});
    EXPECT_EQ(check.exit_code, 0) << check.out;
  }

  ScratchDir dir_;
  std::filesystem::path disk_ = dir_ / "disk.raw";
};

TEST_F(LuksCommandTest, DumpFindsThePartition) {
  auto dump = luks({"dump", disk_.string()});
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  EXPECT_THAT(dump.out, HasSubstr("disk.raw partition 2 (root) (at byte 9437184"));
  EXPECT_THAT(dump.out, HasSubstr("Version:       \t2"));
  EXPECT_THAT(dump.out, HasSubstr("UUID:          \t" + Uuid::from_name("luks").to_string()));
  EXPECT_THAT(dump.out, HasSubstr("  0: luks2"));
}

TEST_F(LuksCommandTest, AddChangeAndRemoveKeys) {
  auto added = luks({"add-key", disk_.string(), "--passphrase-file", file("old.passphrase"), "--new-key-file",
                     file("new.key")});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  EXPECT_EQ(added.out, "disk.raw partition 2 (root): added keyslot 1\n");
  auto changed = luks({"change-key", disk_.string(), "--key-file", file("new.key"), "--new-passphrase-file",
                       file("new.passphrase")});
  ASSERT_EQ(changed.exit_code, 0) << changed.err;
  EXPECT_EQ(changed.out, "disk.raw partition 2 (root): changed the key of keyslot 1\n");
  auto removed = luks({"remove-key", disk_.string(), "--passphrase-file", file("old.passphrase")});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_EQ(removed.out, "disk.raw partition 2 (root): removed keyslot 0\n");
  // Only the new passphrase opens it now.
  auto wrong = luks({"add-key", disk_.string(), "--passphrase-file", file("old.passphrase"), "--new-key-file",
                     file("new.key")});
  EXPECT_EQ(wrong.exit_code, 2);
  auto dump = luks({"dump", disk_.string()});
  EXPECT_THAT(dump.out, Not(HasSubstr("  0: luks2")));
  EXPECT_THAT(dump.out, HasSubstr("  1: luks2"));
}

TEST_F(LuksCommandTest, AWrongPassphraseIsAClearErrorAndChangesNothing) {
  std::string before = sha256();
  auto result = luks({"add-key", disk_.string(), "--passphrase-file", file("wrong.passphrase"),
                      "--new-passphrase-file", file("new.passphrase")});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err,
            "kiln: error: disk.raw partition 2 (root): the given passphrase or key opens no keyslot; nothing was "
            "changed\n");
  EXPECT_THAT(result.out + result.err, Not(HasSubstr("not it")));
  EXPECT_EQ(sha256(), before);
}

TEST_F(LuksCommandTest, TheLastKeyslotNeedsForce) {
  std::string before = sha256();
  auto refused = luks({"remove-key", disk_.string(), "--slot", "0"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("keyslot 0 is the last one that opens the volume"));
  EXPECT_EQ(sha256(), before);
  auto forced = luks({"remove-key", disk_.string(), "--slot", "0", "--force"});
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_NE(sha256(), before);
}

TEST_F(LuksCommandTest, UsageMistakes) {
  auto no_key = luks({"add-key", disk_.string(), "--new-key-file", file("new.key")});
  EXPECT_EQ(no_key.exit_code, 2);
  EXPECT_THAT(no_key.err, HasSubstr("give the existing key with --key-file FILE or --passphrase-file FILE"));
  auto both = luks({"remove-key", disk_.string(), "--slot", "0", "--key-file", file("new.key")});
  EXPECT_EQ(both.exit_code, 2);
  write_text(dir_ / "plain.img", std::string(1 << 20, '\0'));
  auto none = luks({"dump", file("plain.img")});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("no LUKS volume in it"));
  auto esp = luks({"dump", disk_.string(), "--partition", "1"});
  EXPECT_EQ(esp.exit_code, 2);
  EXPECT_THAT(esp.err, HasSubstr("partition 1 is not a LUKS volume"));
  EXPECT_THAT(esp.err, HasSubstr("disk.raw partition 2 (root): LUKS"));
}

// A plain filesystem image into a LUKS volume: cryptsetup opens the header
// with the passphrase, and the data decrypts to the same clean filesystem.
TEST_F(LuksCommandTest, EncryptMakesAVolumeOfAPlainImage) {
  testing::write_text(dir_ / "tree/etc/hostname", "plain\n");
  ASSERT_EQ(run_program({"tar", "-C", (dir_ / "tree").string(), "-cf", file("tree.tar"), "."}).exit_code, 0);
  auto made = run_kiln({"make-fs", file("tree.tar"), file("plain.img"), "--size", "32M"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  auto encrypted = luks({"encrypt", file("plain.img"), file("sealed.img"), "--passphrase-file", file("old.passphrase"),
                         "--pbkdf", "pbkdf2", "--pbkdf-iterations", "1000"});
  ASSERT_EQ(encrypted.exit_code, 0) << encrypted.err;
  EXPECT_THAT(encrypted.out, HasSubstr("sealed.img: luks2 volume (aes-xts-plain64, 512-bit key, 4096-byte sectors)"));
  EXPECT_EQ(std::filesystem::file_size(dir_ / "sealed.img"), 48 * kMiB);
  expect_decrypts_to_a_clean_filesystem("sealed.img", 16);
  EXPECT_EQ(run_program({"debugfs", "-R", "cat /etc/hostname", file("data.img")}).out, "plain\n");
}

TEST_F(LuksCommandTest, EncryptTakesFilesystemBlocksSmallerThanItsSectors) {
  // mke2fs gives a 16 MiB filesystem 1 KiB blocks; the volume's sectors are 4 KiB.
  ASSERT_EQ(run_program({"truncate", "-s", "16M", file("small.img")}).exit_code, 0);
  ASSERT_EQ(run_program({"mke2fs", "-q", "-t", "ext4", "-b", "1024", file("small.img")}).exit_code, 0);
  auto encrypted = luks({"encrypt", file("small.img"), file("sealed.img"), "--passphrase-file", file("old.passphrase"),
                         "--pbkdf", "pbkdf2", "--pbkdf-iterations", "1000"});
  ASSERT_EQ(encrypted.exit_code, 0) << encrypted.err;
  expect_decrypts_to_a_clean_filesystem("sealed.img", 16);
}

TEST_F(LuksCommandTest, DumpTakesABareFileNameAndShowsItsOwnName) {
  ASSERT_EQ(run_program({"cp", disk_.string(), file("d.luks")}).exit_code, 0);
  auto dump = run_program({"sh", "-c", "cd " + dir_.path().string() + " && " + testing::kiln_binary() + " luks dump d.luks"});
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  EXPECT_THAT(dump.out, HasSubstr("LUKS header information"));
  EXPECT_THAT(dump.out, Not(HasSubstr(".kiln-luks")));
}

}  // namespace
}  // namespace kiln
