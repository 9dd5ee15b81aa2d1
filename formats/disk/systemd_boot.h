// SystemdBoot: the files that make an EFI system partition boot a Linux
// kernel with systemd-boot, the way firmware does it: the removable-media
// path EFI/BOOT/BOOTX64.EFI (no NVRAM entry needed), a loader.conf that boots
// the one entry at once, and a Boot Loader Specification entry naming the
// kernel, the initrd and the command line. The kernel and initrd sit at the
// root of the ESP.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "formats/disk/fat_image.h"

namespace kiln {

// Where Debian's systemd-boot-efi package puts the boot loader for UEFI's
// architecture `efi_suffix` ("x64", "aa64"), on the host as in an image.
std::string systemd_boot_path(std::string_view efi_suffix);

struct BootLoader {
  std::string efi_suffix = "x64";
  std::filesystem::path file;  // systemd-boot<suffix>.efi on the host, or
  std::string content;         // its bytes, when taken from the image itself
};

struct BootEntry {
  std::string id;     // the entry's file name without ".conf", e.g. "debian"
  std::string title;  // shown in the boot menu
  std::filesystem::path kernel;  // host file, becomes /vmlinuz
  std::filesystem::path initrd;  // host file, becomes /initrd.img; empty: none
  std::string command_line;      // e.g. "root=UUID=... ro console=ttyS0"
};

// The files to put on the ESP. A missing boot loader is a kMissingTool error
// naming the package; a missing kernel or initrd names the file.
Result<std::vector<FatFile>> systemd_boot_files(const BootEntry& entry, const BootLoader& loader);

}  // namespace kiln
