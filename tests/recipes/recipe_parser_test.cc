// The recipe format, as a user meets it: what a good recipe gives, and the
// exact file:line:col message for each kind of mistake.
#include "recipes/recipe_parser.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "recipes/customize_ops.h"
#include "recipes/recipe_schema.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr std::string_view kMinimal = R"([image]
name = "web"

[bootstrap]
suite = "bookworm"
)";

Result<Recipe> parse(std::string_view text, std::vector<std::string> overrides = {}) {
  return parse_recipe(text, "r.toml", KILN_SOURCE_DIR "/tests/recipes", overrides);
}

// The message the CLI prints after "kiln: error: ".
std::string error_of(std::string_view text, std::vector<std::string> overrides = {}) {
  auto recipe = parse(text, overrides);
  if (recipe) return "(parsed fine)";
  EXPECT_EQ(recipe.error().kind, ErrorKind::kBadInput);
  return recipe.error().to_string();
}

TEST(RecipeParser, MinimalRecipeGetsDocumentedDefaults) {
  auto recipe = parse(kMinimal);
  ASSERT_TRUE(recipe) << recipe.error().to_string();
  EXPECT_EQ(recipe->image.name.value, "web");
  EXPECT_EQ(recipe->image.version.value, "1.0");
  EXPECT_EQ(recipe->bootstrap.tool.value, "mmdebstrap");
  EXPECT_EQ(recipe->bootstrap.variant.value, "minbase");
  EXPECT_EQ(recipe->bootstrap.components.value, std::vector<std::string>{"main"});
  EXPECT_EQ(recipe->storage.size.value, 2ull << 30);
  EXPECT_EQ(recipe->storage.layout.value, StorageLayout::kGpt);
  EXPECT_FALSE(recipe->storage.size.set);
  EXPECT_TRUE(recipe->wants_output("disk"));
  EXPECT_FALSE(recipe->wants_output("qcow2"));
  EXPECT_TRUE(recipe->customize.steps.empty());
  EXPECT_EQ(recipe->hash.size(), 64u);
}

TEST(RecipeParser, ShippedRecipesAreValid) {
  for (const char* name : {"recipes/debian-12-minimal.toml"}) {
    auto recipe = load_recipe(testing::source_path(name));
    EXPECT_TRUE(recipe) << name << ": " << recipe.error().to_string();
  }
}

TEST(RecipeParser, ValuesRememberWhereTheyWereWritten) {
  auto recipe = parse(std::string(kMinimal) + "[storage]\nsize = \"4G\"\n");
  ASSERT_TRUE(recipe);
  EXPECT_EQ(recipe->storage.size.where.to_string(), "r.toml:7:8");
  EXPECT_TRUE(recipe->storage.size.set);
}

TEST(RecipeParser, TomlSyntaxErrorsPointAtTheSpot) {
  EXPECT_THAT(error_of("[image]\nname = \"web\nx"), StartsWith("r.toml:2:"));
}

TEST(RecipeParser, UnknownKeySuggestsTheNearestOne) {
  EXPECT_EQ(error_of("[image]\nname = \"web\"\n[bootstrap]\nsute = \"bookworm\"\n"),
            "r.toml:4:1: unknown key 'sute' in [bootstrap]; did you mean 'suite'?");
}

TEST(RecipeParser, UnknownSectionIsAnError) {
  EXPECT_THAT(error_of(std::string(kMinimal) + "[strage]\nsize = \"1G\"\n"),
              StartsWith("r.toml:6:2: unknown key 'strage' at the top level; did you mean 'storage'?"));
}

TEST(RecipeParser, WrongTypeNamesExpectedAndFound) {
  EXPECT_EQ(error_of(std::string(kMinimal) + "packages = \"vim\"\n"),
            "r.toml:6:12: bootstrap.packages: expected an array of strings, found a string");
  EXPECT_EQ(error_of(std::string(kMinimal) + "[output]\nvcpus = \"two\"\n"),
            "r.toml:7:9: output.vcpus: expected an integer, found a string");
}

TEST(RecipeParser, BadSizeSaysWhatIsAccepted) {
  EXPECT_THAT(error_of(std::string(kMinimal) + "[storage]\nsize = \"2Q\"\n"),
              StartsWith("r.toml:7:8: storage.size: bad size \"2Q\": expected a number and an "
                         "optional unit K, M, G or T"));
}

TEST(RecipeParser, MissingRequiredKeyNamesIt) {
  EXPECT_THAT(error_of("[image]\nversion = \"2\"\n[bootstrap]\nsuite = \"bookworm\"\n"),
              StartsWith("r.toml:1:1: missing required key image.name"));
  EXPECT_THAT(error_of("[image]\nname = \"web\"\n"),
              StartsWith("r.toml: missing required key bootstrap.suite"));
}

TEST(RecipeParser, ChoicesAreListed) {
  EXPECT_EQ(error_of(std::string(kMinimal) + "tool = \"cdebootstrap\"\n"),
            "r.toml:6:8: bootstrap.tool: unknown value \"cdebootstrap\": expected \"mmdebstrap\" or "
            "\"debootstrap\"");
  EXPECT_THAT(error_of(std::string(kMinimal) + "[output]\nformats = [\"disk\", \"vmdk\"]\n"),
              HasSubstr("output.formats: unknown value \"vmdk\""));
}

TEST(RecipeParser, VariantMustSuitTheTool) {
  EXPECT_THAT(error_of(std::string(kMinimal) + "tool = \"debootstrap\"\nvariant = \"essential\"\n"),
              StartsWith("r.toml:7:11: bootstrap.variant \"essential\" is not a variant of debootstrap"));
}

TEST(RecipeParser, InitramfsModulesAreModuleNamesForMmdebstrap) {
  auto recipe = parse(std::string(kMinimal) + "initramfs_modules = [\"virtio_blk\", \"xen-blkfront\"]\n");
  ASSERT_TRUE(recipe) << recipe.error().to_string();
  EXPECT_THAT(recipe->bootstrap.initramfs_modules.value, ElementsAre("virtio_blk", "xen-blkfront"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "initramfs_modules = [\"ext4; rm -rf /\"]\n"),
              StartsWith("r.toml:6:21: bootstrap.initramfs_modules: \"ext4; rm -rf /\": not a kernel module name"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "tool = \"debootstrap\"\ninitramfs_modules = [\"ext4\"]\n"),
              StartsWith("r.toml:7:21: bootstrap.initramfs_modules are set through mmdebstrap's hooks"));
}

TEST(RecipeParser, ImportConflictsWithBootstrapSettings) {
  EXPECT_THAT(error_of("[image]\nname = \"web\"\n[bootstrap]\nsuite = \"bookworm\"\nfrom = \"rootfs.tar\"\n"),
              StartsWith("r.toml:5:8: bootstrap.from conflicts with the bootstrap setting at r.toml:4:9"));
  auto recipe = parse("[image]\nname = \"web\"\n[bootstrap]\nfrom = \"rootfs.tar.zst\"\n");
  ASSERT_TRUE(recipe) << recipe.error().to_string();
  EXPECT_EQ(recipe->bootstrap.from.value, "rootfs.tar.zst");
}

TEST(RecipeParser, PlainLayoutCannotMakeADisk) {
  EXPECT_THAT(error_of(std::string(kMinimal) + "[storage]\nlayout = \"plain\"\n"),
              StartsWith("r.toml:7:10: output format \"disk\" needs a partitioned disk, but storage.layout is \"plain\" (line 7)"));
}

// NAME.xl.cfg boots the kernel beside it, from root.img or else disk.raw.
TEST(RecipeParser, AXenDomainNeedsTheKernelAndADiskToBoot) {
  std::string recipe = std::string(kMinimal) + "[output]\nformats = ";
  EXPECT_THAT(error_of(recipe + "[\"disk\", \"xen\"]\n"),
              StartsWith("r.toml:7:11: output format \"xen\" describes a domain booting with vmlinuz and initrd.img: "
                         "add \"kernel\" to output.formats"));
  EXPECT_THAT(error_of(recipe + "[\"kernel\", \"xen\"]\n"),
              StartsWith("r.toml:7:11: output format \"xen\" describes a domain booting root.img or disk.raw: add "
                         "\"partitions\" or \"disk\" to output.formats"));
  EXPECT_TRUE(parse(recipe + "[\"disk\", \"kernel\", \"xen\"]\n"));
  EXPECT_TRUE(parse(recipe + "[\"partitions\", \"kernel\", \"xen\"]\n"));
  // The plain layout's root.img is its only image, written whatever the formats.
  EXPECT_TRUE(parse(recipe + "[\"kernel\", \"xen\"]\n[storage]\nlayout = \"plain\"\n"));
}

TEST(RecipeParser, SetOverridesAnyKeyAndIsValidatedLikeTheFile) {
  auto recipe = parse(kMinimal, {"customize.hostname=web1", "storage.size=3G",
                                 "bootstrap.packages=[\"vim\", \"curl\"]"});
  ASSERT_TRUE(recipe) << recipe.error().to_string();
  ASSERT_EQ(recipe->customize.steps.size(), 1u);
  EXPECT_EQ(std::get<SetHostname>(recipe->customize.steps[0].operation).hostname, "web1");
  EXPECT_EQ(recipe->storage.size.value, 3ull << 30);
  EXPECT_EQ(recipe->bootstrap.packages.value, (std::vector<std::string>{"vim", "curl"}));
  EXPECT_EQ(recipe->customize.steps[0].where.file, "--set customize.hostname=web1");

  EXPECT_EQ(error_of(kMinimal, {"storage.size=2Q"}),
            "--set storage.size=2Q: storage.size: bad size \"2Q\": expected a number and an optional "
            "unit K, M, G or T (powers of 1024) or KB, MB, GB, TB, e.g. \"2G\"");
  EXPECT_EQ(error_of(kMinimal, {"customize.hostnme=x"}),
            "--set customize.hostnme=x: unknown key 'hostnme' in [customize]; did you mean 'hostname'?");
  EXPECT_THAT(error_of(kMinimal, {"nonsense"}), HasSubstr("expected KEY=VALUE"));
}

TEST(RecipeParser, SetChangesTheRecipeHash) {
  auto a = parse(kMinimal);
  auto b = parse(kMinimal, {"customize.hostname=web1"});
  auto c = parse(kMinimal, {"customize.hostname=web1"});
  ASSERT_TRUE(a && b && c);
  EXPECT_NE(a->hash, b->hash);
  EXPECT_EQ(b->hash, c->hash);
}

TEST(CustomizeParser, StepsFollowTheOperationTableOrder) {
  auto recipe = parse(std::string(kMinimal) + R"(
[customize]
hostname = "web1"
run = ["echo hi"]
packages = ["vim"]
timezone = "Europe/Paris"
locale = "en_US.UTF-8"
)");
  ASSERT_TRUE(recipe) << recipe.error().to_string();
  std::vector<size_t> kinds;
  for (const auto& step : recipe->customize.steps) kinds.push_back(step.operation.index());
  // packages, locale, run (in the image), then hostname, timezone (offline)
  EXPECT_TRUE(std::holds_alternative<InstallPackages>(recipe->customize.steps[0].operation));
  EXPECT_TRUE(std::holds_alternative<SetLocale>(recipe->customize.steps[1].operation));
  EXPECT_TRUE(std::holds_alternative<RunCommand>(recipe->customize.steps[2].operation));
  EXPECT_TRUE(std::holds_alternative<SetHostname>(recipe->customize.steps[3].operation));
  EXPECT_TRUE(std::holds_alternative<SetTimezone>(recipe->customize.steps[4].operation));
}

TEST(CustomizeParser, FileEntriesTakeExactlyOneAction) {
  auto recipe = parse(std::string(kMinimal) + R"(
[[customize.files]]
path = "/etc/motd"
content = "hello\n"
mode = "0600"
owner = "root:adm"

[[customize.files]]
path = "/etc/sysctl.conf"
append_line = "vm.swappiness=10"

[[customize.files]]
path = "/usr/share/doc"
delete = true

[[customize.files]]
path = "/usr/local/bin/tool"
mode = 0o755
)");
  ASSERT_TRUE(recipe) << recipe.error().to_string();
  ASSERT_EQ(recipe->customize.steps.size(), 4u);
  const auto& motd = std::get<FileOperation>(recipe->customize.steps[0].operation);
  EXPECT_EQ(motd.action, FileOperation::Action::kWrite);
  EXPECT_EQ(motd.content, "hello\n");
  EXPECT_EQ(*motd.mode, 0600u);
  EXPECT_EQ(*motd.owner, "root:adm");
  EXPECT_EQ(std::get<FileOperation>(recipe->customize.steps[2].operation).action,
            FileOperation::Action::kDelete);
  const auto& chmod = std::get<FileOperation>(recipe->customize.steps[3].operation);
  EXPECT_EQ(chmod.action, FileOperation::Action::kAttributesOnly);
  EXPECT_EQ(*chmod.mode, 0755u);

  EXPECT_EQ(error_of(std::string(kMinimal) +
                     "[[customize.files]]\npath = \"/etc/x\"\ncontent = \"a\"\nsymlink = \"/b\"\n"),
            "r.toml:9:11: customize.files: conflicting actions for /etc/x: 'content' and 'symlink' "
            "(one per entry)");
  EXPECT_THAT(error_of(std::string(kMinimal) + "[[customize.files]]\npath = \"etc/x\"\ncontent = \"a\"\n"),
              HasSubstr("expected an absolute path inside the image"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "[[customize.files]]\npath = \"/etc/../x\"\ndelete = true\n"),
              HasSubstr("'.' and '..' components are not allowed"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "[[customize.files]]\npath = \"/x\"\nmode = \"0999\"\nmkdir = true\n"),
              HasSubstr("bad mode"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "[[customize.files]]\npath = \"/x\"\ncopy = \"missing.txt\"\n"),
              HasSubstr("missing.txt: no such file"));
}

TEST(CustomizeParser, UsersAreChecked) {
  auto recipe = parse(std::string(kMinimal) + R"(
[[customize.users]]
name = "alice"
groups = ["adm"]
sudo = true
ssh_authorized_keys = ["ssh-ed25519 AAAAC3Nza alice@laptop"]
)");
  ASSERT_TRUE(recipe) << recipe.error().to_string();
  const auto& alice = std::get<AddUser>(recipe->customize.steps[0].operation);
  EXPECT_EQ(alice.name, "alice");
  EXPECT_TRUE(alice.sudo);
  EXPECT_EQ(alice.groups, std::vector<std::string>{"adm"});

  EXPECT_THAT(error_of(std::string(kMinimal) + "[[customize.users]]\nname = \"Bad Name\"\n"),
              HasSubstr("customize.users.name: \"Bad Name\""));
  EXPECT_THAT(error_of(std::string(kMinimal) + "[[customize.users]]\nname = \"a\"\n[[customize.users]]\nname = \"a\"\n"),
              HasSubstr("user \"a\" is listed twice"));
  EXPECT_EQ(error_of(std::string(kMinimal) + "[[customize.users]]\nname = \"a\"\nsuod = true\n"),
            "r.toml:8:1: unknown key 'suod' in [[customize.users]]; did you mean 'sudo'?");
}

TEST(CustomizeParser, HostnameAndLocaleAreValidated) {
  EXPECT_THAT(error_of(std::string(kMinimal) + "[customize]\nhostname = \"web_1\"\n"),
              StartsWith("r.toml:7:12: customize.hostname: \"web_1\": not a valid host name"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "[customize]\nlocale = \"english\"\n"),
              HasSubstr("expected a locale such as"));
}

TEST(RecipeParser, PathsAreExactAndControlCharactersAreRefusedWhereTheyStand) {
  // "\u0000" would make a C string of "/etc/x" and write the wrong file.
  EXPECT_EQ(error_of(std::string(kMinimal) + "[[customize.files]]\npath = \"/etc/x\\u0000y\"\ncontent = \"a\"\n"),
            "r.toml:7:8: customize.files.path: \"/etc/x\\x00y\": a NUL character here would cut the value short");
  EXPECT_THAT(error_of(std::string(kMinimal) + "[[customize.files]]\npath = \"/etc/x\\u001b[2J\"\ndelete = true\n"),
              HasSubstr("\"/etc/x\\x1b[2J\": control characters are not allowed here"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "[[customize.files]]\npath = \"/x\"\nsymlink = \"/a\\nb\"\n"),
              HasSubstr("customize.files.symlink: \"/a\\nb\": control characters"));
  EXPECT_THAT(error_of("[image]\nname = \"web\"\n[bootstrap]\nfrom = \"root\\u0000.tar\"\n"),
              StartsWith("r.toml:4:8: bootstrap.from: \"root\\x00.tar\": a NUL character"));
}

TEST(RecipeParser, TheVersionIsCheckedWhereItIsWritten) {
  for (const char* bad : {"1.0/../../x", "..", "1\\n2", "a b", "-rc"})
    EXPECT_THAT(error_of("[image]\nname = \"web\"\nversion = \"" + std::string(bad) +
                         "\"\n[bootstrap]\nsuite = \"bookworm\"\n"),
                StartsWith("r.toml:3:11: image.version: "))
        << bad;
  EXPECT_EQ(error_of("[image]\nname = \"web\"\nversion = \"2024.1+deb12~rc1\"\n[bootstrap]\nsuite = \"bookworm\"\n"),
            "(parsed fine)");
}

TEST(RecipeParser, AHugeValueIsShownCutAndEscaped) {
  std::string huge(10 << 20, 'A');
  std::string error = error_of(std::string(kMinimal) + "[customize]\nhostname = \"" + huge + "\\u0007\"\n");
  EXPECT_LT(error.size(), 400u);
  EXPECT_THAT(error, HasSubstr("(cut; 10485761 bytes in all)"));
  EXPECT_EQ(error.find('\a'), std::string::npos);
}

TEST(RecipeSchema, ChoicesResolveToEnumsNamedByTheTable) {
  EXPECT_EQ(name_of(StorageLayout::kGpt), "gpt");
  EXPECT_EQ(name_of(StorageLayout::kLvm), "lvm");
  EXPECT_EQ(name_of(StorageLayout::kPlain), "plain");
  for (auto [type, name] : {std::pair{FilesystemType::kExt4, "ext4"}, std::pair{FilesystemType::kExt3, "ext3"},
                            std::pair{FilesystemType::kExt2, "ext2"}, std::pair{FilesystemType::kSwap, "swap"}})
    EXPECT_EQ(name_of(type), name);
  auto plain = parse(std::string(kMinimal) + "[storage]\nlayout = \"plain\"\nfilesystem = \"ext2\"\n[output]\n"
                                             "formats = [\"partitions\"]\n");
  ASSERT_TRUE(plain) << plain.error().to_string();
  EXPECT_EQ(plain->storage.layout.value, StorageLayout::kPlain);
  EXPECT_EQ(plain->storage.filesystem.value, FilesystemType::kExt2);
  EXPECT_EQ(plain->storage.layout.where.line, 7);
}

TEST(RecipeSchema, EveryKeyIsDocumented) {
  for (const SettingInfo& setting : recipe_settings()) {
    EXPECT_FALSE(setting.doc.empty()) << setting.section << "." << setting.key;
    EXPECT_TRUE(setting.required || !setting.default_value.empty() || setting.key == "suite")
        << setting.section << "." << setting.key << " has neither a default nor 'required'";
  }
  for (const CustomizeOpInfo& op : customize_operations()) {
    EXPECT_FALSE(op.doc.empty()) << op.key;
    EXPECT_FALSE(op.example.empty()) << op.key;
  }
}

}  // namespace
}  // namespace kiln
