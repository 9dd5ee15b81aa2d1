// What a storage layout asks of the image, and which edits rebuild it: the
// initramfs support goes into the in-image stage, whose key follows the
// storage settings only.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "builder/plan.h"
#include "builder/storage_setup.h"
#include "tests/builder/planned_recipe.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr std::string_view kRecipe = testing::kEncryptedLvmRecipe;

using testing::Planned;

Planned plan_for(std::vector<std::string> overrides = {}, std::string_view text = kRecipe) {
  return testing::plan_recipe(text, std::move(overrides));
}

TEST(StoragePlan, LvmOnLuksNeedsLvm2AndCryptsetupInTheInitramfs) {
  Planned p = plan_for();
  ASSERT_TRUE(p.plan.in_image);
  EXPECT_THAT(p.plan.in_image->description, HasSubstr("initramfs for lvm2 and cryptsetup-initramfs"));
  EXPECT_THAT(p.plan.storage_support.packages, ElementsAre("lvm2", "cryptsetup-initramfs"));
  std::vector<std::string> paths;
  for (const auto& [path, content] : p.plan.storage_support.files) paths.push_back(path);
  EXPECT_THAT(paths, ElementsAre("/etc/crypttab", "/etc/cryptsetup-initramfs/conf-hook",
                                 "/etc/initramfs-tools/conf.d/resume"));
  EXPECT_THAT(crypttab_for(p.recipe, p.plan.identity),
              HasSubstr("\ncryptroot\tUUID=" + p.plan.identity.luks.to_string() + "\tnone\tluks,initramfs\n"));
  EXPECT_EQ(root_device(p.recipe, p.plan.identity), "/dev/mapper/vg0-root");
}

TEST(StoragePlan, PlainLayoutsNeedNothingInside) {
  Planned p = plan_for({}, "[image]\nname = \"plain\"\n[bootstrap]\nsuite = \"bookworm\"\n");
  EXPECT_TRUE(p.plan.storage_support.empty());
  EXPECT_FALSE(p.plan.in_image);
  EXPECT_EQ(root_device(p.recipe, p.plan.identity), "UUID=" + p.plan.identity.root_filesystem.to_string());
}

TEST(StoragePlan, OtherEditsKeepTheInImageStage) {
  Planned a = plan_for();
  Planned b = plan_for({"customize.hostname=other", "storage.size=3G"});
  EXPECT_EQ(a.plan.in_image->key, b.plan.in_image->key);
  EXPECT_EQ(a.plan.identity.luks.to_string(), b.plan.identity.luks.to_string());
  EXPECT_NE(a.plan.identity.root_filesystem.to_string(), b.plan.identity.root_filesystem.to_string());
  Planned c = plan_for({"storage.luks.name=secret"});
  EXPECT_NE(a.plan.in_image->key, c.plan.in_image->key);
  Planned d = plan_for({"storage.lvm.vg=vg1"});
  EXPECT_NE(a.plan.in_image->key, d.plan.in_image->key);
}

TEST(StoragePlan, MapperNamesDoubleDashes) {
  EXPECT_EQ(lvm_mapper_path("vg-kiln", "my-root"), "/dev/mapper/vg--kiln-my--root");
  EXPECT_EQ(lvm_mapper_path("vg0", "root"), "/dev/mapper/vg0-root");
}

}  // namespace
}  // namespace kiln
