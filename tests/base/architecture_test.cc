// The architecture table: every row complete, names unique, and the console
// rename that lets one recipe serve every architecture.
#include "base/architecture.h"

#include <set>

#include <gtest/gtest.h>

namespace kiln {
namespace {

TEST(Architecture, EveryRowNamesWhatBakeAndBootNeed) {
  std::set<std::string_view> names;
  for (const Architecture& arch : architectures()) {
    EXPECT_TRUE(names.insert(arch.dpkg).second) << arch.dpkg;
    for (std::string_view field : {arch.uname, arch.kernel_package, arch.efi_suffix, arch.serial_console,
                                   arch.qemu_system, arch.qemu_machine, arch.tcg_cpu, arch.panic_device})
      EXPECT_FALSE(field.empty()) << arch.dpkg;
    EXPECT_TRUE(arch.kernel_package.starts_with("linux-image-")) << arch.dpkg;
    EXPECT_EQ(arch.root_partition_type.size(), 36u) << arch.dpkg;
    EXPECT_EQ(find_architecture_of_elf(arch.elf_machine), &arch) << arch.dpkg;
    EXPECT_EQ(arch.firmware_code.empty(), arch.firmware_vars.empty()) << arch.dpkg;
    EXPECT_EQ(arch.firmware_code.empty(), arch.firmware_package.empty()) << arch.dpkg;
  }
  EXPECT_EQ(architectures().front().dpkg, "amd64");
  EXPECT_EQ(architecture_choices(), "amd64|arm64|i386|armhf");
}

TEST(Architecture, OnlyAmd64RunsUnderUml) {
  for (const Architecture& arch : architectures()) EXPECT_EQ(arch.uml, arch.dpkg == "amd64") << arch.dpkg;
}

TEST(Architecture, FindsByDpkgName) {
  ASSERT_NE(find_architecture("arm64"), nullptr);
  EXPECT_EQ(find_architecture("arm64")->qemu_system, "qemu-system-aarch64");
  EXPECT_EQ(find_architecture("sparc64"), nullptr);
  EXPECT_EQ(find_architecture(""), nullptr);
}

TEST(Architecture, TheFirstSerialLineIsRenamedForTheMachine) {
  const Architecture& arm64 = *find_architecture("arm64");
  EXPECT_EQ(with_serial_console("console=tty0 console=ttyS0 quiet", arm64), "console=tty0 console=ttyAMA0 quiet");
  EXPECT_EQ(with_serial_console("console=ttyS0,115200n8", arm64), "console=ttyAMA0,115200n8");
  EXPECT_EQ(with_serial_console("console=ttyS01 console=ttyS1", arm64), "console=ttyS01 console=ttyS1");
  EXPECT_EQ(with_serial_console("console=ttyS0", *find_architecture("amd64")), "console=ttyS0");
  EXPECT_EQ(with_serial_console("", arm64), "");
}

}  // namespace
}  // namespace kiln
