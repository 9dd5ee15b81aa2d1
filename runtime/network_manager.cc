#include "runtime/network_manager.h"

#include <unistd.h>

#include <algorithm>
#include <set>

#include "base/subprocess.h"
#include "runtime/network_host.h"

namespace kiln {
namespace fs = std::filesystem;
namespace {

std::vector<InstanceRecord> all_records(const InstanceStore& store) {
  std::vector<InstanceRecord> records;
  for (const std::string& name : store.names())
    if (auto record = store.load(name)) records.push_back(std::move(*record));
  return records;
}

std::set<std::string> kiln_networks_of(const InstanceSpec& spec) {
  std::set<std::string> names;
  for (const NicSpec& nic : spec.network.nics)
    if (!nic.network.empty()) names.insert(nic.network);
  return names;
}

std::set<std::string> socket_networks_of(const InstanceSpec& spec) {
  std::set<std::string> names;
  for (const NicSpec& nic : spec.network.nics)
    if (nic.kind == NetworkKind::kSocket) names.insert(nic.network);
  return names;
}

Result<> sync(const InstanceStore& store, const NetworkStore& networks, const KilnNetwork& network) {
  return sync_network(network, networks.dir(network.name), network_members(network, all_records(store)));
}

Result<> need_root(std::string_view what) {
  if (::geteuid() == 0) return {};
  return fail(ErrorKind::kMissingTool,
              "{} needs root: such a network is made of a host bridge, an nftables table and a dnsmasq (without "
              "root: --mode socket)",
              what);
}

void remove_taps(const InstanceSpec& spec) {
  for (const NicSpec& nic : spec.network.nics)
    if (nic.kind == NetworkKind::kTap) (void)run({"ip", "link", "del", nic.tap});
}

}  // namespace

Result<KilnNetwork> create_network(const InstanceStore& store, NetworkRequest request) {
  if (request.mode.empty()) request.mode = ::geteuid() == 0 ? "nat" : "socket";
  request.socket_seed = store.state_root().string();
  NetworkStore networks = NetworkStore::under(store.state_root());
  KILN_ASSIGN(NetworkStore::Lock lock, networks.lock());
  KILN_ASSIGN(KilnNetwork network,
              plan_network(request, networks.list(), host_subnets(), host_has_interface(request.name)));
  if (network.on_host_bridge()) KILN_TRY(need_root("kiln network create --mode " + request.mode));
  if (network.mode == NetworkMode::kBridge && !host_has_interface(network.host_bridge))
    return fail(ErrorKind::kBadInput, "--mode {}: the host has no bridge named {}", request.mode, network.host_bridge);
  KILN_TRY(networks.save(network));
  auto made = sync(store, networks, network);
  if (!made) {
    (void)tear_down_network(network, networks.dir(network.name));
    (void)networks.remove(network.name);
    return std::unexpected(made.error());
  }
  return network;
}

Result<> remove_network(const InstanceStore& store, const std::string& name) {
  NetworkStore networks = NetworkStore::under(store.state_root());
  KILN_ASSIGN(NetworkStore::Lock lock, networks.lock());
  KILN_ASSIGN(KilnNetwork network, networks.load(name));
  std::vector<std::string> users;
  for (const InstanceRecord& record : all_records(store))
    if (kiln_networks_of(record.spec).contains(name)) users.push_back(record.spec.name);
  if (!users.empty())
    return fail(ErrorKind::kBadInput, "network {} is in use by {}: `kiln destroy` {} first", name,
                fmt::format("{}", fmt::join(users, ", ")), users.size() == 1 ? "it" : "them");
  if (network.on_host_bridge()) KILN_TRY(need_root("kiln network rm"));
  KILN_TRY(tear_down_network(network, networks.dir(name)));
  return networks.remove(name);
}

std::vector<NetworkStatus> list_networks(const InstanceStore& store) {
  NetworkStore networks = NetworkStore::under(store.state_root());
  std::vector<InstanceRecord> records = all_records(store);
  std::vector<NetworkStatus> out;
  for (KilnNetwork& network : networks.list()) {
    NetworkStatus status{network, network_is_up(network, networks.dir(network.name)), {}};
    for (const InstanceRecord& record : records)
      if (kiln_networks_of(record.spec).contains(network.name)) status.instances.push_back(record.spec.name);
    out.push_back(std::move(status));
  }
  return out;
}

std::vector<std::string> reconcile_networks(const InstanceStore& store) {
  std::vector<std::string> done;
  if (::geteuid() != 0) return done;
  NetworkStore networks = NetworkStore::under(store.state_root());
  auto lock = networks.lock();
  if (!lock) return done;
  std::vector<KilnNetwork> defined = networks.list();
  for (const KilnNetwork& network : defined) {
    if (network_is_up(network, networks.dir(network.name))) continue;
    auto synced = sync(store, networks, network);
    done.push_back(synced ? fmt::format("network {}: brought its bridge and dnsmasq back", network.name)
                          : fmt::format("network {}: {}", network.name, synced.error().message));
  }
  for (const std::string& orphan : orphaned_network_parts(networks.root(), defined)) {
    KilnNetwork gone{orphan, NetworkMode::kNat};
    auto removed = tear_down_network(gone, networks.dir(orphan));
    done.push_back(removed ? fmt::format("network {}: removed its bridge and nftables table, left without a "
                                         "definition",
                                         orphan)
                           : fmt::format("network {}: {}", orphan, removed.error().message));
  }
  return done;
}

Result<> join_networks(const InstanceStore& store, const InstanceSpec& spec) {
  NetworkStore networks = NetworkStore::under(store.state_root());
  KILN_ASSIGN(NetworkStore::Lock lock, networks.lock_if_any());
  for (const std::string& name : kiln_networks_of(spec)) {
    KILN_ASSIGN(KilnNetwork network, networks.load(name));
    KILN_TRY(sync(store, networks, network));
  }
  remove_taps(spec);
  for (const NicSpec& nic : spec.network.nics) {
    if (nic.kind != NetworkKind::kTap) continue;
    KILN_TRY(run({"ip", "tuntap", "add", "dev", nic.tap, "mode", "tap"}));
    KILN_TRY(run({"ip", "link", "set", nic.tap, "master", nic.bridge}));
    KILN_TRY(run({"ip", "link", "set", nic.tap, "up"}));
  }
  return {};
}

std::vector<fs::path> socket_hosts_files(const InstanceStore& store, const InstanceSpec& spec) {
  NetworkStore networks = NetworkStore::under(store.state_root());
  std::vector<fs::path> files;
  for (const std::string& name : socket_networks_of(spec)) files.push_back(socket_hosts_path(networks.dir(name)));
  return files;
}

std::string guest_hosts(const InstanceStore& store, const InstanceSpec& spec) {
  NetworkStore networks = NetworkStore::under(store.state_root());
  std::vector<InstanceRecord> records = all_records(store);
  std::erase_if(records, [&](const InstanceRecord& record) { return record.spec.name == spec.name; });
  records.push_back({.spec = spec});
  std::string out;
  for (const std::string& name : socket_networks_of(spec))
    if (auto network = networks.load(name)) out += socket_hosts_file(*network, network_members(*network, records));
  return out;
}

void leave_networks(const InstanceStore& store, const InstanceSpec& spec) {
  remove_taps(spec);
  std::set<std::string> names = kiln_networks_of(spec);
  if (names.empty()) return;
  NetworkStore networks = NetworkStore::under(store.state_root());
  auto lock = networks.lock();
  if (!lock) return;
  for (const std::string& name : names)
    if (auto network = networks.load(name)) (void)sync(store, networks, *network);
}

}  // namespace kiln
