// What the bootstrap stage runs, checked through a FakeCommandRunner: the
// tool's argv and environment follow from the recipe, debootstrap's tree is
// packed into the tar, and a failure names the recipe's place. No root,
// no mirror and no mmdebstrap are needed.
#include "builder/bootstrap.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/builder/planned_recipe.h"
#include "tests/fake_command_runner.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr std::string_view kRecipe = R"([image]
name = "web"
[bootstrap]
suite = "bookworm"
packages = ["openssh-server", "curl"]
)";

using testing::Planned;

Planned plan_for(std::vector<std::string> overrides = {}) { return testing::plan_recipe(kRecipe, std::move(overrides)); }

class BootstrapTest : public ::testing::Test {
 protected:
  Result<> bootstrap(const Planned& planned) {
    return bootstrap_rootfs(planned.plan, dir_ / "rootfs.tar", dir_ / "work", reporter_, runner_);
  }
  testing::ScratchDir dir_;
  testing::FakeCommandRunner runner_;
  Reporter& reporter_ = Reporter::quiet();
};

TEST_F(BootstrapTest, MmdebstrapWritesTheTarWithTheRecipesSuitePackagesAndMirror) {
  Planned planned = plan_for();
  ASSERT_TRUE(bootstrap(planned));
  ASSERT_EQ(runner_.commands.size(), 1u);
  EXPECT_THAT(runner_.commands[0].argv,
              ElementsAre("mmdebstrap", "--variant=minbase", "--architectures=amd64", "--components=main",
                          "--format=tar", "--aptopt=Acquire::Retries \"3\"",
                          "--include=openssh-server,curl,linux-image-amd64",
                          "bookworm", (dir_ / "rootfs.tar").string(), "http://mirror.example/debian"));
}

TEST_F(BootstrapTest, TheKernelPackageAndTheEfiBootLoaderFollowTheArchitecture) {
  ASSERT_TRUE(bootstrap(plan_for({"image.arch=arm64"})));
  EXPECT_THAT(runner_.commands[0].argv, ::testing::Contains("--architectures=arm64"));
  // The host's systemd-boot is amd64's: an arm64 ESP takes the image's own.
  EXPECT_THAT(runner_.commands[0].argv,
              ::testing::Contains("--include=openssh-server,curl,linux-image-arm64,systemd-boot-efi"));
  ASSERT_TRUE(bootstrap(plan_for({"image.arch=i386"})));
  EXPECT_THAT(runner_.commands[1].argv, ::testing::Contains("--include=openssh-server,curl,linux-image-686,systemd-boot-efi"));
}

TEST_F(BootstrapTest, AKernelTheRecipeNamesIsTheOnlyOne) {
  ASSERT_TRUE(bootstrap(plan_for({"bootstrap.packages=[\"linux-image-cloud-amd64\"]"})));
  EXPECT_THAT(runner_.commands[0].argv, ::testing::Contains("--include=linux-image-cloud-amd64"));
}

TEST_F(BootstrapTest, AFilesystemWithoutKernelOutputGetsNoKernel) {
  ASSERT_TRUE(bootstrap(plan_for({"storage.layout=\"plain\"", "output.formats=[\"partitions\"]", "image.arch=arm64"})));
  EXPECT_THAT(runner_.commands[0].argv, ::testing::Contains("--include=openssh-server,curl"));
}

TEST_F(BootstrapTest, TheArchitectureIsPartOfTheStageKey) {
  EXPECT_NE(plan_for().plan.source.key, plan_for({"image.arch=arm64"}).plan.source.key);
  EXPECT_NE(plan_for({"image.arch=i386"}).plan.source.key, plan_for({"image.arch=arm64"}).plan.source.key);
}

TEST_F(BootstrapTest, AptOptionsGoToMmdebstrapInOrderAndIntoTheKey) {
  Planned planned = plan_for({"bootstrap.apt_options=[\"Acquire::Check-Valid-Until \\\"false\\\"\", \"APT::Sandbox::User root\"]"});
  ASSERT_TRUE(bootstrap(planned));
  EXPECT_THAT(runner_.commands[0].argv, ::testing::IsSupersetOf({"--aptopt=Acquire::Check-Valid-Until \"false\"",
                                                                 "--aptopt=APT::Sandbox::User root"}));
  EXPECT_NE(planned.plan.source.key, plan_for().plan.source.key);
}

TEST_F(BootstrapTest, AReproducibleBakeGivesTheToolItsTimestamp) {
  ASSERT_TRUE(bootstrap(plan_for()));
  EXPECT_THAT(runner_.commands[0].env, ::testing::Contains("SOURCE_DATE_EPOCH=1700000000"));
  EXPECT_THAT(runner_.commands[0].env, ::testing::Contains("LC_ALL=C.UTF-8"));
}

TEST_F(BootstrapTest, DebootstrapBuildsATreeThatIsPackedIntoTheTar) {
  Planned planned = plan_for({"bootstrap.tool=debootstrap"});
  runner_.on_run = [&](const Command& command) -> Result<Completed> {
    // What debootstrap would have made.
    testing::write_text(std::filesystem::path(command.argv[command.argv.size() - 2]) / "etc/debian_version",
                        "12.5\n");
    return Completed{};
  };
  ASSERT_TRUE(bootstrap(planned));
  ASSERT_EQ(runner_.commands.size(), 1u);
  EXPECT_EQ(runner_.commands[0].argv[0], "debootstrap");
  EXPECT_THAT(runner_.commands[0].argv, ::testing::Contains("--include=openssh-server,curl,linux-image-amd64"));
  EXPECT_TRUE(std::filesystem::file_size(dir_ / "rootfs.tar") > 0);
}

TEST_F(BootstrapTest, AFailureNamesTheToolTheSuiteAndTheRecipesLine) {
  runner_.on_run = [](const Command&) -> Result<Completed> {
    return fail(ErrorKind::kFailed, "exited with code 1");
  };
  auto result = bootstrap(plan_for());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message, "bootstrap with mmdebstrap (bookworm minbase) failed: exited with code 1");
  EXPECT_EQ(result.error().where.to_string(), "r.toml:4:9");
}

}  // namespace
}  // namespace kiln
