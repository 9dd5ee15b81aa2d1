// Instance: one running (or stopped) VM made from a baked image. The spec
// says what to boot; the record adds what happened (pids, state, timings)
// and is what `kiln list` shows. Both live as JSON in the instance's state
// directory; the instance's writable disks live elsewhere (see
// InstancePaths), because state is under /run and disks are large.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "crypto/ssh_host_key.h"

namespace kiln {

enum class BackendKind { kQemu, kUml };
std::string_view backend_name(BackendKind kind);

// What the guest does on power-off, reboot or crash, as xm's on_* keys say.
enum class LifecyclePolicy { kDestroy, kRestart, kPreserve };
std::string_view policy_name(LifecyclePolicy policy);
Result<LifecyclePolicy> parse_policy(std::string_view text);

// user: the hypervisor's user networking; tap: a host tap device on a
// bridge; socket: a multicast socket of a socket network (runtime/kiln_network.h).
enum class NetworkKind { kUser, kTap, kSocket };

// One network interface of the guest; the guest names them eth0, eth1...
// in the order of NetworkSpec::nics.
struct NicSpec {
  NetworkKind kind = NetworkKind::kUser;
  std::string network;  // the kiln network it is on, if any
  std::string bridge;   // kTap: the host bridge its tap joins
  std::string tap;      // kTap: the host side's name (a Xen vif's vifname=, else kiln's)
  std::string mac;      // 00:16:3e:xx:xx:xx
  // A static address the guest sets itself ("10.77.0.9/24", a Xen vif's
  // ip=), with its gateway if it has one; empty: the guest asks DHCP.
  std::string address;
  std::string gateway;
  std::string dns;  // the DNS server that names the network's instances
  std::string socket;  // kSocket: the network's multicast GROUP:PORT
};

// --publish: a host port that reaches a port of the guest.
struct PortPublication {
  std::string host_address = "127.0.0.1";
  uint16_t host_port = 0;
  uint16_t guest_port = 0;
  std::string protocol = "tcp";  // tcp | udp
};

struct NetworkSpec {
  std::vector<NicSpec> nics;  // none: the guest has no network
  std::vector<PortPublication> published;
  uint16_t ssh_port = 0;  // forward host 127.0.0.1:PORT to the guest's 22 (user networking)

  std::string first_mac() const { return nics.empty() ? "" : nics.front().mac; }
};

// A file copied into the guest at boot: host source, guest destination.
struct PersonalityFile {
  std::filesystem::path source;
  std::string destination;
};

// What makes this instance itself; it reaches the guest on a seed disk.
struct Personality {
  std::string hostname;
  std::string machine_id;  // 32 hex digits
  std::vector<std::string> ssh_keys;
  std::vector<PersonalityFile> files;
  std::filesystem::path firstboot;  // host script run once in the guest
  // Host keys made for this instance. Their private halves go to the seed
  // disk only, never into the instance's record.
  std::vector<SshHostKey> ssh_host_keys;
};

struct DiskSpec {
  std::filesystem::path base;  // the baked image; never written
  bool partitioned = false;    // disk.raw (GPT) rather than a bare filesystem
  bool read_only = false;
  bool qcow2 = false;  // the base is a qcow2 image, else raw (qemu only)
};

struct InstanceSpec {
  std::string name;
  std::string id;  // unique per instance, in the readiness signal
  BackendKind backend = BackendKind::kQemu;
  bool kvm = false;       // qemu: hardware acceleration (probed), else TCG
  bool firmware = false;  // qemu: UEFI boot of a partitioned disk, else direct kernel
  std::string architecture = "amd64";  // the guest's, as dpkg names it (base/architecture.h)
  std::filesystem::path kernel;
  std::filesystem::path initrd;
  std::string root;         // root= for the kernel, e.g. "UUID=..." or "/dev/vda"
  std::string kernel_args;  // the rest of the kernel command line
  std::vector<DiskSpec> disks;  // disks[0] holds the root filesystem
  uint64_t memory_mib = 512;
  int vcpus = 1;
  NetworkSpec network;
  Personality personality;
  bool persistent = false;
  LifecyclePolicy on_poweroff = LifecyclePolicy::kDestroy;
  LifecyclePolicy on_reboot = LifecyclePolicy::kRestart;
  LifecyclePolicy on_crash = LifecyclePolicy::kDestroy;
  std::string source;  // the image directory or domain config it came from
  // qemu: the VM generation ID (a UUID) its vmgenid device shows the guest;
  // "" for none. A guest resumed from a snapshot gets a new one, and its
  // kernel reseeds its random state on the change.
  std::string generation_id;
  // qemu: PCIe hotplug slots for NICs (its first NICs sit in them). A
  // snapshot's machine has them free, and an instance resumed from it gets
  // its NICs plugged in once it runs.
  int nic_slots = 0;
};

// xm list's states: running, blocked, paused, shutdown, crashed; and the
// moments around them.
enum class InstanceState { kStarting, kRunning, kPaused, kShuttingDown, kCrashed, kStopped, kSaved };
std::string_view state_name(InstanceState state);
char state_letter(InstanceState state);  // r, b, p, s, c as in xm list

struct InstanceRecord {
  InstanceSpec spec;
  InstanceState state = InstanceState::kStarting;
  pid_t supervisor_pid = 0;
  pid_t hypervisor_pid = 0;
  int64_t created_at = 0;  // unix seconds
  int64_t started_at_ms = 0;  // unix milliseconds of the last (re)start
  std::optional<double> ready_seconds;  // from start to the readiness signal
  int restarts = 0;
  int crashes = 0;  // how often the guest crashed, restarted or not
  std::string last_event;  // why it stopped, for list and errors
  // State kSaved: the save file `kiln restore` takes it back from, and the
  // id of that one save, which the file's header carries too.
  std::string saved_to;
  std::string save_id;
  // What the guest waits for from a person (a passphrase prompt kiln did
  // not or could not answer); empty while it gets on by itself.
  std::string waiting_for;
  // What the guest agent reported with its readiness signal.
  std::string guest_hostname;
  std::string guest_machine_id;
  std::string guest_mac;
  // Whose ssh host keys the guest's sshd has: "kiln" (the instance's own,
  // made by kiln), "own" (the machine's), "none"; "" when not reported.
  std::string guest_ssh_host_keys;
  // The exec agent's protocol version, "none" (an image without one) or ""
  // (an image baked before kiln had `kiln exec`).
  std::string guest_exec;
  // The value of the mark (KILN_INSTANCE) its host processes carry: the
  // instance id, except for an instance migrated in, whose source may be
  // a kiln on this same machine still ending its own processes.
  std::string process_mark;
  const std::string& mark() const { return process_mark.empty() ? spec.id : process_mark; }
  // The instance's ssh host keys, once the guest said sshd has them.
  std::vector<SshHostKey> confirmed_ssh_host_keys() const;
};

nlohmann::json to_json(const InstanceRecord& record);
// The NICs (kind, bridge, tap, mac, static address) and published ports.
nlohmann::json network_json(const NetworkSpec& network);
// What the guest agent reported with its readiness signal.
nlohmann::json guest_json(const InstanceRecord& record);
// An ssh host key's public half: file, public_key, fingerprint.
nlohmann::json public_json(const SshHostKey& key);
Result<InstanceRecord> record_from_json(const nlohmann::json& json, const std::string& origin);

// A random hex string of `bytes` bytes (ids, machine ids).
std::string random_hex(size_t bytes);
// The MAC of an instance's NIC in Xen's 00:16:3e range: the same for the
// same instance name and NIC index, so that a guest re-made under its name
// keeps its addresses.
std::string instance_mac(const std::string& instance_name, size_t nic_index);

}  // namespace kiln
