// KilnNetwork: a network `kiln network create` defines and instances join
// with `--net NAME` (or a Xen vif's bridge=NAME). Its definition lives in
// the state root beside the instances, one directory per network that
// also holds what its DHCP and DNS server reads; the host parts it is made
// of (a bridge, an nftables table, dnsmasq) are runtime/network_host's.
//
// The modes: nat (a bridge of its own, masqueraded out of the host),
// routed (a bridge of its own whose guests the host routes as themselves,
// both ways, as Xen's routed mode: the LAN reaches them where it routes
// their subnet to this host), isolated (a bridge of its own with no way out of the host) and bridge:BR
// (instances join the host's existing bridge BR, as Xen's bridged mode)
// need root; socket needs nothing: its guests' NICs are qemu's and UML's
// multicast sockets on one group of the host's, kept to the host (qemu's
// on loopback, UML's with a TTL of 0), so they reach each other and
// nothing else. kiln hands out its addresses and names on the seed disk
// and, as instances come and go, through the exec channel
// (runtime/guest_hosts_sync), since it has no DHCP or DNS server.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/files.h"
#include "base/ipv4_subnet.h"

namespace kiln {

enum class NetworkMode { kNat, kRouted, kIsolated, kBridge, kSocket };

struct KilnNetwork {
  std::string name;
  NetworkMode mode = NetworkMode::kNat;
  Ipv4Subnet subnet;        // nat, isolated
  std::string host_bridge;  // bridge: the host's bridge it joins
  uint32_t group = 0;       // socket: its multicast group (239.255.0.0/16) and port
  uint16_t port = 0;

  // The host bridge its instances' taps join: its own (named as the
  // network), the host's, or none (socket).
  std::string bridge() const;
  // Whether kiln hands out its addresses (its own bridge and dnsmasq, or
  // the seed disk).
  bool kiln_addressed() const { return mode != NetworkMode::kBridge; }
  // Whether it is made of host parts (a bridge, nftables, dnsmasq), which
  // need root.
  bool on_host_bridge() const { return mode != NetworkMode::kSocket; }
  std::string kind() const { return on_host_bridge() ? "bridge" : "socket"; }
  // Whether the host forwards its guests' traffic out (nat, routed).
  bool has_way_out() const { return mode == NetworkMode::kNat || mode == NetworkMode::kRouted; }
  // Its gateway and DNS server's address (.1); a socket network has none
  // but keeps .1 free all the same.
  uint32_t gateway() const { return subnet.host(1); }
  std::string mode_text() const;  // nat, routed, isolated, bridge:BR, socket
  std::string socket_text() const;  // GROUP:PORT
};

// "nat", "routed", "isolated", "bridge:BR" or "socket"; errors name --mode.
Result<std::pair<NetworkMode, std::string>> parse_network_mode(std::string_view text);
// A network's name is its bridge's too: 1 to 15 letters, digits, '-', '_'.
Result<> check_network_name(std::string_view name);

// What `kiln network create` makes of its flags, checked against the other
// networks and the subnets of the host's own interfaces: an overlap with
// either is an error naming it. Without --subnet, the first free
// 10.77.N.0/24. A socket network's group and port follow from a hash of
// `socket_seed` (the state root) and its name, so that two state roots'
// networks of one name do not meet, and differ from the others'.
struct NetworkRequest {
  std::string name;
  std::string mode;  // "": nat (`kiln network create` without root: socket)
  std::string subnet;  // "": picked
  std::string socket_seed;
};
struct HostSubnet {
  std::string interface;
  Ipv4Subnet subnet;
};
Result<KilnNetwork> plan_network(const NetworkRequest& request, const std::vector<KilnNetwork>& others,
                                 const std::vector<HostSubnet>& host_subnets, bool host_has_interface);

// The address an instance's NIC gets on `network`: `wanted` (a vif's ip=)
// if it is one of the network's and free, else the lowest free one from .2.
Result<uint32_t> allocate_address(const KilnNetwork& network, const std::set<uint32_t>& taken,
                                  std::optional<uint32_t> wanted, const std::string& what);

// Networks' definitions under `root` (the state root's .networks).
class NetworkStore {
 public:
  explicit NetworkStore(std::filesystem::path root) : root_(std::move(root)) {}
  static NetworkStore under(const std::filesystem::path& state_root) { return NetworkStore(state_root / ".networks"); }

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path dir(const std::string& name) const { return root_ / name; }
  Result<KilnNetwork> load(const std::string& name) const;  // an unknown name is kBadInput
  bool exists(const std::string& name) const;
  std::vector<KilnNetwork> list() const;  // sorted by name; damaged ones left out
  Result<> save(const KilnNetwork& network) const;
  Result<> remove(const std::string& name) const;
  // Held while networks are made, removed, joined or left, so that two
  // kiln commands at once neither hand out one address twice nor make one
  // network twice. Taken again in the same process, it is already held.
  class Lock {
   public:
    Lock(Lock&& other) noexcept : held_(std::exchange(other.held_, false)) {}
    Lock& operator=(Lock&&) = delete;
    ~Lock();

   private:
    friend class NetworkStore;
    explicit Lock(bool held) : held_(held) {}
    bool held_;
  };
  Result<Lock> lock() const;
  // The lock where networks are kept; none where no network ever was (and
  // so no directory is made for one).
  Result<Lock> lock_if_any() const;

 private:
  std::filesystem::path root_;
};

}  // namespace kiln
