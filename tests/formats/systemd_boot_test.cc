#include "formats/disk/systemd_boot.h"

#include <map>

#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using testing::ScratchDir;

class SystemdBootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_text(dir_ / "systemd-bootx64.efi", "MZ boot loader");
    testing::write_text(dir_ / "vmlinuz-6.1", "kernel");
    testing::write_text(dir_ / "initrd.img-6.1", "initrd");
  }

  BootEntry entry() const {
    return {"debian", "Debian GNU/Linux 12", dir_ / "vmlinuz-6.1", dir_ / "initrd.img-6.1",
            "root=UUID=0a1b2c3d-0000-5000-8000-000000000001 ro console=ttyS0"};
  }

  BootLoader loader(const std::string& file) const { return {"x64", dir_ / file, ""}; }

  // ESP path -> the FatFile, for lookups by name.
  std::map<std::string, FatFile> by_path(const std::vector<FatFile>& files) const {
    std::map<std::string, FatFile> out;
    for (const FatFile& file : files) out[file.path] = file;
    return out;
  }

  ScratchDir dir_;
};

TEST_F(SystemdBootTest, PutsTheLoaderWhereFirmwareLooksWithoutBootVariables) {
  auto files = systemd_boot_files(entry(), loader("systemd-bootx64.efi"));
  ASSERT_TRUE(files) << files.error().to_string();
  auto esp = by_path(*files);
  EXPECT_EQ(esp["EFI/BOOT/BOOTX64.EFI"].source, dir_ / "systemd-bootx64.efi");
  EXPECT_EQ(esp["EFI/systemd/systemd-bootx64.efi"].source, dir_ / "systemd-bootx64.efi");
  EXPECT_EQ(esp["vmlinuz"].source, dir_ / "vmlinuz-6.1");
  EXPECT_EQ(esp["initrd.img"].source, dir_ / "initrd.img-6.1");
  EXPECT_EQ(files->size(), 6u);
}

TEST_F(SystemdBootTest, NamesTheLoaderForTheFirmwaresArchitectureAndTakesItsBytesFromTheImage) {
  auto files = systemd_boot_files(entry(), BootLoader{"aa64", "", "MZ arm64 loader"});
  ASSERT_TRUE(files) << files.error().to_string();
  auto esp = by_path(*files);
  EXPECT_EQ(esp["EFI/BOOT/BOOTAA64.EFI"].content, "MZ arm64 loader");
  EXPECT_EQ(esp["EFI/systemd/systemd-bootaa64.efi"].content, "MZ arm64 loader");
  EXPECT_EQ(esp.count("EFI/BOOT/BOOTX64.EFI"), 0u);
  EXPECT_EQ(systemd_boot_path("aa64"), "/usr/lib/systemd/boot/efi/systemd-bootaa64.efi");
}

TEST_F(SystemdBootTest, LoaderConfBootsTheEntryAtOnceWithoutAnEditor) {
  auto files = systemd_boot_files(entry(), loader("systemd-bootx64.efi"));
  ASSERT_TRUE(files);
  EXPECT_EQ(by_path(*files)["loader/loader.conf"].content,
            "timeout 0\ndefault debian.conf\neditor no\n");
}

TEST_F(SystemdBootTest, EntryNamesKernelInitrdAndCommandLine) {
  auto files = systemd_boot_files(entry(), loader("systemd-bootx64.efi"));
  ASSERT_TRUE(files);
  EXPECT_EQ(by_path(*files)["loader/entries/debian.conf"].content,
            "title Debian GNU/Linux 12\n"
            "linux /vmlinuz\n"
            "initrd /initrd.img\n"
            "options root=UUID=0a1b2c3d-0000-5000-8000-000000000001 ro console=ttyS0\n");
}

TEST_F(SystemdBootTest, AnEntryWithoutInitrdHasNoInitrdLine) {
  BootEntry no_initrd = entry();
  no_initrd.initrd.clear();
  auto files = systemd_boot_files(no_initrd, loader("systemd-bootx64.efi"));
  ASSERT_TRUE(files);
  auto esp = by_path(*files);
  EXPECT_FALSE(esp.contains("initrd.img"));
  EXPECT_EQ(esp["loader/entries/debian.conf"].content.find("initrd"), std::string::npos);
}

TEST_F(SystemdBootTest, MissingBootLoaderNamesThePackage) {
  auto files = systemd_boot_files(entry(), BootLoader{"x64", dir_ / "nosuch.efi", ""});
  ASSERT_FALSE(files);
  EXPECT_EQ(files.error().kind, ErrorKind::kMissingTool);
  EXPECT_NE(files.error().message.find("systemd-boot-efi"), std::string::npos);
}

TEST_F(SystemdBootTest, MissingKernelOrInitrdNamesTheFile) {
  BootEntry bad = entry();
  bad.kernel = dir_ / "vmlinuz-missing";
  auto files = systemd_boot_files(bad, loader("systemd-bootx64.efi"));
  ASSERT_FALSE(files);
  EXPECT_NE(files.error().message.find("vmlinuz-missing"), std::string::npos);
  bad = entry();
  bad.initrd = dir_.path();  // a directory, not a file
  files = systemd_boot_files(bad, loader("systemd-bootx64.efi"));
  ASSERT_FALSE(files);
  EXPECT_NE(files.error().message.find("initrd"), std::string::npos);
}

TEST_F(SystemdBootTest, RejectsIdsAndLinesThatWouldBreakTheLoaderFiles) {
  BootEntry bad = entry();
  bad.id = "../debian";
  EXPECT_FALSE(systemd_boot_files(bad, loader("systemd-bootx64.efi")));
  bad = entry();
  bad.command_line = "ro\ninitrd /evil";
  EXPECT_FALSE(systemd_boot_files(bad, loader("systemd-bootx64.efi")));
}

}  // namespace
}  // namespace kiln
