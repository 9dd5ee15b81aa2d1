// kiln's userspace dm-crypt must produce the very bytes cryptsetup does:
// the oracle here is `cryptsetup reencrypt --encrypt` on a file (offline,
// no device-mapper), whose volume key `luksDump --dump-volume-key` gives.
#include "crypto/sector_cipher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "recipes/recipe_parser.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using testing::read_text;
using testing::run_program;
using testing::ScratchDir;
using testing::write_text;

std::string pseudo_random(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    seed = seed * 1103515245u + 12345u;
    out[i] = static_cast<char>(seed >> 16);
  }
  return out;
}

struct Encrypted {
  std::string ciphertext;
  Secret key;
};

// Encrypts `plaintext` with cryptsetup itself and returns what it wrote and
// the volume key it chose.
Encrypted encrypt_with_cryptsetup(const ScratchDir& dir, const std::string& plaintext, const std::string& cipher,
                                  int key_bits, int sector_size) {
  write_text(dir / "data", plaintext);
  write_text(dir / "pass", "pass");
  auto run = run_program({"cryptsetup", "reencrypt", "--encrypt", "--type", "luks2", "--header",
                          (dir / "header").string(), "--cipher", cipher, "--key-size", std::to_string(key_bits),
                          "--sector-size", std::to_string(sector_size), "--pbkdf", "pbkdf2",
                          "--pbkdf-force-iterations", "1000", "--key-file", (dir / "pass").string(), "-q",
                          "--force-offline-reencrypt", (dir / "data").string()});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  auto dump = run_program({"cryptsetup", "luksDump", "--dump-volume-key", "--volume-key-file",
                           (dir / "volume.key").string(), "-q", "--key-file", (dir / "pass").string(),
                           (dir / "header").string()});
  EXPECT_EQ(dump.exit_code, 0) << dump.err;
  return {read_text(dir / "data"), Secret::from(read_text(dir / "volume.key"))};
}

struct Case {
  std::string cipher;
  int key_bits;
  int sector_size;
};

class SectorCipherMatchesCryptsetup : public ::testing::TestWithParam<Case> {};

TEST_P(SectorCipherMatchesCryptsetup, SameCiphertextForTheSameKey) {
  const Case& c = GetParam();
  ScratchDir dir;
  std::string plaintext = pseudo_random(256 * 1024, 7);
  Encrypted expected = encrypt_with_cryptsetup(dir, plaintext, c.cipher, c.key_bits, c.sector_size);
  ASSERT_EQ(expected.key.size(), static_cast<size_t>(c.key_bits / 8));
  auto cipher = SectorCipher::create(c.cipher, expected.key, c.sector_size);
  ASSERT_TRUE(cipher) << cipher.error().to_string();
  std::string mine = plaintext;
  // In two pieces, the second at its offset: IVs follow the position.
  ASSERT_TRUE(cipher->encrypt(mine.data(), 128 * 1024, 0));
  ASSERT_TRUE(cipher->encrypt(mine.data() + 128 * 1024, 128 * 1024, 128 * 1024));
  EXPECT_TRUE(mine == expected.ciphertext) << c.cipher << " sector " << c.sector_size;
  ASSERT_TRUE(cipher->decrypt(mine.data(), mine.size(), 0));
  EXPECT_TRUE(mine == plaintext);
}

INSTANTIATE_TEST_SUITE_P(Ciphers, SectorCipherMatchesCryptsetup,
                         ::testing::Values(Case{"aes-xts-plain64", 512, 4096}, Case{"aes-xts-plain64", 512, 512},
                                           Case{"aes-xts-plain64", 256, 4096}, Case{"aes-xts-plain", 512, 512},
                                           Case{"aes-cbc-essiv:sha256", 256, 512},
                                           Case{"aes-cbc-essiv:sha256", 128, 4096},
                                           Case{"aes-cbc-plain64", 256, 4096}, Case{"aes-cbc-plain", 192, 512}));

TEST(SectorCipher, LargeSectorIvsCountWholeSectors) {
  Secret key = Secret::from(pseudo_random(64, 3));
  auto small_ivs = SectorCipher::create("aes-xts-plain64", key, 4096);
  auto large_ivs = SectorCipher::create("aes-xts-plain64", key, 4096, true);
  ASSERT_TRUE(small_ivs && large_ivs);
  std::string a = pseudo_random(8192, 1), b = a;
  ASSERT_TRUE(small_ivs->encrypt(a.data(), a.size(), 0));
  ASSERT_TRUE(large_ivs->encrypt(b.data(), b.size(), 0));
  // Sector 0 has IV 0 either way; the second is 8 (512-byte units) or 1.
  EXPECT_EQ(a.substr(0, 4096), b.substr(0, 4096));
  EXPECT_NE(a.substr(4096), b.substr(4096));
}

TEST(SectorCipher, RefusesWhatItCannotDo) {
  Secret key = Secret::from(pseudo_random(64, 3));
  EXPECT_FALSE(SectorCipher::create("serpent-xts-plain64", key, 512));
  EXPECT_FALSE(SectorCipher::create("aes-xts-plain64", Secret::from(pseudo_random(24, 1)), 512));
  EXPECT_FALSE(SectorCipher::create("aes-xts-plain64", key, 1024));
  auto cipher = SectorCipher::create("aes-xts-plain64", key, 4096);
  ASSERT_TRUE(cipher);
  std::string odd(512, 'x');
  EXPECT_FALSE(cipher->encrypt(odd.data(), odd.size(), 0));
}

// The recipe accepts a LUKS1 cipher exactly when kiln can encrypt it itself.
TEST(SectorCipher, RecipeRulesFollowWhatItSupports) {
  for (std::string cipher : {"aes-xts-plain64", "aes-xts-plain", "aes-cbc-essiv:sha256", "aes-cbc-plain64",
                             "aes-cbc-plain", "aes-ctr-plain64", "serpent-xts-plain64", "twofish-cbc-essiv:sha256",
                             "aes-cbc-benbi", "aes-ecb"}) {
    std::string text = "[image]\nname = \"x\"\n[bootstrap]\nsuite = \"bookworm\"\n[storage.luks]\nversion = \"luks1\"\n"
                       "passphrase_file = \"test.passphrase\"\nkey_size = 256\ncipher = \"" + cipher + "\"\n";
    auto recipe = parse_recipe(text, "r.toml", KILN_SOURCE_DIR "/tests/recipes", {});
    EXPECT_EQ(recipe.has_value(), SectorCipher::supports(cipher))
        << cipher << ": " << (recipe ? std::string("accepted") : recipe.error().to_string());
  }
}

}  // namespace
}  // namespace kiln
