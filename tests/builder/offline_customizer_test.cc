// Offline customisation and kiln's system setup, applied to a real ext4
// image of a small Debian-shaped rootfs and read back.
#include "builder/offline_customizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "builder/system_setup.h"
#include "recipes/recipe_parser.h"
#include "tests/builder/fake_rootfs.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ScratchDir;

class OfflineCustomizerTest : public ::testing::Test {
 protected:
  // Parses `customize` as the recipe's [customize] tables and applies them.
  Result<> customize(const std::string& customize_toml) {
    std::string text = "[image]\nname = \"t\"\n[bootstrap]\nfrom = \"rootfs.tar\"\n" + customize_toml;
    auto recipe = parse_recipe(text, "r.toml", dir_.path());
    if (!recipe) return std::unexpected(recipe.error());
    recipe_ = std::move(*recipe);
    auto plan = make_plan(recipe_, {1700000000, 0, "http://m/debian"});
    if (!plan) return std::unexpected(plan.error());
    plan_ = std::move(*plan);
    plan_.recipe = &recipe_;
    return apply_offline_steps(plan_.offline_steps, plan_, *fs_);
  }

  void SetUp() override {
    testing::write_fake_rootfs(dir_ / "rootfs.tar");
    testing::write_text(dir_ / "root.pw", "s3cret\n");
    testing::write_text(dir_ / "motd.txt", "copied motd\n");
    Ext4Options options;
    options.size_bytes = 64ull << 20;
    options.label = "root";
    options.timestamp = 1700000000;
    auto fs = Ext4Image::format(dir_ / "root.img", options);
    ASSERT_TRUE(fs) << fs.error().to_string();
    fs_.emplace(std::move(*fs));
    auto reader = TarReader::open(dir_ / "rootfs.tar");
    ASSERT_TRUE(reader);
    ASSERT_TRUE(fs_->import(*reader));
  }

  std::string read(const std::string& path) {
    auto text = fs_->read_file(path);
    EXPECT_TRUE(text) << path << ": " << text.error().to_string();
    return text.value_or("");
  }

  Ext4Stat stat(const std::string& path) {
    auto st = fs_->stat(path);
    EXPECT_TRUE(st && *st) << path;
    return st && *st ? **st : Ext4Stat{};
  }

  bool exists(const std::string& path) { return fs_->stat(path).value_or(std::nullopt).has_value(); }

  void expect_fsck_clean() {
    ASSERT_TRUE(fs_->close());
    fs_.reset();
    auto fsck = testing::run_program({"e2fsck", "-fn", (dir_ / "root.img").string()});
    EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  }

  ScratchDir dir_;
  std::optional<Ext4Image> fs_;
  Recipe recipe_;
  Plan plan_;
};

TEST_F(OfflineCustomizerTest, HostnameSetsHostnameAndHosts) {
  ASSERT_TRUE(customize("[customize]\nhostname = \"web1\"\n"));
  EXPECT_EQ(read("/etc/hostname"), "web1\n");
  EXPECT_EQ(read("/etc/hosts"),
            "127.0.0.1\tlocalhost\n127.0.1.1\tweb1\n::1\t\tlocalhost ip6-localhost ip6-loopback\n");
  expect_fsck_clean();
}

TEST_F(OfflineCustomizerTest, TimezoneLinksLocaltime) {
  ASSERT_TRUE(customize("[customize]\ntimezone = \"Europe/Paris\"\n"));
  EXPECT_EQ(stat("/etc/localtime").symlink_target, "/usr/share/zoneinfo/Europe/Paris");
  EXPECT_EQ(read("/etc/timezone"), "Europe/Paris\n");
  auto missing = customize("[customize]\ntimezone = \"Asia/Tokyo\"\n");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().to_string(),
            "r.toml:6:12: customize.timezone: /usr/share/zoneinfo/Asia/Tokyo is not in the image: add "
            "\"tzdata\" to customize.packages");
}

TEST_F(OfflineCustomizerTest, RootPasswordIsStoredHashedNeverPlain) {
  ASSERT_TRUE(customize("[customize]\nroot_password_file = \"root.pw\"\n"));
  std::string shadow = read("/etc/shadow");
  EXPECT_THAT(shadow, ::testing::StartsWith("root:$y$"));
  EXPECT_THAT(shadow, ::testing::Not(HasSubstr("s3cret")));
  EXPECT_THAT(shadow, HasSubstr(":19675:0:99999:7:::"));  // days to 1700000000
  EXPECT_EQ(stat("/etc/shadow").gid, 42u);  // root:shadow kept
  EXPECT_EQ(stat("/etc/shadow").mode, 0640u);
}

TEST_F(OfflineCustomizerTest, UsersGetHomeSkelKeysGroupsAndSudo) {
  ASSERT_TRUE(customize(R"(
[[customize.users]]
name = "alice"
sudo = true
groups = ["adm"]
ssh_authorized_keys = ["ssh-ed25519 AAAAkey alice@laptop"]
)"));
  EXPECT_THAT(read("/etc/passwd"), HasSubstr("alice:x:1000:1000::/home/alice:/bin/bash\n"));
  EXPECT_THAT(read("/etc/group"), HasSubstr("sudo:x:27:alice\n"));
  EXPECT_THAT(read("/etc/group"), HasSubstr("adm:x:4:alice\n"));
  EXPECT_THAT(read("/etc/shadow"), HasSubstr("alice:*:"));
  Ext4Stat home = stat("/home/alice");
  EXPECT_EQ(home.uid, 1000u);
  EXPECT_EQ(home.mode, 0700u);
  EXPECT_EQ(read("/home/alice/.bashrc"), "# skel bashrc\n");
  EXPECT_EQ(stat("/home/alice/.bashrc").uid, 1000u);
  EXPECT_EQ(read("/home/alice/.ssh/authorized_keys"), "ssh-ed25519 AAAAkey alice@laptop\n");
  EXPECT_EQ(stat("/home/alice/.ssh/authorized_keys").mode, 0600u);
  EXPECT_EQ(stat("/home/alice/.ssh").mode, 0700u);
  expect_fsck_clean();
}

TEST_F(OfflineCustomizerTest, UserErrorsPointAtTheRecipe) {
  auto missing_group = customize("[[customize.users]]\nname = \"bob\"\ngroups = [\"docker\"]\n");
  ASSERT_FALSE(missing_group);
  EXPECT_EQ(missing_group.error().to_string(), "r.toml:5:1: customize.users: group docker does not exist in the image");
  auto shell = customize("[[customize.users]]\nname = \"bob\"\nshell = \"/bin/zsh\"\n");
  ASSERT_FALSE(shell);
  EXPECT_THAT(shell.error().message, HasSubstr("shell /bin/zsh is not in the image"));
}

TEST_F(OfflineCustomizerTest, FileOperationsApplyInOrder) {
  ASSERT_TRUE(customize(R"(
[[customize.files]]
path = "/etc/motd"
content = "hello\n"
mode = "0600"
owner = "daemon:adm"

[[customize.files]]
path = "/srv/www/index.html"
copy = "motd.txt"

[[customize.files]]
path = "/etc/hostname"
append_line = "second"

[[customize.files]]
path = "/etc/hostname"
append_line = "second"

[[customize.files]]
path = "/etc/ssh/sshd_config"
delete = true

[[customize.files]]
path = "/usr/local/bin/tool"
symlink = "/bin/busybox"

[[customize.files]]
path = "/var/lib/app/data"
mkdir = true
mode = "0750"

[[customize.files]]
path = "/usr/bin/sudo"
mode = "0755"
)"));
  EXPECT_EQ(read("/etc/motd"), "hello\n");
  EXPECT_EQ(stat("/etc/motd").mode, 0600u);
  EXPECT_EQ(stat("/etc/motd").uid, 1u);
  EXPECT_EQ(stat("/etc/motd").gid, 4u);
  EXPECT_EQ(read("/srv/www/index.html"), "copied motd\n");
  EXPECT_EQ(read("/etc/hostname"), "fake\nsecond\n");
  EXPECT_FALSE(exists("/etc/ssh/sshd_config"));
  EXPECT_EQ(stat("/usr/local/bin/tool").symlink_target, "/bin/busybox");
  EXPECT_EQ(stat("/var/lib/app/data").type, EntryType::kDirectory);
  EXPECT_EQ(stat("/var/lib/app/data").mode, 0750u);
  EXPECT_EQ(stat("/usr/bin/sudo").mode, 0755u);
  expect_fsck_clean();
}

TEST_F(OfflineCustomizerTest, ChangingAttributesOfAMissingPathIsAnError) {
  auto result = customize("[[customize.files]]\npath = \"/nope\"\nmode = \"0644\"\n");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().to_string(), "r.toml:5:1: customize.files: /nope: no such file or directory in the image");
}

TEST_F(OfflineCustomizerTest, SystemSetupMakesAFreshMachine) {
  ASSERT_TRUE(customize(""));
  FilesystemLayout layout{FilesystemType::kExt4, "11111111-2222-5333-8444-555555555555", "ABCD-1234"};
  auto notes = apply_system_setup(*fs_, plan_, layout);
  ASSERT_TRUE(notes) << notes.error().to_string();
  EXPECT_TRUE(notes->empty());
  EXPECT_EQ(read("/etc/fstab"), fstab_for(layout));
  EXPECT_THAT(read("/etc/fstab"), HasSubstr("UUID=11111111-2222-5333-8444-555555555555\t/\text4\t"));
  EXPECT_THAT(read("/etc/fstab"), HasSubstr("UUID=ABCD-1234\t/boot/efi\tvfat\t"));
  EXPECT_EQ(stat("/boot/efi").type, EntryType::kDirectory);
  // DHCP through networkd, enabled the way systemctl would
  EXPECT_THAT(read("/etc/systemd/network/80-kiln-dhcp.network"), HasSubstr("DHCP=yes"));
  EXPECT_EQ(stat("/etc/systemd/system/multi-user.target.wants/systemd-networkd.service").symlink_target,
            "/usr/lib/systemd/system/systemd-networkd.service");
  EXPECT_EQ(stat("/etc/systemd/system/sockets.target.wants/systemd-networkd.socket").symlink_target,
            "/usr/lib/systemd/system/systemd-networkd.socket");
  EXPECT_EQ(stat("/etc/systemd/system/dbus-org.freedesktop.network1.service").symlink_target,
            "/usr/lib/systemd/system/systemd-networkd.service");
  // ...and skipped where kiln boots the machine without a NIC
  EXPECT_EQ(read("/etc/systemd/system/systemd-networkd.service.d/kiln-no-nics.conf"),
            "# Written by kiln: nothing to do on a machine kiln booted without a NIC.\n"
            "[Unit]\nConditionPathExists=!/run/kiln/no-nics\n");
  EXPECT_TRUE(exists("/etc/systemd/system/systemd-networkd.socket.d/kiln-no-nics.conf"));
  // every machine makes its own identity
  EXPECT_EQ(read("/etc/machine-id"), "");
  EXPECT_FALSE(exists("/etc/ssh/ssh_host_ed25519_key"));
  EXPECT_FALSE(exists("/etc/ssh/ssh_host_ed25519_key.pub"));
  EXPECT_TRUE(exists("/etc/ssh/sshd_config"));
  EXPECT_THAT(read("/etc/systemd/system/kiln-ssh-keygen.service"),
              HasSubstr("ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N \"\" -f /etc/ssh/ssh_host_ed25519_key"));
  EXPECT_THAT(read("/etc/systemd/system/kiln-ssh-keygen-rsa.service"), HasSubstr("ExecStart=/usr/bin/ssh-keygen -A"));
  EXPECT_THAT(read("/etc/systemd/system/kiln-ssh-keygen-rsa.service"), Not(HasSubstr("ssh.service")))
      << "a reload of sshd after ready refuses connections for a moment";
  EXPECT_THAT(read("/etc/systemd/system/kiln-ssh-keygen-rsa.service"), HasSubstr(" kiln-ready.service\n"))
      << "the readiness report does not share the CPU with RSA";
  EXPECT_EQ(stat("/etc/systemd/system/multi-user.target.wants/kiln-ssh-keygen-rsa.service").symlink_target,
            "/etc/systemd/system/kiln-ssh-keygen-rsa.service");
  EXPECT_EQ(stat("/etc/systemd/system/ssh.service.wants/kiln-ssh-keygen.service").symlink_target,
            "/etc/systemd/system/kiln-ssh-keygen.service");
  // the package manager's first-boot work is done: ConditionNeedsUpdate= is
  // false until /usr changes (same second, and the stamp's nanoseconds)
  for (const char* stamp : {"/etc/.updated", "/var/.updated"}) {
    EXPECT_EQ(stat(stamp).mtime, stat("/usr").mtime) << stamp;
    EXPECT_THAT(read(stamp), HasSubstr(fmt::format("\nTIMESTAMP_NSEC={}000000000\n", stat("/usr").mtime))) << stamp;
  }
  expect_fsck_clean();
}

}  // namespace
}  // namespace kiln
