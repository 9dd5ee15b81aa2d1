// `kiln network create|list|rm`: kiln networks (runtime/network_manager).
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "runtime/instance_store.h"
#include "runtime/network_manager.h"

namespace kiln::cli {
namespace {

nlohmann::json network_json(const NetworkStatus& status) {
  const KilnNetwork& network = status.network;
  nlohmann::json out = {{"name", network.name},
                        {"mode", network.mode_text()},
                        {"kind", network.kind()},
                        {"up", status.up},
                        {"instances", status.instances}};
  if (network.on_host_bridge()) out["bridge"] = network.bridge();
  else out["socket"] = network.socket_text();
  if (network.kiln_addressed()) out["subnet"] = network.subnet.to_string();
  if (network.on_host_bridge() && network.kiln_addressed()) out["gateway"] = ipv4_text(network.gateway());
  return out;
}

int run_list(bool json) {
  InstanceStore store = InstanceStore::open();
  for (const std::string& line : reconcile_networks(store)) fmt::print(stderr, "kiln: {}\n", line);
  std::vector<NetworkStatus> networks = list_networks(store);
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const NetworkStatus& status : networks) out.push_back(network_json(status));
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("{:<16} {:<7} {:<16} {:<18} {:<12} {:<8} {}\n", "Name", "Kind", "Mode", "Subnet", "Gateway", "State",
             "Instances");
  for (const NetworkStatus& status : networks) {
    const KilnNetwork& network = status.network;
    bool own = network.kiln_addressed();
    bool gateway = own && network.on_host_bridge();
    fmt::print("{:<16} {:<7} {:<16} {:<18} {:<12} {:<8} {}\n", network.name, network.kind(), network.mode_text(),
               own ? network.subnet.to_string() : "(the LAN's)", gateway ? ipv4_text(network.gateway()) : "-",
               status.up ? "up" : "down", status.instances.empty() ? "-" : fmt::format("{}", fmt::join(status.instances, ", ")));
  }
  return 0;
}

}  // namespace

void register_network_commands(CLI::App& root, Registry& registry) {
  CLI::App* network = root.add_subcommand(
      "network", "Networks instances join with --net NAME: a bridge, nftables and dnsmasq of their own (root), or "
                 "multicast sockets on this host (socket: no root)");
  network->require_subcommand(1);

  auto request = std::make_shared<NetworkRequest>();
  auto create_json = std::make_shared<bool>(false);
  CLI::App* create = network->add_subcommand(
      "create", "Make a network: its bridge (named as the network), NAT or isolation rules, and DHCP and DNS that "
                "name every instance on it");
  create->add_option("name", request->name, "Network name, also its bridge's (1 to 15 letters, digits, '-', '_')")
      ->required();
  create->add_option("--subnet", request->subnet, "Its IPv4 subnet, e.g. 10.77.0.0/24 (default: the first free 10.77.N.0/24)");
  create->add_option("--mode", request->mode,
                     "nat (the default as root: out through the host, masqueraded), routed (out through the host "
                     "as themselves, and reachable from the LAN that routes the subnet here), isolated (no way out "
                     "of the host), bridge:HOSTBRIDGE (join the host's bridge, as Xen's bridged mode) or socket (the "
                     "default without root: qemu's and UML's multicast sockets, guests reach each other and "
                     "nothing else)");
  create->add_flag("--json", *create_json, "Print the network as JSON");
  registry.push_back({create, [request, create_json] {
                        InstanceStore store = InstanceStore::open();
                        return finish(create_network(store, *request), [&](const KilnNetwork& made) {
                          if (*create_json) {
                            fmt::print("{}\n", network_json({made, true, {}}).dump());
                          } else if (!made.on_host_bridge()) {
                            fmt::print("network {} (socket, {}, multicast {} on this host only) is ready\n",
                                       made.name, made.subnet.to_string(), made.socket_text());
                          } else if (made.kiln_addressed()) {
                            fmt::print("network {} ({}, {}, gateway {}) is up\n", made.name, made.mode_text(),
                                       made.subnet.to_string(), ipv4_text(made.gateway()));
                          } else {
                            fmt::print("network {} joins the host's bridge {}\n", made.name, made.host_bridge);
                          }
                        });
                      }});

  auto json = std::make_shared<bool>(false);
  CLI::App* list = network->add_subcommand("list", "List networks: kind (bridge or socket), mode, subnet, gateway, state "
                                                   "and instances");
  list->add_flag("--json", *json, "Print JSON");
  registry.push_back({list, [json] { return run_list(*json); }});

  auto name = std::make_shared<std::string>();
  CLI::App* rm = network->add_subcommand(
      "rm", "Remove a network and its bridge, rules and dnsmasq (refused while an instance is on it)");
  rm->add_option("name", *name, "Network name")->required();
  registry.push_back({rm, [name] {
                        return finish(remove_network(InstanceStore::open(), *name),
                                      [&] { fmt::print("network {} removed\n", *name); });
                      }});
}

}  // namespace kiln::cli
