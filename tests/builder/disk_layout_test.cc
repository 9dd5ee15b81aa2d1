// The disk layout of a recipe: where the ESP, the root partition, the LUKS
// header and the volume group go, and the file:line:col message when
// storage.size cannot hold what the recipe asks for.
#include "builder/disk_layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "builder/plan.h"
#include "recipes/recipe_parser.h"

namespace kiln {
namespace {

using ::testing::StartsWith;

constexpr std::string_view kBase = "[image]\nname = \"web\"\n\n[bootstrap]\nsuite = \"bookworm\"\n\n";

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

constexpr uint64_t kMiB = 1 << 20;

Result<DiskLayout> layout_of(std::string_view storage, std::vector<std::string> overrides = {}) {
  auto recipe = parse_recipe(std::string(kBase) + std::string(storage), "r.toml", KILN_SOURCE_DIR "/tests/recipes",
                             overrides);
  if (!recipe) return std::unexpected(recipe.error());
  return plan_disk_layout(*recipe, ImageIdentity{});
}

std::string error_of(std::string_view storage, std::vector<std::string> overrides = {}) {
  auto layout = layout_of(storage, overrides);
  return layout ? "(fits)" : layout.error().to_string();
}

TEST(DiskLayout, AGptDiskHasTheEspThenTheRootInWholeMebibytes) {
  auto layout = layout_of("[storage]\nsize = \"2G\"\n");
  ASSERT_TRUE(layout) << layout.error().to_string();
  ASSERT_TRUE(layout->esp);
  EXPECT_EQ(layout->esp->offset, kMiB);
  EXPECT_EQ(layout->esp->size, 128 * kMiB);
  EXPECT_EQ(layout->root_offset, 129 * kMiB);
  // Up to the backup table, in whole MiB: 2048 - 129 - 1 (the part holding the table).
  EXPECT_EQ(layout->root_size, 1918 * kMiB);
  EXPECT_EQ(layout->header_size, 0u);
  EXPECT_EQ(layout->plaintext_size, layout->root_size);
  EXPECT_EQ(layout->partitions.size(), 2u);
}

TEST(DiskLayout, APlainImageIsAllRoot) {
  auto layout = layout_of("[storage]\nsize = \"300M\"\nlayout = \"plain\"\n[output]\nformats = [\"partitions\"]\n");
  ASSERT_TRUE(layout) << layout.error().to_string();
  EXPECT_FALSE(layout->esp);
  EXPECT_TRUE(layout->table.partitions.empty());
  EXPECT_EQ(layout->root_offset, 0u);
  EXPECT_EQ(layout->root_size, 300 * kMiB);
}

TEST(DiskLayout, TheLuksHeaderComesOffTheRoot) {
  for (const auto& [version, header] : {std::pair{"luks2", 16 * kMiB}, std::pair{"luks1", 2 * kMiB}}) {
    auto layout = layout_of("[storage]\nsize = \"1G\"\n[storage.luks]\nversion = \"" + std::string(version) +
                            "\"\npassphrase_file = \"test.passphrase\"\n");
    ASSERT_TRUE(layout) << layout.error().to_string();
    EXPECT_EQ(layout->header_size, header);
    EXPECT_EQ(layout->plaintext_size, layout->root_size - header);
  }
}

TEST(DiskLayout, TheEspMustLeaveRoomForTheRoot) {
  EXPECT_EQ(error_of("[storage]\nsize = \"130M\"\n"),
            "r.toml:8:8: storage.size = \"130M\" leaves no room for the root partition next to the 128 MiB EFI "
            "system partition (storage.esp_size, the default); set storage.size = \"768M\"");
}

TEST(DiskLayout, VolumesLargerThanTheVolumeGroupNameTheSizeThatFits) {
  // 400M less the ESP and the metadata leaves 268 MiB in 4 MiB extents:
  // enough for 256M of swap and a root, until the LUKS header takes 16 MiB.
  EXPECT_EQ(error_of(kLvm, {"storage.size=400M"}), "(fits)");
  std::string luks = std::string(kLvm) + "[storage.luks]\npassphrase_file = \"test.passphrase\"\n";
  EXPECT_THAT(error_of(luks, {"storage.size=400M"}),
              StartsWith("r.toml:21:8: storage.lvm.volumes need 260 MiB (root rest, swap 256M, at least one extent for "
                         "the rest), but the volume group holds 252 MiB (storage.size 400M less the 128 MiB EFI system "
                         "partition, the LUKS header and the LVM metadata); set storage.size = \"408M\""));
  EXPECT_EQ(error_of(luks, {"storage.size=408M"}), "(fits)");
}

}  // namespace
}  // namespace kiln
