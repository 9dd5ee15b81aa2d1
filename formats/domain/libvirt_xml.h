// libvirt domain XML: the `NAME.libvirt.xml` kiln writes beside an image so
// that `virsh define` (or virt-manager) can run it under KVM or plain QEMU.
//
// The domain is an x86_64 q35 machine with ACPI, virtio disks (vda, vdb...
// in the order of DomainSpec::disks, whatever their Xen frontend was),
// virtio network interfaces (on a host bridge, a libvirt network, or user
// networking), a serial console on a pty and, when asked,
// the exec agent's virtio-serial channel. It boots either
// the spec's kernel directly (kernel, initrd, and the command line
// "root=ROOT EXTRA") or, without a kernel, from the first disk; with
// LibvirtOptions::uefi through UEFI firmware, with Secure Boot off (kiln's
// systemd-boot is not signed). Xen-only details have no
// libvirt counterpart and are left out: vif keys other than mac and bridge,
// and the Xen frontend names themselves (so a root= naming /dev/xvda1 does
// not match the guest's /dev/vda; prefer root=UUID=...).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "formats/domain/domain_spec.h"

namespace kiln {

enum class LibvirtDomainType {
  kKvm,   // hardware virtualisation, needs /dev/kvm
  kQemu,  // TCG emulation, runs anywhere, slowly
};

// The namespace of the <metadata> element that marks a domain as a kiln
// instance, and the element's name under it.
inline constexpr const char* kKilnMetadataNamespace = "https://kiln.invalid/libvirt/instance/1";
inline constexpr const char* kKilnMetadataPrefix = "kiln";

// What kiln keeps in a domain it made: the instance's id (in its ready
// report) and where it came from; once the guest said it was ready, how
// long that took and what its report said of the exec agent (the
// protocol version, or "none").
struct KilnInstanceMetadata {
  std::string id;
  std::string source;
  std::optional<double> ready_seconds;
  std::string exec;
};

struct LibvirtOptions {
  LibvirtDomainType type = LibvirtDomainType::kKvm;
  // The guest's architecture as libvirt names it (uname -m) and its machine.
  std::string arch = "x86_64";
  std::string machine = "q35";
  // The CPU model emulated without KVM; "": libvirt's default.
  std::string tcg_cpu;
  // Boot through UEFI firmware instead of SeaBIOS.
  bool uefi = false;
  // The firmware code image (e.g. /usr/share/OVMF/OVMF_CODE_4M.fd); empty:
  // libvirt picks one (<os firmware='efi'>).
  std::string uefi_loader;
  // A domain kiln's libvirt backend made carries its instance metadata.
  std::optional<KilnInstanceMetadata> instance;
  // Per vif, by index: the libvirt network it joins instead of its bridge
  // (`--net NAME` through libvirt); "" or past the end: none.
  std::vector<std::string> vif_networks;
  // SMBIOS OEM strings (type 11) the guest reads from its firmware tables:
  // how kiln's exec agent finds its channel when the disk's boot loader,
  // not kiln, gives the kernel its command line.
  std::vector<std::string> oem_strings;
  // The name of a virtio-serial channel for kiln's exec agent, on a UNIX
  // socket that libvirt places (virDomainOpenChannel reaches it); "": none.
  std::string agent_channel;
};

// The <kiln:instance> element in a domain, or (`bare`) the <instance>
// element virDomainSetMetadata takes, which puts it in kiln's namespace
// itself; and back, nullopt when `xml` is not kiln's element.
std::string kiln_metadata_xml(const KilnInstanceMetadata& metadata, bool bare = false);
std::optional<KilnInstanceMetadata> parse_kiln_metadata(const std::string& xml);

// The <domain> document. Fails when the spec has no name or memory, when a
// name holds '/' or a line break, or when some text cannot be carried by XML
// (control characters, invalid UTF-8), as well as on anything check_domain()
// rejects.
Result<std::string> write_libvirt_xml(const DomainSpec& spec, const LibvirtOptions& options);

}  // namespace kiln
