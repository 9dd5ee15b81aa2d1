// LUKS on image files through libcryptsetup, read back with cryptsetup:
// the headers kiln formats, the keys it adds, changes and removes inside a
// bigger image, refusals that leave the image as it was, and the keys of
// plain dm-crypt.
#include "crypto/luks.h"

#include <fcntl.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>

#include "crypto/sector_cipher.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::read_text;
using testing::run_program;
using testing::ScratchDir;
using testing::write_text;

constexpr uint64_t kMiB = 1 << 20;

void make_file(const std::filesystem::path& path, uint64_t size) {
  write_text(path, "");
  std::filesystem::resize_file(path, size);
}

LuksSettings fast_settings() {
  LuksSettings settings;
  settings.pbkdf = PbkdfSettings{"pbkdf2", "sha256", 0, 1000, 0};
  settings.uuid = "3a7f1c2e-5b6d-4e8f-9a0b-1c2d3e4f5a6b";
  return settings;
}

class LuksTest : public ::testing::Test {
 protected:
  // cryptsetup's --key-file reads the whole file: no newline at the end.
  std::string key_file(const std::string& name, const std::string& content) {
    write_text(dir_ / name, content);
    return (dir_ / name).string();
  }
  int test_passphrase(const std::filesystem::path& device, const std::string& file) {
    return run_program({"cryptsetup", "open", "--test-passphrase", "--key-file", file, device.string()}).exit_code;
  }
  std::string sha256(const std::filesystem::path& file) {
    return run_program({"sha256sum", file.string()}).out.substr(0, 64);
  }
  // The volume at `offset` of `image`, copied out for cryptsetup to read.
  std::filesystem::path extract(const std::filesystem::path& image, uint64_t offset, uint64_t size) {
    auto out = dir_ / "extracted";
    run_program({"dd", "if=" + image.string(), "of=" + out.string(), "bs=1M", "skip=" + std::to_string(offset / kMiB),
                 "count=" + std::to_string(size / kMiB), "status=none"});
    return out;
  }

  ScratchDir dir_;
  Secret volume_key_ = *Secret::random(64);
  Secret passphrase_ = Secret::from("correct horse");
  Secret second_ = Secret::from("battery staple");
};

TEST_F(LuksTest, FormatsAHeaderThatCryptsetupReads) {
  auto device = dir_ / "luks.img";
  make_file(device, 64 * kMiB);
  LuksSettings settings = fast_settings();
  settings.label = "kiln-test";
  const Secret* keys[] = {&passphrase_, &second_};
  auto offset = format_luks(device, settings, volume_key_, keys);
  ASSERT_TRUE(offset) << offset.error().to_string();
  EXPECT_EQ(*offset, 16 * kMiB);
  EXPECT_EQ(*offset, luks_header_size(settings.version));
  auto dump = run_program({"cryptsetup", "luksDump", device.string()});
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  EXPECT_THAT(dump.out, HasSubstr("Version:       \t2"));
  EXPECT_THAT(dump.out, HasSubstr("UUID:          \t3a7f1c2e-5b6d-4e8f-9a0b-1c2d3e4f5a6b"));
  EXPECT_THAT(dump.out, HasSubstr("Label:         \tkiln-test"));
  EXPECT_THAT(dump.out, HasSubstr("cipher: aes-xts-plain64"));
  EXPECT_THAT(dump.out, HasSubstr("sector: 4096 [bytes]"));
  EXPECT_THAT(dump.out, HasSubstr("  0: luks2"));
  EXPECT_THAT(dump.out, HasSubstr("  1: luks2"));
  EXPECT_EQ(test_passphrase(device, key_file("one", "correct horse")), 0);
  EXPECT_EQ(test_passphrase(device, key_file("two", "battery staple")), 0);
  EXPECT_NE(test_passphrase(device, key_file("bad", "wrong")), 0);
  // The header holds our volume key.
  auto vk = run_program({"cryptsetup", "luksDump", "--dump-volume-key", "--volume-key-file",
                         (dir_ / "vk").string(), "-q", "--key-file", (dir_ / "one").string(), device.string()});
  ASSERT_EQ(vk.exit_code, 0) << vk.err;
  EXPECT_TRUE(Secret::from(read_text(dir_ / "vk")) == volume_key_);
}

TEST_F(LuksTest, Luks1AndArgon2TakeTheirSettings) {
  auto device = dir_ / "luks1.img";
  make_file(device, 16 * kMiB);
  LuksSettings luks1 = fast_settings();
  luks1.version = "luks1";
  luks1.cipher = "aes-cbc-essiv:sha256";
  luks1.key_bytes = 32;
  luks1.sector_size = 512;
  Secret key = *Secret::random(32);
  const Secret* keys[] = {&passphrase_};
  auto offset = format_luks(device, luks1, key, keys);
  ASSERT_TRUE(offset) << offset.error().to_string();
  EXPECT_EQ(*offset, luks_header_size(luks1.version));
  auto dump = run_program({"cryptsetup", "luksDump", device.string()});
  EXPECT_THAT(dump.out, HasSubstr("Version:       \t1"));
  EXPECT_THAT(dump.out, HasSubstr("Cipher name:   \taes"));
  EXPECT_THAT(dump.out, HasSubstr("Cipher mode:   \tcbc-essiv:sha256"));
  EXPECT_THAT(dump.out, HasSubstr("Key Slot 0: ENABLED"));
  EXPECT_EQ(test_passphrase(device, key_file("one", "correct horse")), 0);

  auto argon = dir_ / "argon.img";
  make_file(argon, 32 * kMiB);
  LuksSettings settings = fast_settings();
  settings.pbkdf = PbkdfSettings{"argon2id", "sha256", 0, 4, 32768};
  ASSERT_TRUE(format_luks(argon, settings, volume_key_, keys));
  dump = run_program({"cryptsetup", "luksDump", argon.string()});
  EXPECT_THAT(dump.out, HasSubstr("PBKDF:      argon2id"));
  EXPECT_THAT(dump.out, HasSubstr("Time cost:  4"));
  EXPECT_THAT(dump.out, HasSubstr("Memory:     32768"));
}

// A LUKS volume as a partition: 4 MiB into a 40 MiB image.
class LuksKeysTest : public LuksTest {
 protected:
  void SetUp() override {
    make_file(image_, 40 * kMiB);
    auto volume = dir_ / "volume.img";
    make_file(volume, 32 * kMiB);
    const Secret* keys[] = {&passphrase_};
    ASSERT_TRUE(format_luks(volume, fast_settings(), volume_key_, keys));
    run_program({"dd", "if=" + volume.string(), "of=" + image_.string(), "bs=1M", "seek=4", "conv=notrunc",
                 "status=none"});
    std::filesystem::remove(volume);
    region_ = LuksRegion{image_, 4 * kMiB, 32 * kMiB, "disk.raw partition 2"};
  }
  std::vector<int> active() {
    auto slots = luks_keyslots(region_);
    EXPECT_TRUE(slots) << slots.error().to_string();
    std::vector<int> out;
    for (const KeyslotState& slot : *slots)
      if (slot.active) out.push_back(slot.slot);
    return out;
  }

  std::filesystem::path image_ = dir_ / "disk.raw";
  LuksRegion region_;
};

TEST_F(LuksKeysTest, AddChangeAndRemoveKeysInsideTheImage) {
  EXPECT_EQ(active(), std::vector<int>{0});
  auto added = luks_add_key(region_, passphrase_, second_);
  ASSERT_TRUE(added) << added.error().to_string();
  EXPECT_EQ(*added, 1);
  EXPECT_EQ(active(), (std::vector<int>{0, 1}));
  auto extracted = extract(image_, 4 * kMiB, 32 * kMiB);
  EXPECT_EQ(test_passphrase(extracted, key_file("two", "battery staple")), 0);

  Secret third = Secret::from("third key");
  auto changed = luks_change_key(region_, second_, third);
  ASSERT_TRUE(changed) << changed.error().to_string();
  extracted = extract(image_, 4 * kMiB, 32 * kMiB);
  EXPECT_NE(test_passphrase(extracted, key_file("two", "battery staple")), 0);
  EXPECT_EQ(test_passphrase(extracted, key_file("three", "third key")), 0);

  auto removed = luks_remove_key(region_, 0, nullptr, false);
  ASSERT_TRUE(removed) << removed.error().to_string();
  EXPECT_EQ(active(), std::vector<int>{*changed});
  extracted = extract(image_, 4 * kMiB, 32 * kMiB);
  EXPECT_NE(test_passphrase(extracted, key_file("one", "correct horse")), 0);
  // The data area after the header was never touched.
  auto dump = run_program({"cryptsetup", "luksDump", extracted.string()});
  EXPECT_THAT(dump.out, HasSubstr("offset: 16777216 [bytes]"));
}

TEST_F(LuksKeysTest, AWrongPassphraseChangesNothing) {
  std::string before = sha256(image_);
  Secret wrong = Secret::from("not the passphrase");
  for (auto result : {luks_add_key(region_, wrong, second_), luks_change_key(region_, wrong, second_),
                      luks_remove_key(region_, std::nullopt, &wrong, false)}) {
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().kind, ErrorKind::kBadInput);
    EXPECT_EQ(result.error().message,
              "disk.raw partition 2: the given passphrase or key opens no keyslot; nothing was changed");
    EXPECT_THAT(result.error().to_string(), Not(HasSubstr("not the passphrase")));
  }
  EXPECT_EQ(sha256(image_), before);
  // The private header copies are gone too.
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path()))
    EXPECT_FALSE(entry.path().filename().string().starts_with(".kiln-luks")) << entry.path();
}

TEST_F(LuksKeysTest, TheLastKeyslotStaysUnlessForced) {
  std::string before = sha256(image_);
  auto refused = luks_remove_key(region_, 0, nullptr, false);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message, HasSubstr("keyslot 0 is the last one that opens the volume"));
  EXPECT_THAT(refused.error().message, HasSubstr("--force"));
  EXPECT_EQ(sha256(image_), before);
  auto by_key = luks_remove_key(region_, std::nullopt, &passphrase_, false);
  EXPECT_FALSE(by_key);
  EXPECT_EQ(sha256(image_), before);
  auto empty = luks_remove_key(region_, 5, nullptr, true);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().message, "disk.raw partition 2: keyslot 5 is empty; nothing was changed");

  auto forced = luks_remove_key(region_, 0, nullptr, true);
  ASSERT_TRUE(forced) << forced.error().to_string();
  EXPECT_TRUE(active().empty());
}

TEST_F(LuksKeysTest, DumpShowsTheHeader) {
  auto dump = luks_dump(region_);
  ASSERT_TRUE(dump) << dump.error().to_string();
  EXPECT_THAT(*dump, HasSubstr("Version:       \t2"));
  EXPECT_THAT(*dump, HasSubstr("cipher: aes-xts-plain64"));
  EXPECT_THAT(*dump, HasSubstr("  0: luks2"));
  auto nothing = luks_dump(LuksRegion{image_, 0, 4 * kMiB, "disk.raw"});
  ASSERT_FALSE(nothing);
  EXPECT_EQ(nothing.error().message, "disk.raw: no LUKS header there");
}

// cryptsetup's plain mode hashes the passphrase, then "A" + passphrase, and
// so on, until the key is long enough (hashalot's scheme).
TEST(PlainDmcrypt, KeyIsTheHashedPassphraseAsCryptsetupMakesIt) {
  Secret passphrase = Secret::from("book passphrase");
  auto key = plain_dmcrypt_key("aes-xts-plain64", 64, "sha256", passphrase);
  ASSERT_TRUE(key) << key.error().to_string();
  unsigned char first[32], second[32];
  SHA256(reinterpret_cast<const unsigned char*>("book passphrase"), 15, first);
  SHA256(reinterpret_cast<const unsigned char*>("Abook passphrase"), 16, second);
  std::string expected(reinterpret_cast<char*>(first), 32);
  expected.append(reinterpret_cast<char*>(second), 32);
  EXPECT_EQ(key->view(), expected);
  auto short_key = plain_dmcrypt_key("aes-cbc-essiv:sha256", 16, "sha256", passphrase);
  ASSERT_TRUE(short_key) << short_key.error().to_string();
  EXPECT_EQ(short_key->view(), expected.substr(0, 16));
}

// The fallback for ciphers kiln does not implement: what libcryptsetup
// encrypts, a header for the same volume key decrypts with cryptsetup.
TEST_F(LuksTest, LibcryptsetupEncryptsWhatKilnCannot) {
  std::string plaintext(4 * kMiB, '\0');
  for (size_t i = 0; i < plaintext.size(); ++i) plaintext[i] = static_cast<char>(i * 7 + i / 4096);
  auto data = dir_ / "data.img";
  write_text(data, plaintext);
  LuksSettings settings = fast_settings();
  settings.cipher = "aes-cbc-benbi";
  settings.key_bytes = 32;
  settings.sector_size = 512;
  ASSERT_FALSE(SectorCipher::supports(settings.cipher));
  Secret key = *Secret::random(32);
  auto done = encrypt_with_libcryptsetup(data, settings, key);
  ASSERT_TRUE(done) << done.error().to_string();
  EXPECT_NE(read_text(data), plaintext);
  write_text(dir_ / "vk", std::string(key.view()));
  auto header = run_program({"cryptsetup", "luksFormat", "-q", "--header", (dir_ / "header").string(),
                             "--volume-key-file", (dir_ / "vk").string(), "--key-size", "256", "--cipher",
                             "aes-cbc-benbi", "--sector-size", "512", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations",
                             "1000", "--key-file", key_file("one", "correct horse"), data.string()});
  ASSERT_EQ(header.exit_code, 0) << header.err;
  auto decrypt = run_program({"cryptsetup", "reencrypt", "--decrypt", "-q", "--force-offline-reencrypt", "--header",
                              (dir_ / "header").string(), "--key-file", (dir_ / "one").string(), data.string()});
  ASSERT_EQ(decrypt.exit_code, 0) << decrypt.err;
  EXPECT_TRUE(read_text(data) == plaintext);
}

}  // namespace
}  // namespace kiln
