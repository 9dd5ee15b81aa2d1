// InitramfsDeferral: a bootstrap makes each kernel's initramfs once, after
// every package is set up, instead of once per request. A Debian bootstrap
// with a kernel makes it twice: the kernel's postinst hook creates it, then
// the trigger that udev, systemd or cryptsetup activated later in the same
// apt run makes it again from scratch (about 25 s each on two cores, and
// minutes under qemu-user). Only the last one is kept.
//
// The kernel hooks of initramfs-tools and dracut skip a kernel when INITRD=No
// is in their environment (the convention of /etc/kernel/postinst.d), and
// initramfs-tools' trigger updates only initramfs images that exist, so with
// INITRD=No given to mmdebstrap no initramfs is made during the apt run.
// mmdebstrap's customize hook then makes the missing ones, once, with the
// tree's own generator, as the kernel hook would have, and then points
// /initrd.img at them with linux-update-symlinks, which INITRD=No had also
// told to leave them out. The image is byte for
// byte the one the repeated runs make (the default recipe's disk.raw
// compared), and nothing is written into the tree to arrange it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/subprocess.h"

namespace kiln {

// The environment entry that defers the kernel hooks' initramfs.
inline constexpr const char* kDeferInitramfsEnv = "INITRD=No";

// Makes the initramfs of each kernel in the tree's /boot that has none,
// with update-initramfs or dracut, whichever the tree has (neither: none
// is made, as the kernel hook would not have). Returns the kernel versions
// it made one for.
// With `modules`, initramfs-tools is first configured, in the tree's /etc,
// to carry only those (MODULES=list, and a hook that adds them without
// loading them); a tree without initramfs-tools is then an error.
Result<std::vector<std::string>> make_missing_initramfs(const std::filesystem::path& rootfs, CommandRunner& runner,
                                                        const std::vector<std::string>& modules = {});

}  // namespace kiln
