// HypervisorCommand: the command line that starts an instance on its
// backend: qemu (KVM or TCG; direct kernel boot or UEFI firmware) or
// User-Mode Linux. Every instance writes only to its own overlays and reads
// the baked image as a backing file, so N instances share one image. The
// guest console is on the process's stdin and stdout, which the supervisor
// owns.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/architecture.h"
#include "base/error.h"
#include "runtime/instance.h"
#include "runtime/instance_store.h"

namespace kiln {

struct LaunchOptions {
  bool incoming = false;  // qemu: wait for a migration stream (restore, migrate)
  bool start_paused = false;  // qemu: stay paused once it arrived (-S)
  // qemu: the NICs are left out, and plugged into their slots once the
  // machine runs (one resumed from a snapshot, saved without them).
  bool nics_later = false;
};

// The kernel command line kiln gives a direct-booted guest: root, console,
// and the instance's identity for systemd and kiln's guest agent.
std::string guest_command_line(const InstanceSpec& spec);

// A NIC as qemu takes it, on its command line (-netdev, -device) or plugged
// into a running machine (netdev_add, device_add): the same words.
struct QemuNic {
  std::string netdev;
  std::string device;
};
// Where NIC i sits when the machine has hotplug slots: root port
// kiln-slotI, as device kiln-nicI.
inline constexpr std::string_view kNicSlotPrefix = "kiln-slot";
inline constexpr std::string_view kNicIdPrefix = "kiln-nic";

// The NICs, eth0 first (ports published and --ssh-port as user
// networking's hostfwd=); the first `slots` each in its hotplug slot.
std::vector<QemuNic> qemu_nics(const NetworkSpec& net, int slots = 0);
// The NICs' arguments: qemu's -netdev and -device pairs, UML's ethN=
// (user networking only as eth0, through `slirp`).
std::vector<std::string> qemu_nic_arguments(const NetworkSpec& net, int slots = 0);
std::vector<std::string> uml_nic_arguments(const NetworkSpec& net, const std::string& slirp);

Result<std::vector<std::string>> qemu_command(const InstanceSpec& spec, const InstancePaths& paths,
                                              const LaunchOptions& options);
// The descriptor on which UML finds the exec channel (its ssl1 line); the
// supervisor puts one end of a socket pair there.
inline constexpr int kUmlAgentChannelFd = 3;

Result<std::vector<std::string>> uml_command(const InstanceSpec& spec, const InstancePaths& paths);

// The one host CPU a UML instance runs on, among `allowed` (the CPUs kiln
// may use): picked by the instance id, so that instances spread over the
// CPUs and a restarted one keeps its CPU. UML turns every guest system call
// into a ptrace round trip between its own host processes. On one CPU that
// is a context switch; across two it is a wakeup of the other CPU (in a VM,
// of a vCPU its host must schedule). Measured to ready on the default image
// here: 10-11 s unpinned, 6 s pinned.
int uml_host_cpu(const std::vector<int>& allowed, std::string_view instance_id);

// The CPUs this process may run on (sched_getaffinity), in order.
std::vector<int> allowed_cpus();

// qemu for the host's own architecture, which KVM can run.
inline constexpr const char* kQemuBinary = "qemu-system-x86_64";
inline constexpr const char* kUmlBinary = "linux.uml";

// The row of base/architecture.h for an instance; amd64's for an unknown
// name (plan_instance refuses those before anything starts).
const Architecture& architecture_of(const InstanceSpec& spec);

}  // namespace kiln
