// NetworkHost: the host parts a kiln network is made of (a socket network
// has none but its hosts file), as root: a Linux
// bridge named as the network (its alias says it is kiln's), an nftables
// table `ip kiln-NAME` (masquerade out of the host for nat, a drop of all
// forwarding for isolated, and DNAT for the ports instances publish), and
// a dnsmasq of its own for DHCP and DNS, whose files live in the
// network's directory.
//
// What the parts should say follows from the network and its members (the
// instances whose NICs are on it), so the functions that write it are pure
// and tested as text; sync_network rewrites all of it from the instance
// records, which is also how a later kiln command reconciles what a killed
// one left.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "runtime/instance.h"
#include "runtime/kiln_network.h"

namespace kiln {

// An instance's NIC on a kiln network.
struct NetworkMember {
  std::string instance;
  std::string mac;
  uint32_t address = 0;
  // Published through this NIC: the instance's first.
  std::vector<PortPublication> published;
};

std::vector<NetworkMember> network_members(const KilnNetwork& network, const std::vector<InstanceRecord>& records);

std::string nft_table_name(const KilnNetwork& network);  // kiln-NAME
// The whole table, as `nft -f` reads it: replaces what was there.
std::string nft_ruleset(const KilnNetwork& network, const std::vector<NetworkMember>& members);
// dnsmasq's addn-hosts (ADDRESS NAME) and dhcp-hostsfile (MAC,ADDRESS,NAME).
std::string dns_hosts_file(const std::vector<NetworkMember>& members);
std::string dhcp_hosts_file(const std::vector<NetworkMember>& members);
// A socket network's names, as /etc/hosts lines (ADDRESS NAME.NETWORK
// NAME), kept in its directory at socket_hosts_path.
std::string socket_hosts_file(const KilnNetwork& network, const std::vector<NetworkMember>& members);
std::filesystem::path socket_hosts_path(const std::filesystem::path& dir);
// `dir` holds its pid file and leases, `hosts` the hosts files it re-reads.
std::vector<std::string> dnsmasq_arguments(const KilnNetwork& network, const std::filesystem::path& dir,
                                           const std::filesystem::path& hosts);

// Makes what is missing of the network's parts and rewrites its rules and
// hosts from `members`; a bridge:BR network has none of its own, a socket
// network only its hosts file.
Result<> sync_network(const KilnNetwork& network, const std::filesystem::path& dir,
                      const std::vector<NetworkMember>& members);
// Removes the network's parts; what is already gone is no error.
Result<> tear_down_network(const KilnNetwork& network, const std::filesystem::path& dir);
// Whether its bridge and dnsmasq are there (a socket network is always up).
bool network_is_up(const KilnNetwork& network, const std::filesystem::path& dir);
// The subnets of the host's interfaces, kiln's bridges among them.
std::vector<HostSubnet> host_subnets();
bool host_has_interface(const std::string& name);
// Names of networks kept under `root` whose bridge kiln made but which are
// not among `defined` (any more).
std::vector<std::string> orphaned_network_parts(const std::filesystem::path& root,
                                                const std::vector<KilnNetwork>& defined);

}  // namespace kiln
