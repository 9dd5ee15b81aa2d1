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

TEST_F(BootstrapTest, InitramfsModulesGoToTheCustomizeHookAndIntoTheKey) {
  Planned planned = plan_for({"bootstrap.initramfs_modules=[\"virtio_blk\", \"ext4\"]"});
  BootstrapResources resources;
  resources.hooks = BootstrapHooks{"/usr/bin/kiln", ""};
  ASSERT_TRUE(bootstrap_rootfs(planned.plan, dir_ / "rootfs.tar", dir_ / "work", reporter_, runner_, resources));
  EXPECT_THAT(runner_.commands[0].argv,
              ::testing::Contains(
                  "--customize-hook=/usr/bin/kiln bootstrap-hook customize --initramfs-modules virtio_blk,ext4 \"$1\""));
  EXPECT_NE(planned.plan.source.key, plan_for().plan.source.key);
  // Without kiln's hooks nothing would choose them: refused, not ignored.
  auto unhooked = bootstrap(planned);
  ASSERT_FALSE(unhooked);
  EXPECT_THAT(unhooked.error().to_string(), HasSubstr("bootstrap.initramfs_modules need kiln's mmdebstrap hooks"));
}

TEST_F(BootstrapTest, AReproducibleBakeGivesTheToolItsTimestamp) {
  ASSERT_TRUE(bootstrap(plan_for()));
  EXPECT_THAT(runner_.commands[0].env, ::testing::Contains("SOURCE_DATE_EPOCH=1700000000"));
  EXPECT_THAT(runner_.commands[0].env, ::testing::Contains("LC_ALL=C.UTF-8"));
}

TEST_F(BootstrapTest, KilnTakesPartThroughMmdebstrapsHooks) {
  BootstrapResources resources;
  resources.hooks = BootstrapHooks{"/usr/bin/kiln", "/var/cache/kiln it's/packages"};
  ASSERT_TRUE(bootstrap_rootfs(plan_for().plan, dir_ / "rootfs.tar", dir_ / "work", reporter_, runner_, resources));
  const auto& argv = runner_.commands[0].argv;
  const std::string cache = " --cache '/var/cache/kiln it'\\''s/packages' \"$1\"";
  EXPECT_THAT(argv, ::testing::IsSupersetOf(std::vector<std::string>{
                        "--skip=essential/unlink", "--setup-hook=/usr/bin/kiln bootstrap-hook setup" + cache,
                        "--customize-hook=/usr/bin/kiln bootstrap-hook customize" + cache}));
  EXPECT_THAT(runner_.commands[0].env, ::testing::Contains("INITRD=No"));
  // Options come before the suite, target and mirror.
  EXPECT_EQ(argv[argv.size() - 3], "bookworm");
}

TEST_F(BootstrapTest, WithoutAPackageCacheOnlyTheInitramfsIsDeferred) {
  BootstrapResources resources;
  resources.hooks = BootstrapHooks{"/usr/bin/kiln", ""};
  ASSERT_TRUE(bootstrap_rootfs(plan_for().plan, dir_ / "rootfs.tar", dir_ / "work", reporter_, runner_, resources));
  std::vector<std::string> hooks;
  for (const std::string& arg : runner_.commands[0].argv)
    if (arg.find("hook") != std::string::npos || arg.starts_with("--skip")) hooks.push_back(arg);
  EXPECT_THAT(hooks, ElementsAre("--customize-hook=/usr/bin/kiln bootstrap-hook customize \"$1\""));
}

TEST_F(BootstrapTest, WithoutHooksMmdebstrapRunsAlone) {
  ASSERT_TRUE(bootstrap(plan_for()));
  for (const std::string& arg : runner_.commands[0].argv) EXPECT_THAT(arg, ::testing::Not(HasSubstr("hook")));
  EXPECT_THAT(runner_.commands[0].env, ::testing::Not(::testing::Contains("INITRD=No")));
}

TEST_F(BootstrapTest, TheCustomizeHookMakesEachMissingInitramfsOnce) {
  std::filesystem::path rootfs = dir_ / "tree";
  testing::write_text(rootfs / "usr/sbin/update-initramfs", "#!/bin/sh\n");
  testing::write_text(rootfs / "usr/bin/linux-update-symlinks", "#!/usr/bin/perl\n");
  testing::write_text(rootfs / "boot/vmlinuz-6.1.0-50-amd64", "kernel");
  testing::write_text(rootfs / "boot/vmlinuz-6.1.0-49-amd64", "older kernel");
  testing::write_text(rootfs / "boot/initrd.img-6.1.0-49-amd64", "made before");
  auto report = run_bootstrap_hook("customize", "", {}, rootfs, runner_);
  ASSERT_TRUE(report) << report.error().to_string();
  ASSERT_EQ(runner_.commands.size(), 2u);
  EXPECT_THAT(runner_.commands[0].argv,
              ElementsAre("env", "--unset=TMPDIR", "--unset=APT_CONFIG", "--unset=INITRD", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "chroot",
                          rootfs.string(), "update-initramfs", "-c", "-k", "6.1.0-50-amd64"));
  // INITRD=No kept linux-update-symlinks from linking /initrd.img too.
  EXPECT_THAT(runner_.commands[1].argv, ::testing::IsSupersetOf(std::vector<std::string>{
                                            "linux-update-symlinks", "install", "6.1.0-50-amd64",
                                            "/boot/vmlinuz-6.1.0-50-amd64"}));
  EXPECT_THAT(report->notes, ElementsAre(HasSubstr("made the initramfs of 6.1.0-50-amd64 once")));
}

TEST_F(BootstrapTest, TheCustomizeHookConfiguresInitramfsToolsToCarryOnlyTheModulesGiven) {
  std::filesystem::path rootfs = dir_ / "tree";
  testing::write_text(rootfs / "usr/sbin/update-initramfs", "#!/bin/sh\n");
  testing::write_text(rootfs / "boot/vmlinuz-6.1.0-50-amd64", "kernel");
  runner_.on_run = [&](const Command& command) -> Result<Completed> {
    // The configuration is in place when the initramfs is made.
    EXPECT_TRUE(std::filesystem::exists(rootfs / "etc/initramfs-tools/hooks/kiln-modules")) << command.argv.back();
    return Completed{};
  };
  ASSERT_TRUE(run_bootstrap_hook("customize", "", {"virtio_blk", "ext4"}, rootfs, runner_));
  ASSERT_EQ(runner_.commands.size(), 1u);
  EXPECT_THAT(testing::read_text(rootfs / "etc/initramfs-tools/conf.d/kiln-modules.conf"), HasSubstr("\nMODULES=list\n"));
  const auto hook = rootfs / "etc/initramfs-tools/hooks/kiln-modules";
  EXPECT_THAT(testing::read_text(hook), HasSubstr("\nmanual_add_modules virtio_blk ext4\n"));
  EXPECT_EQ(std::filesystem::status(hook).permissions() & std::filesystem::perms::owner_exec,
            std::filesystem::perms::owner_exec);
}

TEST_F(BootstrapTest, InitramfsModulesNeedInitramfsTools) {
  std::filesystem::path rootfs = dir_ / "tree";
  testing::write_text(rootfs / "usr/bin/dracut", "#!/bin/sh\n");
  testing::write_text(rootfs / "boot/vmlinuz-6.12.0-1-arm64", "kernel");
  auto report = run_bootstrap_hook("customize", "", {"virtio_blk"}, rootfs, runner_);
  ASSERT_FALSE(report);
  EXPECT_THAT(report.error().to_string(), HasSubstr("the image has no initramfs-tools"));
  EXPECT_TRUE(runner_.commands.empty());
}

TEST_F(BootstrapTest, DracutMakesItWhereTheTreeHasDracut) {
  std::filesystem::path rootfs = dir_ / "tree";
  testing::write_text(rootfs / "usr/bin/dracut", "#!/bin/sh\n");
  testing::write_text(rootfs / "boot/vmlinuz-6.12.0-1-arm64", "kernel");
  ASSERT_TRUE(run_bootstrap_hook("customize", "", {}, rootfs, runner_));
  ASSERT_EQ(runner_.commands.size(), 1u);
  EXPECT_THAT(runner_.commands[0].argv, ::testing::IsSupersetOf(std::vector<std::string>{
                                            "dracut", "--force", "/boot/initrd.img-6.12.0-1-arm64", "6.12.0-1-arm64"}));
}

TEST_F(BootstrapTest, NoGeneratorOrNoKernelMakesNoInitramfs) {
  std::filesystem::path rootfs = dir_ / "tree";
  testing::write_text(rootfs / "boot/vmlinuz-6.1.0-50-amd64", "kernel");  // no update-initramfs, no dracut
  ASSERT_TRUE(run_bootstrap_hook("customize", "", {}, rootfs, runner_));
  testing::write_text(rootfs / "usr/sbin/update-initramfs", "#!/bin/sh\n");
  std::filesystem::remove(rootfs / "boot/vmlinuz-6.1.0-50-amd64");
  ASSERT_TRUE(run_bootstrap_hook("customize", "", {}, rootfs, runner_));
  EXPECT_TRUE(runner_.commands.empty());
}

TEST_F(BootstrapTest, AMemoryWorkspaceIsMmdebstrapsTmpdir) {
  BootstrapResources resources;
  resources.workspace = "/dev/shm";
  ASSERT_TRUE(bootstrap_rootfs(plan_for().plan, dir_ / "rootfs.tar", dir_ / "work", reporter_, runner_, resources));
  EXPECT_THAT(runner_.commands[0].env, ::testing::Contains("TMPDIR=/dev/shm"));
  // No host has a petabyte of memory to spare.
  EXPECT_EQ(memory_workspace(uint64_t{1} << 50), std::filesystem::path());
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
