// What decides whether a stage re-runs: the content keys of the plan.
#include "builder/plan.h"

#include <optional>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "tests/builder/planned_recipe.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

constexpr std::string_view kRecipe = R"([image]
name = "web"
[bootstrap]
suite = "bookworm"
packages = ["openssh-server"]
[customize]
hostname = "web"
)";

using testing::Planned;

Planned plan_for(std::vector<std::string> overrides = {}, std::optional<int64_t> epoch = 1700000000) {
  return testing::plan_recipe(kRecipe, std::move(overrides), epoch);
}

TEST(Plan, OfflineCustomizationKeepsTheBootstrapKey) {
  Planned base = plan_for();
  Planned renamed = plan_for({"customize.hostname=web2", "customize.timezone=Europe/Paris"});
  EXPECT_EQ(base.plan.source.key, renamed.plan.source.key);
  EXPECT_FALSE(base.plan.in_image);
  EXPECT_FALSE(renamed.plan.in_image);
}

TEST(Plan, InImagePackagesKeepTheBootstrapKeyButGetTheirOwnStage) {
  Planned base = plan_for();
  Planned more = plan_for({"customize.packages=[\"curl\"]"});
  EXPECT_EQ(base.plan.source.key, more.plan.source.key);
  ASSERT_TRUE(more.plan.in_image);
  Planned other = plan_for({"customize.packages=[\"vim\"]"});
  ASSERT_TRUE(other.plan.in_image);
  EXPECT_NE(more.plan.in_image->key, other.plan.in_image->key);
  // and an offline change does not touch the in-image key
  Planned renamed = plan_for({"customize.packages=[\"curl\"]", "customize.hostname=x"});
  EXPECT_EQ(more.plan.in_image->key, renamed.plan.in_image->key);
}

// The shipped LVM and LUKS recipes bake from the default recipe's cached
// bootstrap: their storage packages go into the in-image stage. A bootstrap
// of their own would cost every first bake of them (and make test) a whole
// mmdebstrap run.
TEST(Plan, TheShippedStorageRecipesShareTheDefaultRecipesBootstrap) {
  // The bootstrap key, and whether the plan has an in-image stage.
  auto shipped = [](const std::string& name) -> std::optional<std::pair<std::string, bool>> {
    auto recipe = load_recipe(testing::source_path("recipes/debian-12-" + name + ".toml"));
    if (!recipe) {
      ADD_FAILURE() << name << ": " << recipe.error().to_string();
      return std::nullopt;
    }
    auto plan = make_plan(*recipe, {1700000000, 1800000000, "http://mirror.example/debian"});
    if (!plan) {
      ADD_FAILURE() << name << ": " << plan.error().to_string();
      return std::nullopt;
    }
    return std::pair{plan->source.key, plan->in_image.has_value()};
  };
  const auto minimal = shipped("minimal");
  ASSERT_TRUE(minimal);
  for (const std::string name : {"lvm", "luks"}) {
    SCOPED_TRACE(name);
    const auto storage = shipped(name);
    ASSERT_TRUE(storage);
    EXPECT_EQ(storage->first, minimal->first);
    EXPECT_TRUE(storage->second) << "lvm2 or cryptsetup-initramfs, installed in the image";
  }
}

TEST(Plan, BootstrapInputsChangeTheBootstrapKey) {
  Planned base = plan_for();
  EXPECT_NE(base.plan.source.key, plan_for({"bootstrap.packages=[\"vim\"]"}).plan.source.key);
  EXPECT_NE(base.plan.source.key, plan_for({"bootstrap.suite=trixie"}).plan.source.key);
  EXPECT_NE(base.plan.source.key, plan_for({"bootstrap.variant=apt"}).plan.source.key);
  EXPECT_NE(base.plan.source.key, plan_for({}, 1700000001).plan.source.key);
  // package order does not matter to apt, so it does not matter to the key
  EXPECT_EQ(plan_for({"bootstrap.packages=[\"a1\", \"b1\"]"}).plan.source.key,
            plan_for({"bootstrap.packages=[\"b1\", \"a1\"]"}).plan.source.key);
}

TEST(Plan, MirrorDefaultsToTheHostsAndCountsInTheKey) {
  Planned base = plan_for();
  EXPECT_EQ(base.plan.mirror, "http://mirror.example/debian");
  Planned other = plan_for({"bootstrap.mirror=http://other.example/debian"});
  EXPECT_EQ(other.plan.mirror, "http://other.example/debian");
  EXPECT_NE(base.plan.source.key, other.plan.source.key);
}

TEST(Plan, TimestampComesFromSourceDateEpochOrTheClock) {
  Planned fixed = plan_for({}, 1700000000);
  EXPECT_TRUE(fixed.plan.reproducible);
  EXPECT_EQ(fixed.plan.timestamp, 1700000000);
  Planned now = plan_for({}, std::nullopt);
  EXPECT_FALSE(now.plan.reproducible);
  EXPECT_EQ(now.plan.timestamp, 1800000000);
}

TEST(Plan, IdentifiersFollowFromTheRecipe) {
  Planned a = plan_for();
  Planned b = plan_for();
  Planned c = plan_for({"customize.hostname=other"});
  EXPECT_EQ(a.plan.identity.root_filesystem.to_string(), b.plan.identity.root_filesystem.to_string());
  EXPECT_NE(a.plan.identity.root_filesystem.to_string(), c.plan.identity.root_filesystem.to_string());
  EXPECT_NE(a.plan.identity.root_filesystem.to_string(), a.plan.identity.root_partition.to_string());
  EXPECT_EQ(a.plan.identity.root_filesystem.to_string()[14], '5');  // RFC 4122 version 5
}

TEST(Plan, BuiltinLocalesNeedNoProgramInTheImage) {
  Planned c_utf8 = plan_for({"customize.locale=C.UTF-8"});
  EXPECT_FALSE(c_utf8.plan.in_image);
  Planned french = plan_for({"customize.locale=fr_FR.UTF-8"});
  EXPECT_TRUE(french.plan.in_image);
}

}  // namespace
}  // namespace kiln
