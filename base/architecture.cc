#include "base/architecture.h"

#include <array>
#include <string>

#include <fmt/format.h>

namespace kiln {
namespace {

constexpr std::array kArchitectures = {
    Architecture{
        .dpkg = "amd64", .uname = "x86_64", .kernel_package = "linux-image-amd64", .efi_suffix = "x64",
        .serial_console = "ttyS0", .qemu_system = "qemu-system-x86_64", .qemu_machine = "q35",
        .tcg_cpu = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16", .panic_device = "pvpanic",
        .firmware_code = "/usr/share/OVMF/OVMF_CODE_4M.fd", .firmware_vars = "/usr/share/OVMF/OVMF_VARS_4M.fd",
        .firmware_package = "ovmf", .binfmt = "", .binfmt_line = "", .native_on = "", .uml = true,
        .root_partition_type = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", .elf_machine = 62},
    Architecture{
        .dpkg = "arm64", .uname = "aarch64", .kernel_package = "linux-image-arm64", .efi_suffix = "aa64",
        .serial_console = "ttyAMA0", .qemu_system = "qemu-system-aarch64", .qemu_machine = "virt",
        // "max" would add pointer authentication, which TCG emulates slowly.
        .tcg_cpu = "cortex-a72", .panic_device = "pvpanic-pci",
        .firmware_code = "/usr/share/AAVMF/AAVMF_CODE.fd", .firmware_vars = "/usr/share/AAVMF/AAVMF_VARS.fd",
        .firmware_package = "qemu-efi-aarch64", .binfmt = "qemu-aarch64", .binfmt_line = "", .native_on = "",
        .uml = false,
        .root_partition_type = "B921B045-1DF0-41C3-AF44-4C6F280D3FAE", .elf_machine = 183},
    // An amd64 kernel with IA32 emulation runs i386 programs itself; one
    // without (seen on these machines) needs qemu-i386, whose entry is
    // qemu's own (scripts/qemu-binfmt-conf.sh). Debian ships no 32-bit UEFI
    // firmware without Secure Boot, so these boot their kernel directly.
    Architecture{
        .dpkg = "i386", .uname = "i686", .kernel_package = "linux-image-686", .efi_suffix = "ia32",
        .serial_console = "ttyS0", .qemu_system = "qemu-system-i386", .qemu_machine = "q35",
        .tcg_cpu = "qemu32,+sse2,+cx8,+cmov", .panic_device = "pvpanic",
        .firmware_code = "", .firmware_vars = "", .firmware_package = "", .binfmt = "qemu-i386",
        .binfmt_line = ":qemu-i386:M::\\x7fELF\\x01\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x03\\x00:"
                       "\\xff\\xff\\xff\\xff\\xff\\xfe\\xfe\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:"
                       "/usr/bin/qemu-i386-static:F",
        .native_on = "amd64", .uml = false,
        .root_partition_type = "44479540-F159-41B4-8788-E6B4C5B0A4B4", .elf_machine = 3},
    Architecture{
        .dpkg = "armhf", .uname = "armv7l", .kernel_package = "linux-image-armmp-lpae", .efi_suffix = "arm",
        .serial_console = "ttyAMA0", .qemu_system = "qemu-system-arm", .qemu_machine = "virt",
        .tcg_cpu = "cortex-a15", .panic_device = "pvpanic-pci",
        .firmware_code = "/usr/share/AAVMF/AAVMF32_CODE.fd", .firmware_vars = "/usr/share/AAVMF/AAVMF32_VARS.fd",
        .firmware_package = "qemu-efi-arm", .binfmt = "qemu-arm", .binfmt_line = "", .native_on = "",
        .uml = false,
        .root_partition_type = "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3", .elf_machine = 40},
};

}  // namespace

std::span<const Architecture> architectures() { return kArchitectures; }

const Architecture* find_architecture(std::string_view dpkg) {
  for (const Architecture& arch : kArchitectures)
    if (arch.dpkg == dpkg) return &arch;
  return nullptr;
}

const Architecture* find_architecture_of_elf(uint16_t machine) {
  for (const Architecture& arch : kArchitectures)
    if (arch.elf_machine == machine) return &arch;
  return nullptr;
}

std::string_view architecture_choices() {
  static const std::string choices = [] {
    std::string out;
    for (const Architecture& arch : kArchitectures) {
      if (!out.empty()) out += '|';
      out += arch.dpkg;
    }
    return out;
  }();
  return choices;
}

std::string with_serial_console(std::string_view command_line, const Architecture& arch) {
  constexpr std::string_view kFirstSerial = "console=ttyS0";
  std::string out;
  while (!command_line.empty()) {
    size_t space = command_line.find(' ');
    std::string_view word = command_line.substr(0, space);
    command_line.remove_prefix(space == std::string_view::npos ? command_line.size() : space + 1);
    if (!out.empty()) out += ' ';
    // "console=ttyS0" or "console=ttyS0,115200n8", not ttyS01.
    if (word.starts_with(kFirstSerial) && (word.size() == kFirstSerial.size() || word[kFirstSerial.size()] == ','))
      out += fmt::format("console={}{}", arch.serial_console, word.substr(kFirstSerial.size()));
    else
      out += word;
  }
  return out;
}

std::string_view host_architecture() {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#elif defined(__i386__)
  return "i386";
#elif defined(__arm__)
  return "armhf";
#else
  return "";
#endif
}

}  // namespace kiln
