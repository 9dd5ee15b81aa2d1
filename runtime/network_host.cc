#include "runtime/network_host.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include "base/files.h"
#include "base/subprocess.h"

namespace kiln {
namespace fs = std::filesystem;

namespace {

// The bridge's alias marks it as kiln's, and names the directory of its
// network, so that a bridge kiln made can be told from one of the host's,
// and one of another state root's (another user's, a test's) from an
// orphan of this one's.
std::string bridge_alias(const std::string& name, const fs::path& dir) {
  return fmt::format("kiln network {} at {}", name, dir.string());
}

std::string read_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

Result<> write_proc(const fs::path& path, std::string_view value) {
  std::ofstream out(path);
  out << value;
  out.close();
  if (!out) return fail(ErrorKind::kFailed, "cannot write {} to {}", value, path.string());
  return {};
}

// Each published port as a DNAT rule's match and target.
std::vector<std::string> dnat_rules(const std::vector<NetworkMember>& members) {
  std::vector<std::string> rules;
  for (const NetworkMember& member : members)
    for (const PortPublication& port : member.published) {
      std::string to = port.host_address == "0.0.0.0" ? "fib daddr type local" : "ip daddr " + port.host_address;
      rules.push_back(fmt::format("{} {} dport {} dnat to {}:{}", to, port.protocol, port.host_port,
                                  ipv4_text(member.address), port.guest_port));
    }
  return rules;
}

fs::path pid_file(const fs::path& dir) { return dir / "dnsmasq.pid"; }

// dnsmasq reads its hosts files again on SIGHUP, as the unprivileged user
// it has become by then, who may not pass through the state root (a 0700
// directory of the user's): they live where anyone may read them, under
// the bridge's name, which no other network on the host has.
fs::path hosts_dir(const KilnNetwork& network) { return fs::path("/run/kiln-dnsmasq") / network.name; }

// The network's dnsmasq, if it runs.
pid_t running_dnsmasq(const fs::path& dir) {
  std::string text = read_line(pid_file(dir));
  pid_t pid = 0;
  try {
    pid = text.empty() ? 0 : std::stoi(text);
  } catch (const std::exception&) {
    return 0;
  }
  if (pid <= 0 || read_line(fmt::format("/proc/{}/comm", pid)) != "dnsmasq") return 0;
  // A killed one stays a zombie where init does not reap (seen here).
  std::string stat = read_line(fmt::format("/proc/{}/stat", pid));
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos || stat.compare(paren + 2, 1, "Z") == 0) return 0;
  return pid;
}

std::string alias_of(const std::string& name) { return read_line("/sys/class/net/" + name + "/ifalias"); }

bool is_kiln_bridge(const std::string& name) { return alias_of(name).starts_with("kiln network " + name + " at "); }

Result<> ensure_bridge(const KilnNetwork& network, const fs::path& dir) {
  const std::string& name = network.name;
  if (!host_has_interface(name)) {
    KILN_TRY(run({"ip", "link", "add", name, "type", "bridge"}));
    KILN_TRY(run({"ip", "link", "set", name, "alias", bridge_alias(name, dir)}));
  } else if (!is_kiln_bridge(name)) {
    return fail(ErrorKind::kFailed, "network {}: the host's interface {} is not kiln's bridge for it", name, name);
  }
  std::string address = fmt::format("{}/{}", ipv4_text(network.gateway()), network.subnet.prefix);
  KILN_TRY(run({"ip", "address", "replace", address, "dev", name}));
  KILN_TRY(run({"ip", "link", "set", name, "up"}));
  // A port published on 127.0.0.1 reaches the guest from loopback.
  KILN_TRY(write_proc("/proc/sys/net/ipv4/conf/" + name + "/route_localnet", "1"));
  if (network.has_way_out()) KILN_TRY(write_proc("/proc/sys/net/ipv4/ip_forward", "1"));
  return {};
}

Result<> ensure_dnsmasq(const KilnNetwork& network, const fs::path& dir) {
  if (pid_t pid = running_dnsmasq(dir)) {
    // It reads its hosts files again on SIGHUP.
    if (::kill(pid, SIGHUP) != 0) return fail_errno("cannot signal dnsmasq of network", network.name, errno);
    return {};
  }
  KILN_ASSIGN(std::string dnsmasq, find_program("dnsmasq"));
  std::vector<std::string> argv = dnsmasq_arguments(network, dir, hosts_dir(network));
  argv.front() = dnsmasq;
  auto started = run(argv);
  if (!started) return std::unexpected(std::move(started.error()).with_context("network " + network.name));
  return {};
}

}  // namespace

std::vector<NetworkMember> network_members(const KilnNetwork& network, const std::vector<InstanceRecord>& records) {
  std::vector<NetworkMember> members;
  for (const InstanceRecord& record : records) {
    const NetworkSpec& spec = record.spec.network;
    for (size_t i = 0; i < spec.nics.size(); ++i) {
      const NicSpec& nic = spec.nics[i];
      if (nic.network != network.name || nic.address.empty()) continue;
      auto address = parse_ipv4(nic.address.substr(0, nic.address.find('/')));
      if (!address) continue;
      members.push_back({record.spec.name, nic.mac, *address, i == 0 ? spec.published : std::vector<PortPublication>{}});
    }
  }
  return members;
}

std::string nft_table_name(const KilnNetwork& network) { return "kiln-" + network.name; }

std::string nft_ruleset(const KilnNetwork& network, const std::vector<NetworkMember>& members) {
  const std::string table = "ip " + nft_table_name(network);
  const std::string bridge = fmt::format("\"{}\"", network.name);
  const std::string subnet = network.subnet.to_string();
  std::string out = fmt::format("table {}\ndelete table {}\ntable {} {{\n", table, table, table);
  out += "  chain forward {\n    type filter hook forward priority filter; policy accept;\n";
  // What a published port lets in, whatever the mode.
  out += fmt::format("    oifname {} ct status dnat accept\n", bridge);
  if (network.mode == NetworkMode::kRouted) {
    // The guests as themselves, both ways: no masquerade, no fence.
    out += fmt::format("    iifname {} accept\n", bridge);
    out += fmt::format("    oifname {} accept\n", bridge);
  } else if (network.mode == NetworkMode::kNat) {
    out += fmt::format("    iifname {} accept\n", bridge);
    out += fmt::format("    oifname {} ct state established,related accept\n", bridge);
    out += fmt::format("    oifname {} drop\n", bridge);
  } else {
    out += fmt::format("    iifname {} drop\n", bridge);
    out += fmt::format("    oifname {} drop\n", bridge);
  }
  out += "  }\n";
  out += "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n";
  if (network.mode == NetworkMode::kNat)
    out += fmt::format("    ip saddr {} ip daddr != {} masquerade\n", subnet, subnet);
  out += fmt::format("    oifname {} ip saddr 127.0.0.0/8 masquerade\n", bridge);
  out += "  }\n";
  std::vector<std::string> rules = dnat_rules(members);
  // nft names the dstnat priority (-100) for prerouting only.
  for (const char* hook : {"prerouting", "output"}) {
    out += fmt::format("  chain {} {{\n    type nat hook {} priority -100; policy accept;\n", hook, hook);
    for (const std::string& rule : rules) out += "    " + rule + "\n";
    out += "  }\n";
  }
  out += "}\n";
  return out;
}

std::string dns_hosts_file(const std::vector<NetworkMember>& members) {
  std::string out;
  for (const NetworkMember& member : members) out += fmt::format("{} {}\n", ipv4_text(member.address), member.instance);
  return out;
}

std::string dhcp_hosts_file(const std::vector<NetworkMember>& members) {
  std::string out;
  for (const NetworkMember& member : members)
    out += fmt::format("{},{},{}\n", member.mac, ipv4_text(member.address), member.instance);
  return out;
}

std::vector<std::string> dnsmasq_arguments(const KilnNetwork& network, const fs::path& dir, const fs::path& hosts) {
  const Ipv4Subnet& subnet = network.subnet;
  std::vector<std::string> argv = {
      "dnsmasq",
      "--conf-file=/dev/null",
      "--pid-file=" + pid_file(dir).string(),
      "--interface=" + network.name,
      "--bind-interfaces",
      "--except-interface=lo",
      "--listen-address=" + ipv4_text(network.gateway()),
      fmt::format("--dhcp-range={},{},{},1h", ipv4_text(subnet.host(2)), ipv4_text(subnet.broadcast() - 1),
                  subnet.netmask_text()),
      "--dhcp-authoritative",
      "--dhcp-leasefile=" + (dir / "leases").string(),
      "--dhcp-hostsfile=" + (hosts / "dhcp-hosts").string(),
      "--addn-hosts=" + (hosts / "hosts").string(),
      "--no-hosts",
      // Instances are NAME.NETWORK, answered here and never asked upstream.
      "--domain=" + network.name,
      "--local=/" + network.name + "/",
      "--expand-hosts",
      "--dhcp-option=option:domain-search," + network.name,
  };
  if (network.mode == NetworkMode::kIsolated) {
    // No router, and no names but the network's own.
    argv.push_back("--dhcp-option=option:router");
    argv.push_back("--no-resolv");
  }
  return argv;
}

std::string socket_hosts_file(const KilnNetwork& network, const std::vector<NetworkMember>& members) {
  std::string out;
  for (const NetworkMember& member : members)
    out += fmt::format("{} {}.{} {}\n", ipv4_text(member.address), member.instance, network.name, member.instance);
  return out;
}

fs::path socket_hosts_path(const fs::path& dir) { return dir / "hosts"; }

Result<> sync_network(const KilnNetwork& network, const fs::path& dir, const std::vector<NetworkMember>& members) {
  if (!network.on_host_bridge()) return write_file_atomic(socket_hosts_path(dir), socket_hosts_file(network, members));
  if (!network.kiln_addressed()) {
    if (!fs::exists("/sys/class/net/" + network.host_bridge + "/bridge"))
      return fail(ErrorKind::kFailed, "network {}: the host has no bridge named {} (any more)", network.name,
                  network.host_bridge);
    return {};
  }
  KILN_TRY(ensure_bridge(network, dir));
  fs::path hosts = hosts_dir(network);
  std::error_code ec;
  fs::create_directories(hosts, ec);
  if (ec) return fail_errno("cannot create", hosts.string(), ec.value());
  fs::permissions(hosts.parent_path(), fs::perms(0755), ec);
  fs::permissions(hosts, fs::perms(0755), ec);
  KILN_TRY(write_file_atomic(hosts / "hosts", dns_hosts_file(members), 0644));
  KILN_TRY(write_file_atomic(hosts / "dhcp-hosts", dhcp_hosts_file(members), 0644));
  KILN_TRY(ensure_dnsmasq(network, dir));
  KILN_ASSIGN(std::string nft, find_program("nft"));
  Command apply{{nft, "-f", "-"}};
  apply.stdin_text = nft_ruleset(network, members);
  auto applied = run(apply);
  if (!applied) return std::unexpected(std::move(applied.error()).with_context("network " + network.name));
  return {};
}

Result<> tear_down_network(const KilnNetwork& network, const fs::path& dir) {
  if (!network.kiln_addressed() || !network.on_host_bridge()) return {};
  if (pid_t pid = running_dnsmasq(dir)) {
    ::kill(pid, SIGTERM);
    for (int i = 0; i < 100 && ::kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (auto nft = find_program("nft")) {
    Command drop{{*nft, "-f", "-"}};
    // Made first so that deleting it never fails.
    drop.stdin_text = fmt::format("table ip {}\ndelete table ip {}\n", nft_table_name(network), nft_table_name(network));
    KILN_TRY(run(drop));
  }
  if (host_has_interface(network.name) && is_kiln_bridge(network.name))
    KILN_TRY(run({"ip", "link", "del", network.name}));
  return remove_tree(hosts_dir(network));
}

bool network_is_up(const KilnNetwork& network, const fs::path& dir) {
  if (!network.on_host_bridge()) return true;
  if (!network.kiln_addressed()) return fs::exists("/sys/class/net/" + network.host_bridge + "/bridge");
  return host_has_interface(network.name) && is_kiln_bridge(network.name) && running_dnsmasq(dir) != 0;
}

std::vector<HostSubnet> host_subnets() {
  std::vector<HostSubnet> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* entry = list; entry; entry = entry->ifa_next) {
    if (!entry->ifa_addr || entry->ifa_addr->sa_family != AF_INET || !entry->ifa_netmask) continue;
    // Kiln's own bridges count too: another state root's networks are
    // known here only by them.
    std::string name = entry->ifa_name;
    uint32_t address = ntohl(reinterpret_cast<sockaddr_in*>(entry->ifa_addr)->sin_addr.s_addr);
    uint32_t mask = ntohl(reinterpret_cast<sockaddr_in*>(entry->ifa_netmask)->sin_addr.s_addr);
    int prefix = __builtin_popcount(mask);
    out.push_back({name, Ipv4Subnet{address & mask, prefix}});
  }
  ::freeifaddrs(list);
  return out;
}

std::vector<std::string> orphaned_network_parts(const fs::path& root, const std::vector<KilnNetwork>& defined) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/sys/class/net", ec)) {
    std::string name = entry.path().filename().string();
    if (alias_of(name) == bridge_alias(name, root / name)) names.insert(name);
  }
  for (const KilnNetwork& network : defined) names.erase(network.name);
  return {names.begin(), names.end()};
}

bool host_has_interface(const std::string& name) {
  std::error_code ec;
  return !name.empty() && name.find('/') == std::string::npos && fs::exists("/sys/class/net/" + name, ec);
}

}  // namespace kiln
