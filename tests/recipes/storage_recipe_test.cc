// [storage] beyond the defaults: LVM volumes, LUKS and plain dm-crypt, what
// a good section gives, and the file:line:col message for each mistake,
// in particular the settings that do not go together.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "recipes/recipe_parser.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr std::string_view kBase = R"([image]
name = "web"

[bootstrap]
suite = "bookworm"

)";

Result<Recipe> parse(std::string_view storage, std::vector<std::string> overrides = {}) {
  return parse_recipe(std::string(kBase) + std::string(storage), "r.toml", KILN_SOURCE_DIR "/tests/recipes",
                      overrides);
}

std::string error_of(std::string_view storage, std::vector<std::string> overrides = {}) {
  auto recipe = parse(storage, overrides);
  if (recipe) return "(parsed fine)";
  EXPECT_EQ(recipe.error().kind, ErrorKind::kBadInput);
  return recipe.error().to_string();
}

constexpr std::string_view kLvm = R"([storage]
size = "3G"
layout = "lvm"

[storage.lvm]
vg = "vg0"

[[storage.lvm.volumes]]
name = "root"
size = "rest"
mountpoint = "/"

[[storage.lvm.volumes]]
name = "swap"
size = "256M"
filesystem = "swap"
)";

TEST(StorageRecipe, LvmVolumesAreReadInOrder) {
  auto recipe = parse(kLvm);
  ASSERT_TRUE(recipe) << recipe.error().to_string();
  const LvmSection& lvm = recipe->storage.lvm;
  EXPECT_TRUE(lvm.present.value);
  EXPECT_EQ(lvm.vg.value, "vg0");
  EXPECT_EQ(lvm.extent_size.value, 4u << 20);
  ASSERT_EQ(lvm.volumes.size(), 2u);
  EXPECT_EQ(lvm.volumes[0].name.value, "root");
  EXPECT_TRUE(lvm.volumes[0].rest);
  EXPECT_EQ(lvm.volumes[0].filesystem.value, FilesystemType::kExt4);
  EXPECT_EQ(lvm.volumes[1].size.value, 256u << 20);
  EXPECT_FALSE(lvm.volumes[1].rest);
  EXPECT_EQ(lvm.volumes[1].filesystem.value, FilesystemType::kSwap);
  EXPECT_EQ(lvm.volumes[1].where.to_string(), "r.toml:19:1");
  EXPECT_FALSE(recipe->storage.encrypted());
}

TEST(StorageRecipe, LvmLayoutWithoutVolumesGetsOneRootVolume) {
  auto recipe = parse("[storage]\nlayout = \"lvm\"\nfilesystem = \"ext3\"\nlabel = \"sys\"\n");
  ASSERT_TRUE(recipe) << recipe.error().to_string();
  ASSERT_EQ(recipe->storage.lvm.volumes.size(), 1u);
  const LvmVolume& root = recipe->storage.lvm.volumes[0];
  EXPECT_EQ(root.name.value, "root");
  EXPECT_TRUE(root.rest);
  EXPECT_EQ(root.mountpoint.value, "/");
  EXPECT_EQ(root.filesystem.value, FilesystemType::kExt3);
  EXPECT_EQ(root.label.value, "sys");
  EXPECT_EQ(recipe->storage.lvm.vg.value, "vg0");
}

TEST(StorageRecipe, UnknownKeysAreFoundInStorageAndEachSubtable) {
  EXPECT_EQ(error_of("[storage]\nlayuot = \"lvm\"\n"),
            "r.toml:8:1: unknown key 'layuot' in [storage]; did you mean 'layout'?");
  EXPECT_EQ(error_of("[storage.luks]\npassphrase_fil = \"test.passphrase\"\n"),
            "r.toml:8:1: unknown key 'passphrase_fil' in [storage.luks]; did you mean 'passphrase_file'?");
  EXPECT_EQ(error_of("[storage]\nlayout = \"lvm\"\n[storage.lvm]\nextent_sise = \"8M\"\n"),
            "r.toml:10:1: unknown key 'extent_sise' in [storage.lvm]; did you mean 'extent_size'?");
  EXPECT_EQ(error_of("[storage]\nlayout = \"lvm\"\n[[storage.lvm.volumes]]\nname = \"root\"\nsize = \"rest\"\n"
                     "mountpoint = \"/\"\nfilesytem = \"ext4\"\n"),
            "r.toml:13:1: unknown key 'filesytem' in [[storage.lvm.volumes]]; did you mean 'filesystem'?");
  EXPECT_THAT(error_of("[storage.lusk]\n"), StartsWith("r.toml:7:10: unknown key 'lusk' in [storage]; did you mean 'luks'?"));
  EXPECT_EQ(error_of("[storage]\nluks = 1\n"), "r.toml:8:8: [storage.luks] must be a table, found a value");
}

TEST(StorageRecipe, InvalidLvNameIsRefused) {
  EXPECT_EQ(error_of("[storage]\nlayout = \"lvm\"\n[[storage.lvm.volumes]]\nname = \"my root\"\nsize = \"rest\"\n"
                     "mountpoint = \"/\"\n"),
            "r.toml:10:8: storage.lvm.volumes.name: \"my root\": expected letters, digits, '+', '_', '.' and '-', "
            "not starting with '-'");
  EXPECT_THAT(error_of("[storage]\nlayout = \"lvm\"\n[[storage.lvm.volumes]]\nname = \"data_tmeta\"\nsize = \"rest\"\n"
                       "mountpoint = \"/\"\n"),
              HasSubstr("names containing \"_tmeta\" are reserved by lvm2"));
  EXPECT_THAT(error_of("[storage]\nlayout = \"lvm\"\n[storage.lvm]\nvg = \"snapshots\"\n"),
              StartsWith("r.toml:10:6: storage.lvm.vg: \"snapshots\": names starting with \"snapshot\""));
}

TEST(StorageRecipe, VolumeRules) {
  std::string head = "[storage]\nlayout = \"lvm\"\n";
  EXPECT_EQ(error_of(head + "[[storage.lvm.volumes]]\nname = \"a\"\nsize = \"rest\"\nmountpoint = \"/\"\n"
                            "[[storage.lvm.volumes]]\nname = \"b\"\nsize = \"rest\"\nmountpoint = \"/srv\"\n"),
            "r.toml:15:8: storage.lvm.volumes: only one volume can take the rest, and \"a\" (line 11) already does");
  EXPECT_EQ(error_of(head + "[[storage.lvm.volumes]]\nname = \"a\"\nsize = \"1G\"\nmountpoint = \"/\"\n"
                            "[[storage.lvm.volumes]]\nname = \"a\"\nsize = \"1G\"\nfilesystem = \"swap\"\n"),
            "r.toml:14:8: storage.lvm.volumes: volume \"a\" is listed twice (also line 10)");
  EXPECT_EQ(error_of(head + "[[storage.lvm.volumes]]\nname = \"s\"\nsize = \"1G\"\nfilesystem = \"swap\"\n"
                            "mountpoint = \"/swap\"\n"),
            "r.toml:13:14: storage.lvm.volumes: \"s\" is swap, which has no mountpoint");
  EXPECT_EQ(error_of(head + "[[storage.lvm.volumes]]\nname = \"data\"\nsize = \"1G\"\n"),
            "r.toml:9:1: storage.lvm.volumes: \"data\" (ext4) needs a mountpoint, e.g. \"/srv\"");
  EXPECT_EQ(error_of(head + "[[storage.lvm.volumes]]\nname = \"data\"\nsize = \"1G\"\nmountpoint = \"/srv\"\n"),
            "r.toml:9:1: storage.lvm.volumes: no volume is mounted at \"/\"; give the root filesystem's volume "
            "mountpoint = \"/\"");
  EXPECT_EQ(error_of(head + "[[storage.lvm.volumes]]\nname = \"a\"\nsize = \"lots\"\nmountpoint = \"/\"\n"),
            "r.toml:11:8: storage.lvm.volumes.size: expected a size such as \"2G\" or \"rest\"");
  EXPECT_EQ(error_of(head + "filesystem = \"ext3\"\n[[storage.lvm.volumes]]\nname = \"a\"\nsize = \"rest\"\n"
                            "mountpoint = \"/\"\n"),
            "r.toml:9:14: with [[storage.lvm.volumes]], each volume names its own filesystem and label: move this "
            "to the volume mounted at \"/\"");
  EXPECT_EQ(error_of("[storage.lvm]\nvg = \"vg1\"\n"),
            "r.toml:7:1: [storage.lvm] describes the volumes of storage.layout = \"lvm\", but the layout is \"gpt\" "
            "(the default): set layout = \"lvm\" or remove [storage.lvm]");
  EXPECT_EQ(error_of(head + "[storage.lvm]\nextent_size = \"3M\"\n"),
            "r.toml:10:15: storage.lvm.extent_size 3.0 MiB: expected a power of two of at least 1M");
}

TEST(StorageRecipe, OtherVolumesHoldDataDirectoriesOnly) {
  std::string head = "[storage]\nlayout = \"lvm\"\n[[storage.lvm.volumes]]\nname = \"root\"\nsize = \"rest\"\n"
                     "mountpoint = \"/\"\n[[storage.lvm.volumes]]\nname = \"data\"\nsize = \"64M\"\n";
  EXPECT_TRUE(parse(head + "mountpoint = \"/var/log\"\n"));
  EXPECT_TRUE(parse(head + "mountpoint = \"/usr/local\"\n"));
  EXPECT_EQ(error_of(head + "mountpoint = \"/var\"\n"),
            "r.toml:16:14: storage.lvm.volumes: \"data\" cannot be mounted at /var: kiln sets the system up through "
            "/var/lib/dpkg in the root filesystem; mount a volume at a data directory such as /srv, /home, /opt or "
            "/var/log");
  EXPECT_THAT(error_of(head + "mountpoint = \"/etc/ssl\"\n"), HasSubstr("cannot be mounted at /etc/ssl"));
  EXPECT_EQ(error_of(head + "mountpoint = \"/home\"\n[customize]\n[[customize.users]]\nname = \"alice\"\n"),
            "r.toml:18:1: /home/alice is on volume \"data\" (mounted at /home, line 16), but kiln customises the "
            "root filesystem only; do this at first boot, or with customize.run, whose changes go to the right volume");
  EXPECT_THAT(error_of(head + "mountpoint = \"/srv\"\n[[customize.files]]\npath = \"/srv/index.html\"\n"
                              "content = \"hi\"\n"),
              HasSubstr("/srv/index.html is on volume \"data\""));
}

constexpr std::string_view kLuks = "[storage.luks]\npassphrase_file = \"test.passphrase\"\n";

TEST(StorageRecipe, LuksDefaultsAreModernAndTheFileIsResolved) {
  auto recipe = parse(kLuks);
  ASSERT_TRUE(recipe) << recipe.error().to_string();
  const LuksSection& luks = recipe->storage.luks;
  EXPECT_TRUE(recipe->storage.encrypted());
  EXPECT_EQ(luks.version.value, "luks2");
  EXPECT_EQ(luks.cipher.value, "aes-xts-plain64");
  EXPECT_EQ(luks.key_size.value, 512);
  EXPECT_EQ(luks.sector_size.value, 4096);
  EXPECT_EQ(luks.pbkdf.value, "argon2id");
  EXPECT_EQ(luks.name.value, "cryptroot");
  EXPECT_EQ(luks.passphrase_file.value, KILN_SOURCE_DIR "/tests/recipes/test.passphrase");
}

TEST(StorageRecipe, Luks1TakesItsOwnDefaults) {
  auto recipe = parse(std::string(kLuks) + "version = \"luks1\"\ncipher = \"aes-cbc-essiv:sha256\"\n");
  ASSERT_TRUE(recipe) << recipe.error().to_string();
  const LuksSection& luks = recipe->storage.luks;
  EXPECT_EQ(luks.pbkdf.value, "pbkdf2");
  EXPECT_EQ(luks.sector_size.value, 512);
  EXPECT_EQ(luks.key_size.value, 256);
}

TEST(StorageRecipe, LuksSettingsThatDoNotGoTogether) {
  std::string luks(kLuks);
  EXPECT_EQ(error_of(luks + "version = \"luks1\"\npbkdf = \"argon2id\"\n"),
            "r.toml:10:9: storage.luks.pbkdf \"argon2id\" does not go with version \"luks1\" (line 9): LUKS1 "
            "keyslots use pbkdf2 only; use version = \"luks2\" or pbkdf = \"pbkdf2\"");
  EXPECT_EQ(error_of(luks + "version = \"luks1\"\nsector_size = 4096\n"),
            "r.toml:10:15: storage.luks.sector_size 4096 does not go with version \"luks1\" (line 9): LUKS1 has "
            "512-byte sectors only");
  EXPECT_EQ(error_of(luks + "version = \"luks1\"\nlabel = \"secret\"\n"),
            "r.toml:10:9: storage.luks.label: a LUKS1 header has no label (line 9); use version = \"luks2\"");
  EXPECT_THAT(error_of(luks + "version = \"luks1\"\ncipher = \"serpent-xts-plain64\"\n"),
              StartsWith("r.toml:10:10: storage.luks.cipher \"serpent-xts-plain64\" does not go with version "
                         "\"luks1\" (line 9): kiln encrypts LUKS1 volumes itself, with aes-xts-plain64"));
  EXPECT_EQ(error_of(luks + "key_size = 128\n"),
            "r.toml:9:12: storage.luks.key_size 128 does not suit cipher \"aes-xts-plain64\" (the default): expected "
            "256 or 512 (xts splits the key in two)");
  EXPECT_EQ(error_of(luks + "cipher = \"aes-cbc-essiv:sha256\"\nkey_size = 512\n"),
            "r.toml:10:12: storage.luks.key_size 512 does not suit cipher \"aes-cbc-essiv:sha256\" (line 9): "
            "expected 128, 192 or 256");
  EXPECT_EQ(error_of(luks + "cipher = \"aes-xts-essiv:sha256\"\n"),
            "r.toml:9:10: storage.luks.cipher \"aes-xts-essiv:sha256\": xts takes a plain64 IV, not essiv; use "
            "\"aes-xts-plain64\"");
  EXPECT_EQ(error_of(luks + "pbkdf = \"pbkdf2\"\npbkdf_memory = \"64M\"\n"),
            "r.toml:10:16: storage.luks.pbkdf_memory applies to argon2 only, but pbkdf is \"pbkdf2\" (line 9); "
            "remove it");
  EXPECT_EQ(error_of(luks + "pbkdf = \"pbkdf2\"\npbkdf_iterations = 10\n"),
            "r.toml:10:20: storage.luks.pbkdf_iterations 10: pbkdf2 needs at least 1000 (or 0 to benchmark)");
  EXPECT_THAT(error_of(luks + "pbkdf_memory = \"1G\"\n"),
              StartsWith("r.toml:9:16: storage.luks.pbkdf_memory 1.0 GiB is more than half of output.memory 1.0 "
                         "GiB (the default): the guest could not unlock its root at boot"));
  EXPECT_EQ(error_of(luks + "sector_size = 1024\n"), "r.toml:9:15: storage.luks.sector_size 1024: expected 512 or 4096");
  EXPECT_EQ(error_of(luks + "cipher = \"AES\"\n"),
            "r.toml:9:10: storage.luks.cipher: \"AES\": expected CIPHER-MODE-IV as cryptsetup takes it, e.g. "
            "\"aes-xts-plain64\"");
}

TEST(StorageRecipe, LuksNeedsAnExistingSecret) {
  EXPECT_EQ(error_of("[storage.luks]\nlabel = \"x\"\n"),
            "r.toml:7:1: [storage.luks] needs passphrase_file (what the guest asks for at boot) or key_file, or both");
  EXPECT_EQ(error_of("[storage.luks]\npassphrase_file = \"missing.passphrase\"\n"),
            "r.toml:8:19: storage.luks.passphrase_file: " KILN_SOURCE_DIR
            "/tests/recipes/missing.passphrase: no such file");
}

TEST(StorageRecipe, PlainDmCrypt) {
  auto recipe = parse("[storage.dmcrypt]\npassphrase_file = \"test.passphrase\"\ncipher = \"aes-cbc-essiv:sha256\"\n");
  ASSERT_TRUE(recipe) << recipe.error().to_string();
  EXPECT_EQ(recipe->storage.dmcrypt.key_size.value, 256);
  EXPECT_EQ(recipe->storage.dmcrypt.hash.value, "sha256");
  EXPECT_TRUE(recipe->storage.encrypted());
  EXPECT_EQ(error_of("[storage.dmcrypt]\ncipher = \"aes-xts-plain64\"\n"),
            "r.toml:7:1: missing required key storage.dmcrypt.passphrase_file (File whose first line is the "
            "passphrase the guest asks for at boot.)");
  EXPECT_THAT(error_of("[storage]\nlayout = \"plain\"\n[storage.dmcrypt]\npassphrase_file = \"test.passphrase\"\n"
                       "[output]\nformats = [\"partitions\"]\n"),
              StartsWith("r.toml:9:1: [storage.dmcrypt] needs a partition the guest can find by its PARTUUID"));
  EXPECT_THAT(error_of(std::string(kLuks) + "[storage.dmcrypt]\npassphrase_file = \"test.passphrase\"\n"),
              StartsWith("r.toml:9:1: [storage.dmcrypt] and [storage.luks] (line 7) both encrypt the root partition"));
  EXPECT_THAT(error_of("[storage.dmcrypt]\npassphrase_file = \"test.passphrase\"\ncipher = \"serpent-xts-plain64\"\n"),
              HasSubstr("storage.dmcrypt.cipher: unknown value \"serpent-xts-plain64\""));
}

}  // namespace
}  // namespace kiln
