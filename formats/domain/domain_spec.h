// DomainSpec: one virtual machine as a domain description, the data model
// shared by every domain file kiln reads or writes. A Xen domain config
// (formats/domain/xen_config.h) parses into it and is written from it; a libvirt
// domain (formats/domain/libvirt_xml.h) is written from it; the "domain container"
// syntax strips down to a Xen config and so lands here too.
//
// A spec read from a file also says where each part was written
// (DomainSource, and the `where` of each disk and interface), so a later
// check such as "the kernel does not exist" can point at FILE:LINE. Where a
// spec came from is not part of what it describes: operator== ignores it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"

namespace kiln {

// How the host serves a disk image to the guest, as Xen names it.
enum class DiskBackend {
  kFile,    // "file:" a regular file through a loop device
  kTapAio,  // "tap:aio:" a regular file through blktap
  kPhy,     // "phy:" a host block device
};

enum class DiskFormat { kRaw, kQcow2 };

struct DomainDisk {
  DiskBackend backend = DiskBackend::kFile;
  DiskFormat format = DiskFormat::kRaw;
  // The image or device on the host as written; "phy:vg0/feisty" is stored
  // as "/dev/vg0/feisty". A relative path is kept: the caller resolves it.
  std::string path;
  // The guest device as Xen names it: "xvda1", "sda1", "hda". A partition
  // number means the image holds a bare filesystem the guest sees as that
  // partition.
  std::string frontend;
  bool read_only = false;
  // A CD-ROM drive (devtype=cdrom, xm's "hdc:cdrom"): always read-only; an
  // empty path is a drive with no medium.
  bool cdrom = false;
  Location where;  // the line of the disk's entry; empty when built in code

  bool operator==(const DomainDisk& other) const;
};

struct DomainVif {
  std::string mac;     // "00:16:3e:00:00:10"; empty: the toolstack picks one
  std::string bridge;  // empty: no bridge (user networking under libvirt)
  // Every other KEY=VALUE of the vif spec (ip=, script=, model=...), in the
  // order written, kept so a rewritten config says the same.
  std::vector<std::pair<std::string, std::string>> other_keys;
  Location where;

  bool operator==(const DomainVif& other) const;
};

// What happens to the domain when it powers off, reboots or crashes. Xen and
// libvirt allow the coredump-* actions on a crash only.
enum class DomainAction {
  kDestroy,
  kRestart,
  kPreserve,
  kRenameRestart,
  kCoredumpDestroy,
  kCoredumpRestart,
};

// "destroy", "rename-restart"...: the spelling Xen and libvirt share.
std::string_view action_name(DomainAction action);

// A key Xen accepts that kiln does not act on ("vfb", "maxmem"...): the
// caller warns once per key, naming it, its first line and why.
struct UnsupportedKey {
  std::string key;
  Location where;
  std::string why;  // "kiln's guests have no display; the console is ..."
};

// Where the parts of a parsed spec were written.
struct DomainSource {
  std::string file;
  std::map<std::string, Location, std::less<>> keys;  // key -> its "KEY =" line
  std::vector<UnsupportedKey> unsupported;            // in the order first seen

  // The location of `key`, or just the file when the key was not written.
  Location of(std::string_view key) const;
};

// How Xen builds the domain: a paravirtualised kernel (pv, pvh) or a full
// machine that boots its disk through firmware (hvm).
enum class DomainType { kPv, kPvh, kHvm };

std::string_view domain_type_name(DomainType type);

struct DomainSpec {
  std::string name;
  DomainType type = DomainType::kPv;
  uint64_t memory_mib = 0;  // 0: not given (the toolstack's default applies)
  int vcpus = 1;
  std::string kernel;   // empty: the guest boots from its disk
  std::string ramdisk;  // initrd
  std::string root;     // "/dev/xvda1 ro", "UUID=... ro"; becomes root=...
  std::string extra;    // the rest of the kernel command line
  // "pygrub" (or another program's path): the kernel, ramdisk and command
  // line come from the first disk's boot loader configuration.
  std::string bootloader;
  std::vector<std::string> bootloader_args;
  std::string boot;  // hvm: the boot order, "c" (disk), "d" (cdrom), "n"
  std::vector<DomainDisk> disks;
  std::vector<DomainVif> vifs;
  // Xen's defaults, which are also libvirt's.
  DomainAction on_poweroff = DomainAction::kDestroy;
  DomainAction on_reboot = DomainAction::kRestart;
  DomainAction on_crash = DomainAction::kDestroy;
  DomainSource source;

  // The kernel command line Xen builds: "root=ROOT EXTRA", either part
  // optional.
  std::string kernel_command_line() const;

  bool operator==(const DomainSpec& other) const;
};

// True for a Xen guest device name: sdX, hdX or xvdX (X one to four letters)
// with an optional partition number, such as "xvda", "sda1", "hdb".
bool is_xen_frontend(std::string_view name);

// A Xen device name as a disk and a partition number: "sda1" is ("sda", 1),
// "xvdb" is ("xvdb", 0). A number too large for an int is no partition.
std::pair<std::string, int> split_xen_device(std::string_view device);

// True for six two-digit hex octets separated by colons.
bool is_mac_address(std::string_view text);

// Checks what a parser guarantees for a spec built in code, so a writer never
// emits a file that cannot be read back: memory and vcpus within bounds,
// every disk with a path (absolute for phy) and a valid frontend, no
// frontend used twice, valid MAC addresses, vif keys and values without ','
// or surrounding spaces, coredump-* actions on a crash only.
Result<> check_domain(const DomainSpec& spec);

}  // namespace kiln
