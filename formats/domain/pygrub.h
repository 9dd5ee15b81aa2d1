// What pygrub does for a Xen domain with `bootloader = 'pygrub'`, without
// mounting anything: find the kernel, initrd and kernel command line inside
// the guest's own disk, from its boot loader configuration.
//
// The disk is raw, a bare ext2/3/4 filesystem (xen-tools' disk.img) or a
// partitioned one (MBR or GPT, read with libfdisk). Its filesystems are
// searched in partition order, as pygrub does, for /boot/grub/grub.cfg,
// /boot/grub2/grub.cfg, /grub/grub.cfg (a separate /boot), then GRUB
// legacy's menu.lst and grub.conf; the config's default entry is taken
// unless bootloader_args choose another. A disk with no configuration at
// all boots its newest /boot/vmlinuz-* with the matching initrd, pygrub's
// own fallback. Filesystems are read with libext2fs (Ext4Image), read-only.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln {

// pygrub's options, as a config's bootloader_args give them:
//   --entry=N|TITLE  the entry to boot (0-based index, or its title)
//   --kernel=PATH --ramdisk=PATH  boot these files of the guest instead of
//                    reading its menu
//   --args=ARGS      the kernel command line (with --kernel), or words added
//                    to the entry's
//   -q, --quiet, -i, --interactive, -n, --not-really: how pygrub talks to a
//                    person, nothing it picks: accepted and ignored.
struct BootLoaderArgs {
  std::optional<std::string> entry;
  std::string kernel;
  std::string ramdisk;
  std::string args;
};

Result<BootLoaderArgs> parse_bootloader_args(const std::vector<std::string>& words, const Location& where);

// One boot entry of a GRUB menu. Paths are absolute in the filesystem that
// holds the menu, "(hd0,1)" prefixes taken off.
struct BootMenuEntry {
  std::string title;
  std::string kernel;
  std::string initrd;
  std::string args;  // what follows the kernel's path
  // Where GRUB counts it: {top-level item} or {submenu, entry in it}.
  std::vector<int> position;
};

struct BootMenu {
  std::vector<BootMenuEntry> entries;
  std::string default_entry;  // as the file set it: "0", "1>2", a title; "" for none
};

// GRUB 2's grub.cfg: menuentry blocks (also inside submenus), linux and
// initrd lines and their -16/-efi spellings, set default=. Everything else
// (if blocks, insmod, search...) is stepped over. Errors name FILE:LINE.
Result<BootMenu> parse_grub_cfg(std::string_view text, std::string_view file);
// GRUB legacy's menu.lst / grub.conf: default, title, kernel, initrd.
Result<BootMenu> parse_menu_lst(std::string_view text, std::string_view file);

// The entry pygrub boots: --entry, else the menu's default. Both are an
// index into every entry in file order (submenus flattened, as pygrub
// counts), a title (of which what follows the last '>' counts), or GRUB's
// "N>M" position. A default that names no entry is the first entry; an
// --entry that names none is an error listing them.
Result<const BootMenuEntry*> choose_boot_entry(const BootMenu& menu, const BootLoaderArgs& args,
                                               std::string_view file);

struct GuestBootFiles {
  int partition = 0;     // 1-based; 0: the disk is a bare filesystem
  uint64_t offset = 0;   // the filesystem's byte offset in the disk
  std::string kernel;    // paths inside that filesystem
  std::string initrd;    // empty: none
  std::string command_line;
  std::string found_in;  // for messages: "/boot/grub/grub.cfg, entry 'Debian GNU/Linux'"
};

Result<GuestBootFiles> find_guest_boot_files(const std::filesystem::path& disk, const BootLoaderArgs& args);

// Writes out_dir/vmlinuz and, when there is one, out_dir/initrd.img (and
// removes an older initrd.img when there is not), each replaced whole or not
// at all, and notes what they came from: the same files of a disk unchanged
// since (same inode, size and modification time) are not written again.
Result<> extract_guest_boot_files(const GuestBootFiles& found, const std::filesystem::path& disk,
                                  const std::filesystem::path& out_dir);

}  // namespace kiln
