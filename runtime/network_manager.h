// NetworkManager: what `kiln network` and the instance lifecycle do to kiln
// networks. Networks are made and removed whole (nothing half-made is left:
// a create that fails takes down what it made); instances join them when
// they are created and leave when they are removed, however that happens
// (destroy, a guest's power-off, a dead supervisor found by list), and each
// join or leave rewrites the network's DHCP, DNS and port rules from the
// instance records, so that what a killed kiln left is put right by the next.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "runtime/instance_store.h"
#include "runtime/kiln_network.h"

namespace kiln {

// Without --mode: nat as root, else socket.
Result<KilnNetwork> create_network(const InstanceStore& store, NetworkRequest request);
// Refused while an instance is on it, naming them.
Result<> remove_network(const InstanceStore& store, const std::string& name);

struct NetworkStatus {
  KilnNetwork network;
  bool up = false;  // its bridge (and dnsmasq) are there
  std::vector<std::string> instances;
};
std::vector<NetworkStatus> list_networks(const InstanceStore& store);

// Puts the host parts of every defined network back (after a host reboot
// took them, or one was killed) and removes kiln's parts of networks that
// are no longer defined. Says what it did, one line each.
std::vector<std::string> reconcile_networks(const InstanceStore& store);

// The instance's NICs on the host: the kiln networks it is on brought up
// and told of it, and its taps made on their bridges (and on host bridges).
// Its record must be saved already.
Result<> join_networks(const InstanceStore& store, const InstanceSpec& spec);
// Its taps removed, and the kiln networks it was on told it is gone. Its
// record must be gone already. Never fails: what is left is put right by
// the next join, leave or reconcile.
void leave_networks(const InstanceStore& store, const InstanceSpec& spec);

// A socket network has no DNS server: its instances' names reach each
// guest's /etc/hosts, at boot from the seed disk (guest_hosts: the lines
// for every socket network `spec` is on, itself among the instances) and
// later from the networks' hosts files, which each join and leave rewrite
// (the supervisor pushes them: runtime/guest_hosts_sync).
std::string guest_hosts(const InstanceStore& store, const InstanceSpec& spec);
std::vector<std::filesystem::path> socket_hosts_files(const InstanceStore& store, const InstanceSpec& spec);

}  // namespace kiln
