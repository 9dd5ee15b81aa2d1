// InstancePlan: the decisions `kiln boot` makes before it makes anything:
// which backend runs the guest, and why, and the instance's spec from the
// request, the image (or Xen config) and kiln's defaults. What they need to
// know about the host they ask HostFacts, a seam: the real host probes KVM
// and looks up programs and bridges; tests answer with plain data and check
// the decisions without qemu, UML or root.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/architecture.h"
#include "base/error.h"
#include "runtime/boot_source.h"
#include "runtime/instance.h"
#include "runtime/instance_store.h"
#include "runtime/kiln_network.h"
#include "runtime/kvm_probe.h"

namespace kiln {

struct BootRequest {
  std::string source;  // image directory or Xen domain config
  std::string name;    // default: the image's or domain's name
  std::string backend = "auto";  // auto | qemu | uml
  std::optional<uint64_t> memory_mib;
  std::optional<int> vcpus;
  // One per NIC, in order: user, a kiln network's name, tap:BRIDGE, or none
  // alone. Empty: the source's (a Xen config's vifs), else one NIC on user
  // networking.
  std::vector<std::string> networks;
  std::vector<std::string> publish;  // [HOSTIP:]HOSTPORT:GUESTPORT[/PROTO]
  uint16_t ssh_port = 0;
  std::string hostname;
  std::vector<std::filesystem::path> ssh_key_files;
  std::vector<std::string> files;  // SRC:DEST
  std::filesystem::path firstboot;
  bool persistent = false;
  bool firmware = false;  // qemu: boot disk.raw through UEFI firmware
  // Its first line answers the guest's passphrase prompt for an encrypted
  // root; it is read here and kept only in the supervisor's memory.
  std::filesystem::path luks_passphrase_file;
  std::optional<LifecyclePolicy> on_poweroff, on_reboot, on_crash;
  // qemu: the machine a snapshot is made of (runtime/snapshot.h): a VM
  // generation ID (a vmgenid device) and free hotplug slots for NICs.
  bool snapshot_machine = false;
  // Resume from a snapshot of the image kept under this directory (made
  // first if there is none) instead of booting; "": boot. Where a snapshot
  // cannot serve (runtime/snapshot.h), the instance boots, saying why.
  std::filesystem::path snapshots;
};

class HostFacts {
 public:
  virtual ~HostFacts() = default;
  // The program's path, or the error that names its Debian package.
  virtual Result<std::string> program(std::string_view name) const = 0;
  // Asked only when the choice depends on it: the real probe boots a guest.
  virtual KvmVerdict kvm(const std::string& qemu) const = 0;
  virtual uint64_t memory_bytes() const = 0;  // 0: unknown
  virtual bool has_bridge(const std::string& name) const = 0;
  virtual bool is_root() const = 0;
  // Whether a --publish can have its host port: free, and an address of
  // this host.
  virtual Result<> host_port_free(const PortPublication& port) const = 0;
  // The kiln network of that name, if there is one; and the addresses its
  // instances have.
  virtual std::optional<KilnNetwork> kiln_network(const std::string& name) const = 0;
  virtual std::set<uint32_t> addresses_taken(const std::string& network) const = 0;
  // Whether UML can be fenced from the host's files here (Landlock), and
  // if not why: kiln never runs it unfenced.
  virtual Result<> uml_fence() const = 0;
};

// This machine, with the store's networks and instances; the KVM verdict is
// cached in its state root.
std::unique_ptr<HostFacts> real_host(const InstanceStore& store);

struct BackendChoice {
  BackendKind kind = BackendKind::kQemu;
  bool kvm = false;
  std::string why;  // for the user: "uml: KVM does not work here (...)"
};

Result<BackendChoice> choose_backend(const BootRequest& request, const BootSource& source, const HostFacts& host);

// The source's row of base/architecture.h, refused by name when kiln does
// not boot that architecture or has no firmware for the UEFI boot asked
// for; for every backend (kiln's own and libvirt's).
Result<const Architecture*> boot_architecture(const BootRequest& request, const BootSource& source);

// The spec of a new instance (a fresh id, personality and SSH host keys);
// checks what the request and the image ask of each other and of the host.
Result<InstanceSpec> plan_instance(const BootRequest& request, const BootSource& source,
                                   const BackendChoice& backend, const HostFacts& host);

}  // namespace kiln
