// Architecture: everything kiln does differently for an image's CPU
// architecture, in one table. A bake reads the kernel package, the EFI boot
// loader's name and the emulation qemu-user needs from it; a boot reads the
// qemu binary, machine, CPU model, serial console and firmware; feeds read
// the names other tools use. Adding an architecture is adding a row.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace kiln {

struct Architecture {
  std::string_view dpkg;            // Debian's name, as recipes and manifests write it: "arm64"
  std::string_view uname;           // the kernel's (and libvirt's, virt-builder's): "aarch64"
  std::string_view kernel_package;  // Debian's generic kernel: "linux-image-arm64"
  // UEFI's name for the architecture: the removable-media loader is
  // EFI/BOOT/BOOT<SUFFIX>.EFI and systemd-boot's file systemd-boot<suffix>.efi.
  std::string_view efi_suffix;      // "aa64"
  std::string_view serial_console;  // the first serial line of qemu's machine: "ttyAMA0"
  std::string_view qemu_system;     // "qemu-system-aarch64"
  std::string_view qemu_machine;    // "virt"
  // The CPU model qemu emulates without KVM. x86: x86-64-v2 on qemu64's AMD
  // identity. Measured to ready on the default image: "max" 21.5-23.7 s,
  // this 18-21 s; Intel models such as Nehalem 27-28 s, because their guest
  // kernel turns on the Meltdown page-table isolation, a TLB flush per system
  // call that TCG pays dearly for.
  std::string_view tcg_cpu;
  std::string_view panic_device;    // qemu's pvpanic for the machine
  std::string_view firmware_code;   // UEFI firmware (read-only) and its variable store template
  std::string_view firmware_vars;
  std::string_view firmware_package;  // the Debian package that has them
  // The qemu-user binfmt_misc entry that runs its programs on an x86-64
  // host (qemu-user-static's /usr/lib/binfmt.d/NAME.conf); "" for the
  // host's own.
  std::string_view binfmt;
  // The entry's registration where qemu-user-static ships no binfmt.d file
  // for it (Debian leaves out i386 on amd64); "" for none.
  std::string_view binfmt_line;
  // The host architecture whose kernel may run its programs itself (x86-64
  // kernels built with IA32 emulation run i386's): there qemu's entry is
  // registered only where the kernel turns out not to.
  std::string_view native_on;
  bool uml = false;  // User-Mode Linux runs it (Debian ships linux.uml for amd64 only)
  // The Discoverable Partitions Specification's GPT type of its root
  // partition, upper case, and its ELF e_machine: how `kiln import` knows a
  // root and its architecture in another's image.
  std::string_view root_partition_type;
  uint16_t elf_machine = 0;
};

// Every architecture kiln bakes and boots, amd64 first.
std::span<const Architecture> architectures();

// The row for a dpkg name; nullptr for one kiln does not know.
const Architecture* find_architecture(std::string_view dpkg);
// The row whose programs have this ELF e_machine; nullptr for none.
const Architecture* find_architecture_of_elf(uint16_t machine);

// The dpkg names as a recipe setting's choices: "amd64|arm64|...".
std::string_view architecture_choices();

// `command_line` with its console=ttyS0 (the first serial line, as recipes
// and Xen-era configs name it) renamed to the architecture's own.
std::string with_serial_console(std::string_view command_line, const Architecture& arch);

// The architecture of this kiln's own build, as dpkg names it.
std::string_view host_architecture();

}  // namespace kiln
