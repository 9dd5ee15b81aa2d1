// `kiln import` of disks whose root is not on a partition of its own: in a
// logical volume (lvm2 itself writes the volume group, through kiln's
// lvm_layout), in a LUKS2 volume, and in a logical volume inside a LUKS2
// volume (the Debian installer's "guided, encrypted LVM"). The root is a
// small filesystem made here with mke2fs -d (an os-release, the host's
// shell, a stand-in kernel, systemd's multi-user.target so that kiln
// installs its agent). Checked: the root is found and named, kiln's agent
// lands in it, in an encrypted image behind the same key (decrypted here
// again to look), the manifest says how to boot it, the plaintext never
// reaches the output and the source is only read; without the passphrase,
// or with a wrong one, the import is refused and leaves nothing. Booting
// such imports is tests/integration/import_test.cc's.
#include <fcntl.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/files.h"
#include "crypto/luks.h"
#include "crypto/volume_encryption.h"
#include "formats/disk/lvm_layout.h"
#include "formats/disk/lvm_metadata.h"
#include "formats/ext4/ext4_image.h"
#include "formats/image/guest_protocol.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::read_text;
using testing::run_kiln;
using testing::run_program;
using testing::write_text;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kPartitionStart = kMiB;
constexpr uint64_t kPhysicalVolume = 64 * kMiB;
constexpr std::string_view kLuksUuid = "5f2c1a0e-3b7d-4c1e-9a55-0d6f0e2b8c11";
constexpr std::string_view kPassphrase = "correct horse battery staple";
constexpr std::string_view kLvmType = "E6D6D379-F507-44C2-A23C-238F2A3DF928";
constexpr std::string_view kLuksType = "CA7D7CCB-63ED-4C53-861C-1742536059CC";

class ImportVolumes : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "lvm2 writes the test's volume group through a loop device: needs root";
    fs::path tree = dir_ / "tree";
    write_text(tree / "etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n");
    write_text(tree / "etc/crypttab", fmt::format("cryptroot UUID={} none luks,discard\n", kLuksUuid));
    write_text(tree / "boot/vmlinuz-6.1.0-99-amd64", "a kernel\n");
    write_text(tree / "boot/initrd.img-6.1.0-99-amd64", "an initramfs\n");
    write_text(tree / "usr/lib/systemd/system/multi-user.target", "[Unit]\nDescription=Multi-User System\n");
    fs::create_directories(tree / "bin");
    fs::copy_file("/bin/sh", tree / "bin/sh");
    run({"mke2fs", "-q", "-t", "ext4", "-d", tree.string(), path("root.fs"), "40M"});
    write_text(dir_ / "passphrase", std::string(kPassphrase) + "\n");
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  ProcessResult run(const std::vector<std::string>& argv) {
    ProcessResult result = run_program(argv);
    EXPECT_EQ(result.exit_code, 0) << argv[0] << ": " << result.err;
    return result;
  }
  template <class T>
  static T ok(Result<T> result) {
    EXPECT_TRUE(result) << result.error().to_string();
    return std::move(*result);
  }
  static void copy(const fs::path& from, uint64_t from_offset, const fs::path& to, uint64_t to_offset, uint64_t size) {
    auto in = ok(open_file(from, O_RDONLY));
    auto out = ok(open_file(to, O_RDWR));
    ASSERT_TRUE(copy_sparse(in.get(), from_offset, out.get(), to_offset, size, from.string()));
  }

  // A GPT disk with one partition of `size` bytes and `type`.
  std::string disk(const std::string& name, uint64_t size, std::string_view type) {
    run({"truncate", "-s", std::to_string(size + 2 * kMiB), path(name)});
    write_text(dir_ / "table", fmt::format("label: gpt\nstart=2048, size={}, type={}\n", size / 512, type));
    run({"sh", "-c", "sfdisk -q \"$0\" < \"$1\"", path(name), path("table")});
    return path(name);
  }
  // The volume group vg-test in [offset, offset + kPhysicalVolume) of
  // `file`: a swap volume first, then root, holding root.fs.
  void volume_group(const fs::path& file, uint64_t offset) {
    std::vector<LogicalVolumeRequest> volumes = {{"swap", 8 * kMiB}, {"root", 0}};
    LvmLayout layout = ok(write_lvm_layout(file, offset, kPhysicalVolume, "vg-test", 4 * kMiB, volumes));
    ASSERT_EQ(layout.volumes.size(), 2u);
    copy(path("root.fs"), 0, file, offset + layout.volumes[1].offset, fs::file_size(path("root.fs")));
  }
  // A LUKS2 volume of `payload` (a file) at `offset` of `disk`, opened by
  // kPassphrase; returns its size.
  uint64_t luks(const fs::path& payload, const fs::path& disk, uint64_t offset) {
    LuksSettings settings;
    settings.uuid = kLuksUuid;
    settings.pbkdf = {"pbkdf2", "sha256", 0, 1000, 0};
    Secret key = ok(Secret::random(settings.key_bytes));
    Secret passphrase = Secret::from(kPassphrase);
    const Secret* keys[] = {&passphrase};
    fs::path volume = dir_ / "volume";
    uint64_t size = luks_header_size("luks2") + fs::file_size(payload);
    run({"truncate", "-s", std::to_string(size), volume.string()});
    uint64_t data = ok(format_luks(volume, settings, key, keys));
    EncryptionJob job{payload, 0, volume, data, settings.cipher, settings.sector_size, {}};
    std::vector<ByteRange> all = {{0, size - data}};
    EXPECT_TRUE(encrypt_ranges(job, all, key));
    copy(volume, 0, disk, offset, size);
    fs::remove(volume);
    return size;
  }
  // The LUKS volume at `offset` of `disk` decrypted here, into `plain`.
  void decrypt(const fs::path& disk, uint64_t offset, uint64_t size, const fs::path& plain) {
    UnlockedLuks unlocked = ok(luks_unlock({disk, offset, size, "imported"}, Secret::from(kPassphrase)));
    uint64_t payload = size - unlocked.data_offset;
    run({"truncate", "-s", std::to_string(payload), plain.string()});
    EncryptionJob job{plain, 0, disk, offset + unlocked.data_offset, unlocked.cipher, unlocked.sector_size, {}};
    std::vector<ByteRange> all = {{0, payload}};
    EXPECT_TRUE(decrypt_ranges(job, all, unlocked.volume_key));
  }
  // The root logical volume of the physical volume at `offset` of `file`.
  ByteRange root_volume(const fs::path& file, uint64_t offset) {
    LvmVolumeGroup group = ok(read_lvm_physical_volume(file, offset, kPhysicalVolume, file.string()));
    EXPECT_EQ(group.name, "vg-test");
    for (const LvmLogicalVolume& lv : group.logical_volumes)
      if (lv.name == "root") return ok(lvm_volume_range(group, lv));
    ADD_FAILURE() << "no root volume";
    return {};
  }
  // kiln's agent is in the filesystem at `offset` of `file`, and e2fsck
  // finds it clean.
  void expect_agent_in(const fs::path& file, uint64_t offset, uint64_t size) {
    {
      Ext4Image root = ok(Ext4Image::open(file, offset, false));
      auto agent = root.stat(kAgentScriptPath);
      ASSERT_TRUE(agent && agent->has_value()) << "kiln's agent in the imported root";
    }
    fs::path alone = dir_ / "check.fs";
    run({"truncate", "-s", std::to_string(size), alone.string()});
    copy(file, offset, alone, 0, size);
    run({"e2fsck", "-fn", alone.string()});
    fs::remove(alone);
  }
  ProcessResult import(const std::string& disk, std::vector<std::string> more = {}) {
    std::vector<std::string> args = {"import", disk, "-o", path("out/imported")};
    args.insert(args.end(), more.begin(), more.end());
    return run_kiln(args);
  }
  nlohmann::json manifest() const {
    return nlohmann::json::parse(read_text(dir_ / "out/imported/manifest.json"));
  }
  void expect_refused(const ProcessResult& result, const std::string& message) {
    EXPECT_EQ(result.exit_code, 2) << result.err;
    EXPECT_THAT(result.err, HasSubstr(message));
    EXPECT_THAT(testing::list_tree(dir_ / "out"), ::testing::IsEmpty());
  }
  std::string sha256(const std::string& file) { return run({"sha256sum", file}).out.substr(0, 64); }

  testing::ScratchDir dir_;
};

TEST_F(ImportVolumes, ARootOnLvmIsFoundInItsLogicalVolumeAndBootsByItsMapperName) {
  std::string source = disk("lvm.raw", kPhysicalVolume, kLvmType);
  volume_group(source, kPartitionStart);
  std::string before = sha256(source);
  ProcessResult imported = import(source);
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("root: logical volume vg-test/root on partition 1 (it has /etc/os-release)"));
  EXPECT_EQ(sha256(source), before) << "the source is only read";

  nlohmann::json m = manifest();
  EXPECT_EQ(m["image"]["layout"], "lvm");
  EXPECT_EQ(m["image"]["root_device"], "/dev/mapper/vg--test-root") << "device-mapper doubles the dashes";
  EXPECT_THAT(m["image"]["kernel_cmdline"].get<std::string>(), HasSubstr("root=/dev/mapper/vg--test-root ro"));
  EXPECT_EQ(m["storage"]["lvm"]["vg"], "vg-test");
  fs::path out = dir_ / "out/imported/disk.raw";
  ByteRange root = root_volume(out, kPartitionStart);
  expect_agent_in(out, kPartitionStart + root.offset, root.length);
}

TEST_F(ImportVolumes, ALuksRootIsOpenedWithThePassphraseAndStaysEncrypted) {
  std::string source = disk("luks.raw", luks_header_size("luks2") + fs::file_size(path("root.fs")), kLuksType);
  uint64_t size = luks(path("root.fs"), source, kPartitionStart);
  std::string before = sha256(source);
  ProcessResult imported = import(source, {"--luks-passphrase-file", path("passphrase")});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("root: the LUKS volume on partition 1 (it has /etc/os-release)"));
  EXPECT_EQ(sha256(source), before);
  EXPECT_EQ(testing::list_tree(dir_ / "out/imported"),
            (std::vector<std::string>{"disk.raw", "initrd.img", "manifest.json", "vmlinuz"}))
      << "no plaintext in the output";

  nlohmann::json m = manifest();
  EXPECT_EQ(m["storage"]["encryption"]["type"], "luks2");
  EXPECT_EQ(m["storage"]["encryption"]["uuid"], kLuksUuid);
  EXPECT_EQ(m["storage"]["encryption"]["name"], "cryptroot") << "the root's crypttab names it";
  EXPECT_EQ(m["storage"]["encryption"]["keyslots"], 1);
  fs::path out = dir_ / "out/imported/disk.raw";
  EXPECT_NE(run_program({"grep", "-c", "-a", "-F", "PRETTY_NAME", out.string()}).exit_code, 0)
      << "the root is still encrypted";
  decrypt(out, kPartitionStart, size, dir_ / "plain");
  expect_agent_in(dir_ / "plain", 0, fs::file_size(path("root.fs")));
}

TEST_F(ImportVolumes, LvmInsideLuksIsOpenedAsTheDebianInstallerLaysItOut) {
  fs::path plain = dir_ / "pv.plain";
  run({"truncate", "-s", std::to_string(kPhysicalVolume), plain.string()});
  volume_group(plain, 0);
  std::string source = disk("both.raw", luks_header_size("luks2") + kPhysicalVolume, kLuksType);
  uint64_t size = luks(plain, source, kPartitionStart);
  ProcessResult imported = import(source, {"--luks-passphrase-file", path("passphrase"), "--json"});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("logical volume vg-test/root on the LUKS volume on partition 1"));
  nlohmann::json m = manifest();
  EXPECT_EQ(m["image"]["layout"], "lvm");
  EXPECT_EQ(m["image"]["root_device"], "/dev/mapper/vg--test-root");
  EXPECT_EQ(m["storage"]["encryption"]["type"], "luks2");

  fs::path out = dir_ / "out/imported/disk.raw";
  fs::path again = dir_ / "pv.again";
  decrypt(out, kPartitionStart, size, again);
  ByteRange root = root_volume(again, 0);
  expect_agent_in(again, root.offset, root.length);
  for (const std::string file : {"disk.raw", "manifest.json"})
    EXPECT_NE(run_program({"grep", "-q", "-a", "-F", std::string(kPassphrase), path("out/imported/" + file)}).exit_code,
              0)
        << "the passphrase is in no output file: " << file;
}

TEST_F(ImportVolumes, WithoutThePassphraseTheLockedVolumeIsNamed) {
  std::string source = disk("luks.raw", luks_header_size("luks2") + fs::file_size(path("root.fs")), kLuksType);
  luks(path("root.fs"), source, kPartitionStart);
  expect_refused(import(source), "a LUKS volume is on it: give --luks-passphrase-file to look inside");
  write_text(dir_ / "wrong", "not it\n");
  expect_refused(import(source, {"--luks-passphrase-file", path("wrong")}),
                 "partition 1: the given passphrase or key opens no keyslot");
}

TEST_F(ImportVolumes, APassphraseForADiskWithoutLuksIsAnError) {
  std::string source = disk("lvm.raw", kPhysicalVolume, kLvmType);
  volume_group(source, kPartitionStart);
  expect_refused(import(source, {"--luks-passphrase-file", path("passphrase")}),
                 source + ": no LUKS volume on it for --luks-passphrase-file to open");
}

TEST_F(ImportVolumes, DamagedLvmMetadataIsRefusedByItsChecksum) {
  std::string source = disk("lvm.raw", kPhysicalVolume, kLvmType);
  volume_group(source, kPartitionStart);
  // Every copy of the text in the metadata area (lvm2 appends each new
  // version), so that the newest one is damaged too.
  std::string area = ok(read_file_range(source, kPartitionStart, kMiB));
  auto fd = ok(open_file(source, O_RDWR));
  int damaged = 0;
  for (size_t at = area.find("creation_host"); at != std::string::npos; at = area.find("creation_host", at + 1), ++damaged)
    ASSERT_EQ(::pwrite(fd.get(), "C", 1, static_cast<off_t>(kPartitionStart + at)), 1);
  ASSERT_GT(damaged, 0);
  expect_refused(import(source), "partition 1: its LVM metadata fails its checksum");
}

}  // namespace
}  // namespace kiln
