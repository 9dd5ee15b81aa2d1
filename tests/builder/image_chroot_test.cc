// What the in-image stage runs inside the image, checked through a
// FakeCommandRunner on a small tree: each step's program in the recipe's
// order, chrooted with a clean environment; the files the stage puts in
// place while they run, and the tree as it was after; a failure that names
// the step and its place in the recipe. No root, no chroot and no apt.
#include "builder/image_chroot.h"

#include <sys/stat.h>

#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/builder/planned_recipe.h"
#include "tests/fake_command_runner.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::Planned;

constexpr std::string_view kRecipe = R"([image]
name = "web"
[bootstrap]
suite = "bookworm"
[customize]
packages = ["curl", "vim-tiny"]
locale = "de_DE.UTF-8"
run = ["echo hi", { script = "@SCRIPT@" }]
)";

constexpr std::string_view kEncryptedLvm = testing::kEncryptedLvmRecipe;

class ImageChrootTest : public ::testing::Test {
 protected:
  ImageChrootTest() {
    testing::write_text(dir_ / "setup.sh", "#!/bin/sh\necho set up\n");
    fs::create_directories(root() / "etc");
    fs::create_directories(root() / "usr/sbin");
    fs::create_directories(root() / "var/lib/dpkg");
    fs::create_directories(root() / "var/lib/apt/lists");
    fs::create_directories(root() / "var/cache/apt");
    fs::create_directories(root() / "var/log");
    fs::create_directories(root() / "boot");
    // resolv.conf as systemd-resolved leaves it: a symlink the stage
    // replaces with the host's resolver and puts back.
    fs::create_symlink("../run/systemd/resolve/stub-resolv.conf", root() / "etc/resolv.conf");
    testing::write_text(root() / "var/lib/dpkg/status", "Package: lvm2\nStatus: install ok installed\n\n");
  }

  fs::path root() const { return dir_ / "rootfs"; }
  void add(const std::string& path, const std::string& text = "") { testing::write_text(root() / path, text); }

  Result<> customize(std::string_view text) {
    std::string recipe(text);
    if (auto at = recipe.find("@SCRIPT@"); at != std::string::npos)
      recipe.replace(at, 8, (dir_ / "setup.sh").string());
    planned_ = testing::plan_recipe(recipe);
    auto tree = TreeRoot::open(root());
    EXPECT_TRUE(tree);
    return customize_in_image(planned_.plan, *tree, runner_, Reporter::quiet());
  }

  std::vector<std::vector<std::string>> argvs() const {
    std::vector<std::vector<std::string>> out;
    for (const Command& command : runner_.commands) out.push_back(command.argv);
    return out;
  }

  testing::ScratchDir dir_;
  testing::FakeCommandRunner runner_;
  Planned planned_;
};

// apt-get install as the stage runs it, then the packages.
std::vector<std::string> apt_install(std::initializer_list<std::string> packages) {
  std::vector<std::string> argv = {"apt-get", "-q", "-y", "--no-install-recommends",
                                   "-o", "Dpkg::Options::=--force-unsafe-io",
                                   "-o", "Dpkg::Options::=--force-confdef",
                                   "-o", "Dpkg::Options::=--force-confold", "install"};
  argv.insert(argv.end(), packages);
  return argv;
}

TEST_F(ImageChrootTest, RunsEachStepsProgramInTheImageInTheRecipesOrder) {
  add("usr/sbin/locale-gen");
  ASSERT_TRUE(customize(kRecipe));
  EXPECT_THAT(argvs(), ElementsAre(ElementsAre("apt-get", "-q", "update"), apt_install({"curl", "vim-tiny"}),
                                   ElementsAre("locale-gen"), ElementsAre("/bin/sh", "-c", "echo hi"),
                                   ElementsAre("/tmp/kiln-script-1")));
  for (const Command& command : runner_.commands) {
    // Chrooted, with the image's PATH and nothing of the host's environment.
    EXPECT_TRUE(command.clear_env);
    EXPECT_TRUE(command.resolve_in_child);
    EXPECT_TRUE(command.in_child);
    EXPECT_THAT(command.env, Contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    EXPECT_THAT(command.env, Contains("SOURCE_DATE_EPOCH=1700000000"));
  }
  EXPECT_EQ(testing::read_text(root() / "etc/locale.gen"), "de_DE.UTF-8 UTF-8\n");
  EXPECT_EQ(testing::read_text(root() / "etc/default/locale"), "LANG=de_DE.UTF-8\n");
}

TEST_F(ImageChrootTest, ALocaleWithoutLocaleGenInstallsLocalesOnTheOneAptUpdate) {
  ASSERT_TRUE(customize(kRecipe));
  auto ran = argvs();
  EXPECT_THAT(ran[0], ElementsAre("apt-get", "-q", "update"));
  EXPECT_EQ(ran[2], apt_install({"locales"}));
  EXPECT_EQ(std::count(ran.begin(), ran.end(), std::vector<std::string>{"apt-get", "-q", "update"}), 1);
}

// While programs run, no service may start (policy-rc.d says 101) and the
// host's resolver answers; afterwards the tree is as the image had it, and
// the script copied in is gone.
TEST_F(ImageChrootTest, TheStagesFilesAreInPlaceWhileProgramsRunAndGoneAfter) {
  add("usr/sbin/locale-gen");
  std::vector<std::string> seen;
  runner_.on_run = [&](const Command& command) -> Result<Completed> {
    seen.push_back(testing::read_text(root() / "usr/sbin/policy-rc.d"));
    struct stat st;
    EXPECT_EQ(::lstat((root() / "etc/resolv.conf").c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    if (command.argv[0] == "/tmp/kiln-script-1") {
      EXPECT_EQ(testing::read_text(root() / "tmp/kiln-script-1"), "#!/bin/sh\necho set up\n");
      EXPECT_EQ(fs::status(root() / "tmp/kiln-script-1").permissions() & fs::perms::all, fs::perms(0755));
    }
    return Completed{};
  };
  ASSERT_TRUE(customize(kRecipe));
  ASSERT_EQ(seen.size(), 5u);
  for (const std::string& policy : seen) EXPECT_THAT(policy, HasSubstr("exit 101"));
  EXPECT_FALSE(fs::exists(root() / "usr/sbin/policy-rc.d"));
  EXPECT_TRUE(fs::is_symlink(root() / "etc/resolv.conf"));
  EXPECT_EQ(fs::read_symlink(root() / "etc/resolv.conf"), "../run/systemd/resolve/stub-resolv.conf");
  EXPECT_FALSE(fs::exists(root() / "tmp/kiln-script-1"));
}

TEST_F(ImageChrootTest, AFailingStepNamesItselfAndItsPlaceInTheRecipe) {
  add("usr/sbin/locale-gen");
  runner_.on_run = [](const Command& command) -> Result<Completed> {
    if (command.argv[0] == "/bin/sh") return fail(ErrorKind::kFailed, "/bin/sh exited with status 1");
    return Completed{};
  };
  auto done = customize(kRecipe);
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().message, "customize.run: `echo hi`: /bin/sh exited with status 1");
  EXPECT_EQ(done.error().where.file, "r.toml");
  EXPECT_EQ(done.error().where.line, 8);  // the `run` line
  // Nothing after it ran (the caller throws the stage's tree away).
  EXPECT_EQ(runner_.commands.size(), 4u);
}

TEST_F(ImageChrootTest, PackageRunLeftoversAreCleared) {
  add("usr/sbin/locale-gen");
  add("var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease", "x");
  add("var/cache/apt/pkgcache.bin", "x");
  add("var/lib/dpkg/status-old", "x");
  add("var/log/dpkg.log", "2026-12-04 12:00:00 install curl");
  ASSERT_TRUE(customize(kRecipe));
  EXPECT_FALSE(fs::exists(root() / "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease"));
  EXPECT_FALSE(fs::exists(root() / "var/cache/apt/pkgcache.bin"));
  EXPECT_FALSE(fs::exists(root() / "var/lib/dpkg/status-old"));
  EXPECT_FALSE(fs::exists(root() / "var/log/dpkg.log"));  // a reproducible bake: it holds times
  EXPECT_TRUE(fs::exists(root() / "var/lib/dpkg/status"));
}

// An encrypted root on LVM needs lvm2 and cryptsetup in the initramfs: what
// is not installed yet is, their configuration is written, the initramfs
// rebuilt.
// The packages' dpkg triggers do not build the initramfs first without
// kiln's files: update-initramfs is told to skip while apt-get runs, and the
// one rebuild comes after the files, with the configuration put back.
TEST_F(ImageChrootTest, AnEncryptedLvmRootGetsWhatItsInitramfsNeedsAndOneRebuild) {
  add("usr/sbin/update-initramfs");
  add("boot/vmlinuz-6.1.0-28-amd64");
  add("etc/initramfs-tools/update-initramfs.conf", "update_initramfs=yes\nbackup_initramfs=no\n");
  std::map<std::string, std::string> conf_while;
  runner_.on_run = [&](const Command& command) -> Result<Completed> {
    conf_while[command.argv[0]] = testing::read_text(root() / "etc/initramfs-tools/update-initramfs.conf");
    if (command.argv[0] == "update-initramfs") {
      EXPECT_EQ(testing::read_text(root() / "etc/crypttab"), planned_.plan.storage_support.files[0].second);
    }
    return Completed{};
  };
  ASSERT_TRUE(customize(kEncryptedLvm));
  EXPECT_THAT(argvs(), ElementsAre(ElementsAre("apt-get", "-q", "update"), apt_install({"cryptsetup-initramfs"}),
                                   ElementsAre("update-initramfs", "-u", "-k", "all")));
  EXPECT_EQ(conf_while["apt-get"], "update_initramfs=no\n");
  EXPECT_EQ(conf_while["update-initramfs"], "update_initramfs=yes\nbackup_initramfs=no\n");
  for (const auto& [path, content] : planned_.plan.storage_support.files)
    EXPECT_EQ(testing::read_text(root() / path.substr(1)), content) << path;
  EXPECT_FALSE(planned_.plan.storage_support.files.empty());
}

// Where apt-get brings initramfs-tools itself, its conffile is its own.
TEST_F(ImageChrootTest, AnInitramfsConfigurationIsNotPlantedWhereThereWasNone) {
  add("usr/sbin/update-initramfs");
  add("boot/vmlinuz-6.1.0-28-amd64");
  bool planted = false;
  runner_.on_run = [&](const Command&) -> Result<Completed> {
    planted = planted || fs::exists(root() / "etc/initramfs-tools/update-initramfs.conf");
    return Completed{};
  };
  ASSERT_TRUE(customize(kEncryptedLvm));
  EXPECT_FALSE(planted);
}

TEST_F(ImageChrootTest, AnInitramfsThatCannotBeRebuiltIsRefusedWithWhatToAdd) {
  add("boot/vmlinuz-6.1.0-28-amd64");
  auto done = customize(kEncryptedLvm);
  ASSERT_FALSE(done);
  EXPECT_THAT(done.error().message, StartsWith("storage.layout \"lvm\" (encrypted) needs the image's initramfs rebuilt"));
  EXPECT_THAT(done.error().message, HasSubstr("add \"initramfs-tools\" to bootstrap.packages"));
}

}  // namespace
}  // namespace kiln
