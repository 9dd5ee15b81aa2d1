// BootSource: what `kiln boot ARG` boots. ARG is a baked image directory
// (with manifest.json: kernel, initrd, and root.img or else disk.raw's root
// partition) or a Xen domain
// config file (xm/xl syntax), in which case its kernel, ramdisk, disks,
// memory, vcpus, root, extra, vif and on_* keys describe the VM. Either way
// the result is the part of an InstanceSpec that the source decides; the
// command line's flags override it.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "runtime/instance.h"

namespace kiln {

// A NIC a Xen config's vif asks for.
struct SourceNic {
  std::string mac;      // empty: kiln's
  std::string bridge;   // empty: user networking
  std::string ip;       // a static address, ADDRESS[/PREFIX]
  std::string vifname;  // the host side's name
  Location where;       // the vif's line
};

struct BootSource {
  std::string name;  // the image's or domain's name
  std::string architecture = "amd64";  // dpkg's name (base/architecture.h)
  std::string description;  // the path given, for messages
  std::filesystem::path kernel;
  std::filesystem::path initrd;
  // disks[0] holds the root filesystem: a bare filesystem (root.img, a Xen
  // "xvda1" file) when root_partition is 0, else a partitioned disk.
  std::vector<DiskSpec> disks;
  int root_partition = 0;
  std::string root_uuid;  // when known: root=UUID= needs no device names
  std::filesystem::path firmware_disk;  // a bootable GPT disk (disk.raw), for --firmware
  std::string kernel_args;
  // The encryption of the root ("luks2", "plain"...), empty when it has none.
  std::string root_encryption;
  // What only the image's own kernel and initramfs can open ("an encrypted
  // root (luks2)", "a root on LVM"), empty when a bare kernel can mount the
  // root: such an image boots on qemu, from root_device.
  std::string root_needs_initramfs;
  std::string root_device;  // root= as the bake wrote it, e.g. /dev/mapper/vg0-root
  std::optional<uint64_t> memory_mib;
  std::optional<int> vcpus;
  // A Xen config's vifs, in order; empty: kiln's default.
  std::vector<SourceNic> nics;
  std::optional<LifecyclePolicy> on_poweroff, on_reboot, on_crash;
  // A Xen domain config boots a domain's own filesystem, prepared for it
  // (by `kiln container`, say): its hostname is its own unless --hostname
  // says otherwise. A baked image is canned: each instance is named for it.
  bool own_hostname = false;
  // Where a Xen config set kernel= and ramdisk= (the uml backend boots its
  // own kernel and says so).
  std::optional<Location> kernel_key;
  // Xen configs: each disk's device as the config named it ("xvda",
  // "sda1"), in the order of `disks`, and root= as the config (or its boot
  // loader's entry) wrote it, "/dev/xvda2" or "UUID=...": plan_instance
  // translates it into the backend's device names.
  std::vector<std::string> xen_devices;
  std::string xen_root;
  Location xen_root_key;
  // An hvm domain: disks[0] is booted through firmware, not a kernel.
  bool boots_through_firmware = false;
  // Why the uml backend cannot run this source ("hdc is a cdrom"), empty
  // when it can.
  std::string needs_qemu;
};

struct BootSourceOptions {
  // Where a Xen config's boot loader (pygrub) puts the kernel and initrd it
  // finds in the guest's disk; one directory per config, reused.
  std::filesystem::path boot_files_dir;
  // Said as soon as it is known, so that a boot failing later still says
  // it: one per Xen key kiln does not act on, and such.
  std::function<void(const std::string&)> warn = [](const std::string&) {};
};

Result<BootSource> read_boot_source(const std::filesystem::path& argument, const BootSourceOptions& options = {});

// root= of a Xen config in the backend's device names: "/dev/xvda2" with
// devices {"xvda"} is /dev/vda2 on qemu, /dev/ubda2 on UML; "/dev/sda1" with
// {"sda1", "sda3"} is /dev/vda. UUID=, LABEL= and the like pass unchanged.
Result<std::string> translate_xen_root(const std::string& root, const std::vector<std::string>& xen_devices,
                                       BackendKind backend, const Location& where);

// The guest's name for disk `index`, partition `partition` (0: the whole
// disk): /dev/vdb2 under qemu, /dev/ubdb2 under UML.
std::string guest_device(BackendKind backend, size_t index, int partition);

}  // namespace kiln
