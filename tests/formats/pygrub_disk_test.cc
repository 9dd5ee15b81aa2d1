// pygrub without a mount: the kernel, initrd and command line found in a
// guest's disk, bare or partitioned, and written out byte for byte.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "base/hash.h"
#include "base/size.h"
#include "formats/disk/gpt_disk.h"
#include "formats/domain/pygrub.h"
#include "formats/ext4/ext4_image.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int64_t kTimestamp = 1700000000;
const std::string kKernel18 = std::string(300000, 'K') + "18";
const std::string kInitrd18 = std::string(500000, 'I') + "18";

// An ext4 at `offset` of `image` holding `files` (path -> content), with
// their parent directories.
void make_filesystem(const fs::path& image, uint64_t offset, uint64_t size,
                     const std::vector<std::pair<std::string, std::string>>& files) {
  Ext4Options options;
  options.size_bytes = size;
  options.offset_bytes = offset;
  options.uuid = Uuid::from_name("tests/pygrub");
  options.hash_seed = Uuid::from_name("tests/pygrub/seed");
  options.timestamp = kTimestamp;
  auto fs = Ext4Image::format(image, options);
  ASSERT_TRUE(fs) << fs.error().to_string();
  for (const auto& [path, content] : files) {
    std::string dir;
    for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1))
      ASSERT_TRUE(fs->make_directory(path.substr(0, slash), {0755, 0, 0, kTimestamp}));
    if (content.starts_with("->")) ASSERT_TRUE(fs->make_symlink(path, content.substr(2), {0777, 0, 0, kTimestamp}));
    else ASSERT_TRUE(fs->write_file(path, content, {0644, 0, 0, kTimestamp}));
  }
  ASSERT_TRUE(fs->close());
}

std::vector<std::pair<std::string, std::string>> two_kernels() {
  return {{"/boot/vmlinuz-6.1.0-9-amd64", "old kernel"},
          {"/boot/initrd.img-6.1.0-9-amd64", "old initrd"},
          {"/boot/vmlinuz-6.1.0-18-amd64", kKernel18},
          {"/boot/initrd.img-6.1.0-18-amd64", kInitrd18}};
}

GuestBootFiles found(const fs::path& disk, BootLoaderArgs args = {}) {
  auto result = find_guest_boot_files(disk, args);
  EXPECT_TRUE(result) << result.error().to_string();
  return result ? *result : GuestBootFiles{};
}

TEST(PygrubDisk, ABareFilesystemWithoutAMenuBootsItsNewestKernel) {
  testing::ScratchDir dir;
  make_filesystem(dir / "disk.img", 0, 16 * kMiB, two_kernels());
  GuestBootFiles files = found(dir / "disk.img");
  EXPECT_EQ(files.partition, 0);
  EXPECT_EQ(files.kernel, "/boot/vmlinuz-6.1.0-18-amd64") << "18 is newer than 9";
  EXPECT_EQ(files.initrd, "/boot/initrd.img-6.1.0-18-amd64");
  EXPECT_EQ(files.command_line, "");
  ASSERT_TRUE(extract_guest_boot_files(files, dir / "disk.img", dir / "out"));
  EXPECT_EQ(testing::read_text(dir / "out/vmlinuz"), kKernel18);
  EXPECT_EQ(testing::read_text(dir / "out/initrd.img"), kInitrd18);
}

TEST(PygrubDisk, AGptDiskIsSearchedPartitionByPartitionForItsGrubCfg) {
  testing::ScratchDir dir;
  GptLayout layout{40 * kMiB, Uuid::from_name("tests/pygrub/disk"),
                   {{"esp", GptType::kEfiSystem, Uuid::from_name("esp"), 8 * kMiB},
                    {"root", GptType::kLinuxRootX86_64, Uuid::from_name("root"), 0}}};
  auto placed = write_gpt(dir / "disk.raw", layout);
  ASSERT_TRUE(placed) << placed.error().to_string();
  auto files = two_kernels();
  files.push_back({"/boot/grub/grub.cfg", "set default=\"1\"\n"
                                          "menuentry 'Debian (old)' {\n linux /boot/vmlinuz-6.1.0-9-amd64 root=/dev/xvda2 ro\n}\n"
                                          "menuentry 'Debian' {\n linux (hd0,gpt2)/boot/vmlinuz-6.1.0-18-amd64 root=/dev/xvda2 ro quiet\n"
                                          " initrd /boot/initrd.img-6.1.0-18-amd64\n}\n"});
  make_filesystem(dir / "disk.raw", (*placed)[1].offset, 24 * kMiB, files);
  GuestBootFiles found_files = found(dir / "disk.raw");
  EXPECT_EQ(found_files.partition, 2) << "the ESP has no ext filesystem and is stepped over";
  EXPECT_EQ(found_files.offset, (*placed)[1].offset);
  EXPECT_EQ(found_files.kernel, "/boot/vmlinuz-6.1.0-18-amd64");
  EXPECT_EQ(found_files.command_line, "root=/dev/xvda2 ro quiet");
  EXPECT_THAT(found_files.found_in, HasSubstr("/boot/grub/grub.cfg, entry 'Debian'"));
  ASSERT_TRUE(extract_guest_boot_files(found_files, dir / "disk.raw", dir / "out"));
  EXPECT_EQ(testing::read_text(dir / "out/vmlinuz"), kKernel18);
  EXPECT_EQ(testing::read_text(dir / "out/initrd.img"), kInitrd18);

  BootLoaderArgs first{"0", "", "", "single"};
  GuestBootFiles chosen = found(dir / "disk.raw", first);
  EXPECT_EQ(chosen.kernel, "/boot/vmlinuz-6.1.0-9-amd64");
  EXPECT_EQ(chosen.command_line, "root=/dev/xvda2 ro single") << "--args adds to the entry's";
  // An entry without an initrd leaves none from an earlier extraction.
  ASSERT_TRUE(extract_guest_boot_files(chosen, dir / "disk.raw", dir / "out"));
  EXPECT_EQ(testing::read_text(dir / "out/vmlinuz"), "old kernel");
  EXPECT_FALSE(fs::exists(dir / "out/initrd.img"));
}

TEST(PygrubDisk, AnMbrDiskWithAMenuLstOnly) {
  testing::ScratchDir dir;
  fs::path disk = dir / "disk.raw";
  auto made = testing::run_program({"sh", "-ec", "truncate -s 24M " + disk.string() +
                                                     " && echo 'start=2048, type=83' | sfdisk --quiet " + disk.string()});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  auto files = two_kernels();
  files.push_back({"/boot/grub/menu.lst", "default 0\ntitle Debian\nroot (hd0,0)\n"
                                          "kernel /boot/vmlinuz-6.1.0-9-amd64 root=/dev/xvda1 ro\n"
                                          "initrd /boot/initrd.img-6.1.0-9-amd64\n"});
  make_filesystem(disk, 2048 * 512, 16 * kMiB, files);
  GuestBootFiles files_found = found(disk);
  EXPECT_EQ(files_found.partition, 1);
  EXPECT_EQ(files_found.kernel, "/boot/vmlinuz-6.1.0-9-amd64") << "the menu's entry, not the newest kernel";
  EXPECT_EQ(files_found.command_line, "root=/dev/xvda1 ro");
}

TEST(PygrubDisk, KernelSymlinksAreFollowedInsideTheImage) {
  testing::ScratchDir dir;
  auto files = two_kernels();
  files.push_back({"/boot/grub/grub.cfg", "menuentry 'x' {\n linux /vmlinuz root=/dev/xvda1\n initrd /initrd.img\n}\n"});
  files.push_back({"/vmlinuz", "->boot/vmlinuz-6.1.0-18-amd64"});
  files.push_back({"/initrd.img", "->boot/initrd.img-6.1.0-18-amd64"});
  make_filesystem(dir / "disk.img", 0, 16 * kMiB, files);
  GuestBootFiles files_found = found(dir / "disk.img");
  ASSERT_TRUE(extract_guest_boot_files(files_found, dir / "disk.img", dir / "out"));
  EXPECT_EQ(testing::read_text(dir / "out/vmlinuz"), kKernel18);
}

TEST(PygrubDisk, BootloaderArgsKernelBypassesTheMenu) {
  testing::ScratchDir dir;
  make_filesystem(dir / "disk.img", 0, 16 * kMiB, two_kernels());
  BootLoaderArgs args{std::nullopt, "/boot/vmlinuz-6.1.0-9-amd64", "/boot/initrd.img-6.1.0-9-amd64", "root=/dev/xvda1"};
  GuestBootFiles files = found(dir / "disk.img", args);
  EXPECT_EQ(files.kernel, "/boot/vmlinuz-6.1.0-9-amd64");
  EXPECT_EQ(files.command_line, "root=/dev/xvda1");
  args.kernel = "/boot/vmlinuz-nope";
  EXPECT_THAT(find_guest_boot_files(dir / "disk.img", args).error().message,
              HasSubstr("--kernel=/boot/vmlinuz-nope is in none of its ext2/3/4 filesystems"));
}

// Xen's own pygrub (Debian's xen-utils-4.17, which scripts/install-deps.sh
// installs without the hypervisor) as the oracle: on the same disk and
// arguments, kiln boots the same kernel, initrd and command line.
constexpr const char* kXenPygrub = "/usr/lib/xen-4.17/bin/pygrub";

struct PygrubOutput {
  std::string kernel, initrd, args;
};

std::optional<PygrubOutput> xen_pygrub(const fs::path& disk, const std::vector<std::string>& options,
                                       const fs::path& out) {
  fs::create_directories(out);
  std::vector<std::string> argv = {kXenPygrub, "-q", "--output-format=simple", "--output-directory=" + out.string()};
  argv.insert(argv.end(), options.begin(), options.end());
  argv.push_back(disk.string());
  auto run = testing::run_program(argv);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  if (run.exit_code != 0) return std::nullopt;
  PygrubOutput result;
  std::istringstream lines(run.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("kernel ")) result.kernel = testing::read_text(line.substr(7));
    if (line.starts_with("ramdisk ")) result.initrd = testing::read_text(line.substr(8));
    if (line.starts_with("args ")) result.args = line.substr(5);
  }
  while (result.args.ends_with(' ')) result.args.pop_back();
  return result;
}

void expect_same_choice_as_xen(const fs::path& disk, const std::vector<std::string>& options, const fs::path& dir) {
  auto theirs = xen_pygrub(disk, options, dir / "xen");
  ASSERT_TRUE(theirs);
  auto args = parse_bootloader_args(options, {"test.cfg", 1});
  ASSERT_TRUE(args) << args.error().to_string();
  GuestBootFiles ours = found(disk, *args);
  ASSERT_TRUE(extract_guest_boot_files(ours, disk, dir / "kiln"));
  // Compared by digest: a failure should not print megabytes.
  EXPECT_EQ(sha256_hex(testing::read_text(dir / "kiln/vmlinuz")), sha256_hex(theirs->kernel)) << ours.found_in;
  std::string initrd = fs::exists(dir / "kiln/initrd.img") ? testing::read_text(dir / "kiln/initrd.img") : "";
  EXPECT_EQ(sha256_hex(initrd), sha256_hex(theirs->initrd)) << ours.found_in;
  EXPECT_EQ(ours.command_line, theirs->args);
}

TEST(PygrubDisk, ChoosesAsXensOwnPygrubDoes) {
  if (!fs::exists(kXenPygrub)) GTEST_SKIP() << kXenPygrub << " is missing (Debian package xen-utils-4.17)";
  testing::ScratchDir dir;
  GptLayout layout{40 * kMiB, Uuid::from_name("tests/pygrub/disk"),
                   {{"esp", GptType::kEfiSystem, Uuid::from_name("esp"), 8 * kMiB},
                    {"root", GptType::kLinuxRootX86_64, Uuid::from_name("root"), 0}}};
  auto placed = write_gpt(dir / "gpt.raw", layout);
  ASSERT_TRUE(placed) << placed.error().to_string();
  auto files = two_kernels();
  files.push_back({"/boot/grub/grub.cfg",
                   "set default=\"1\"\n"
                   "menuentry 'Debian (old)' {\n linux /boot/vmlinuz-6.1.0-9-amd64 root=/dev/xvda2 ro\n"
                   " initrd /boot/initrd.img-6.1.0-9-amd64\n}\n"
                   "submenu 'Advanced' {\n menuentry 'Debian' {\n  linux /boot/vmlinuz-6.1.0-18-amd64 root=/dev/xvda2 ro quiet\n"
                   "  initrd /boot/initrd.img-6.1.0-18-amd64\n }\n}\n"
                   "menuentry 'Debian, 18' {\n linux /boot/vmlinuz-6.1.0-18-amd64 root=/dev/xvda2 ro quiet\n"
                   " initrd /boot/initrd.img-6.1.0-18-amd64\n}\n"});
  make_filesystem(dir / "gpt.raw", (*placed)[1].offset, 24 * kMiB, files);
  expect_same_choice_as_xen(dir / "gpt.raw", {}, dir / "default");
  expect_same_choice_as_xen(dir / "gpt.raw", {"--entry=0"}, dir / "entry0");

  fs::path mbr = dir / "mbr.raw";
  auto made = testing::run_program({"sh", "-ec", "truncate -s 24M " + mbr.string() +
                                                     " && echo 'start=2048, type=83' | sfdisk --quiet " + mbr.string()});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  auto legacy = two_kernels();
  legacy.push_back({"/boot/grub/menu.lst", "default 1\ntimeout 2\n"
                                           "title Debian 18\nroot (hd0,0)\nkernel /boot/vmlinuz-6.1.0-18-amd64 root=/dev/xvda1 ro\n"
                                           "initrd /boot/initrd.img-6.1.0-18-amd64\n"
                                           "title Debian 9\nroot (hd0,0)\nkernel /boot/vmlinuz-6.1.0-9-amd64 root=/dev/xvda1 ro single\n"
                                           "initrd /boot/initrd.img-6.1.0-9-amd64\n"});
  make_filesystem(mbr, 2048 * 512, 16 * kMiB, legacy);
  expect_same_choice_as_xen(mbr, {}, dir / "mbr");
  expect_same_choice_as_xen(mbr, {"--entry=0"}, dir / "mbr0");
}

TEST(PygrubDisk, ADiskWithNothingBootableSaysWhatWasLookedFor) {
  testing::ScratchDir dir;
  make_filesystem(dir / "disk.img", 0, 16 * kMiB, {{"/etc/hostname", "x\n"}});
  auto none = find_guest_boot_files(dir / "disk.img", {});
  ASSERT_FALSE(none);
  EXPECT_THAT(none.error().message, HasSubstr("no /boot/grub/grub.cfg, menu.lst or /boot/vmlinuz-*"));
  testing::write_text(dir / "zeros", std::string(1 << 20, '\0'));
  EXPECT_FALSE(find_guest_boot_files(dir / "zeros", {}));
  EXPECT_FALSE(find_guest_boot_files(dir / "missing", {}));
}

}  // namespace
}  // namespace kiln
