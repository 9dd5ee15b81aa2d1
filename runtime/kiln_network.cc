#include "runtime/kiln_network.h"

#include <fcntl.h>

#include <algorithm>
#include <charconv>
#include <regex>
#include <tuple>

#include <nlohmann/json.hpp>

#include "base/hash.h"

namespace kiln {
namespace fs = std::filesystem;

namespace {

// kiln's own range for the networks it picks subnets for.
constexpr uint32_t kPickedSubnetBase = (10u << 24) | (77u << 16);

// kiln's own range of multicast groups for socket networks: in the
// IPv4 local scope, which routers do not forward.
constexpr uint32_t kSocketGroupBase = (239u << 24) | (255u << 16);
constexpr uint16_t kSocketPortBase = 20000;

nlohmann::json network_json(const KilnNetwork& network) {
  nlohmann::json out = {{"name", network.name},
                        {"mode", network.mode_text()},
                        {"subnet", network.kiln_addressed() ? network.subnet.to_string() : ""}};
  if (!network.on_host_bridge()) out["socket"] = network.socket_text();
  return out;
}

Result<std::pair<uint32_t, uint16_t>> parse_socket(const std::string& text) {
  size_t colon = text.rfind(':');
  auto group = parse_ipv4(text.substr(0, colon));
  int port = 0;
  if (colon != std::string::npos) std::from_chars(text.data() + colon + 1, text.data() + text.size(), port);
  if (!group || (*group >> 24) < 224 || (*group >> 24) > 239 || port <= 0 || port > 65535)
    return fail(ErrorKind::kFailed, "\"{}\" is not a multicast GROUP:PORT", text);
  return std::pair{*group, static_cast<uint16_t>(port)};
}

// Stable across kiln builds and machines, as instance_mac's MACs are.
uint32_t stable_hash(const std::string& seed, const std::string& name) {
  return static_cast<uint32_t>(std::stoul(Hasher().field("kiln socket network").field(seed).field(name).hex_digest().substr(0, 8),
                                          nullptr, 16));
}

void pick_socket(KilnNetwork& network, const std::string& seed, const std::vector<KilnNetwork>& others) {
  for (uint32_t hash = stable_hash(seed, network.name);; ++hash) {
    network.group = kSocketGroupBase | (hash & 0xffff);
    network.port = static_cast<uint16_t>(kSocketPortBase + (hash >> 16) % 20000);
    bool taken = std::any_of(others.begin(), others.end(), [&](const KilnNetwork& other) {
      return !other.on_host_bridge() && (other.group == network.group || other.port == network.port);
    });
    if (!taken) return;
  }
}

Result<KilnNetwork> network_from(const nlohmann::json& json, const std::string& origin) {
  try {
    KilnNetwork network;
    network.name = json.at("name");
    KILN_ASSIGN(auto mode, parse_network_mode(json.at("mode").get<std::string>()));
    network.mode = mode.first;
    network.host_bridge = mode.second;
    if (network.kiln_addressed()) {
      KILN_ASSIGN(network.subnet, Ipv4Subnet::parse(json.at("subnet").get<std::string>()));
    }
    if (!network.on_host_bridge()) {
      auto socket = parse_socket(json.at("socket").get<std::string>());
      if (!socket) return fail(ErrorKind::kFailed, "{}: damaged network definition: {}", origin, socket.error().message);
      std::tie(network.group, network.port) = *socket;
    }
    return network;
  } catch (const nlohmann::json::exception& error) {
    return fail(ErrorKind::kFailed, "{}: damaged network definition: {}", origin, error.what());
  }
}

}  // namespace

std::string KilnNetwork::mode_text() const {
  switch (mode) {
    case NetworkMode::kNat: return "nat";
    case NetworkMode::kRouted: return "routed";
    case NetworkMode::kIsolated: return "isolated";
    case NetworkMode::kBridge: return "bridge:" + host_bridge;
    case NetworkMode::kSocket: return "socket";
  }
  return "?";
}

std::string KilnNetwork::bridge() const {
  switch (mode) {
    case NetworkMode::kBridge: return host_bridge;
    case NetworkMode::kSocket: return "";
    default: return name;
  }
}

std::string KilnNetwork::socket_text() const { return fmt::format("{}:{}", ipv4_text(group), port); }

Result<std::pair<NetworkMode, std::string>> parse_network_mode(std::string_view text) {
  if (text == "nat") return std::pair{NetworkMode::kNat, std::string()};
  if (text == "routed") return std::pair{NetworkMode::kRouted, std::string()};
  if (text == "isolated") return std::pair{NetworkMode::kIsolated, std::string()};
  if (text.starts_with("bridge:") && text.size() > 7) return std::pair{NetworkMode::kBridge, std::string(text.substr(7))};
  if (text == "socket") return std::pair{NetworkMode::kSocket, std::string()};
  return fail(ErrorKind::kBadInput, "--mode {}: expected nat, routed, isolated, bridge:HOSTBRIDGE or socket", text);
}

Result<> check_network_name(std::string_view name) {
  static const std::regex pattern("[A-Za-z0-9][A-Za-z0-9_-]{0,14}");
  if (std::regex_match(name.begin(), name.end(), pattern)) return {};
  return fail(ErrorKind::kBadInput,
              "bad network name \"{}\": expected 1 to 15 letters, digits, '_' or '-', starting with a letter or "
              "digit (it names the network's bridge too)",
              name);
}

Result<KilnNetwork> plan_network(const NetworkRequest& request, const std::vector<KilnNetwork>& others,
                                 const std::vector<HostSubnet>& host_subnets, bool host_has_interface) {
  KILN_TRY(check_network_name(request.name));
  for (const KilnNetwork& other : others)
    if (other.name == request.name) return fail(ErrorKind::kBadInput, "a network named {} exists", request.name);
  KilnNetwork network;
  network.name = request.name;
  KILN_ASSIGN(auto mode, parse_network_mode(request.mode.empty() ? "nat" : request.mode));
  network.mode = mode.first;
  network.host_bridge = mode.second;
  if (!network.kiln_addressed()) {
    if (!request.subnet.empty())
      return fail(ErrorKind::kBadInput, "--subnet {}: a bridge:{} network's addresses are the host bridge's LAN's, "
                  "not kiln's", request.subnet, network.host_bridge);
    return network;
  }
  if (!network.on_host_bridge()) pick_socket(network, request.socket_seed, others);
  else if (host_has_interface)
    return fail(ErrorKind::kBadInput, "the host has an interface named {} already; a network's bridge takes its name "
                "(to join an existing bridge: --mode bridge:{})", request.name, request.name);
  auto clash = [&](const Ipv4Subnet& subnet) -> std::string {
    for (const KilnNetwork& other : others)
      if (other.kiln_addressed() && other.subnet.overlaps(subnet))
        return fmt::format("network {} ({})", other.name, other.subnet.to_string());
    for (const HostSubnet& host : host_subnets)
      if (host.subnet.overlaps(subnet)) return fmt::format("the host's {} ({})", host.interface, host.subnet.to_string());
    return "";
  };
  if (!request.subnet.empty()) {
    auto subnet = Ipv4Subnet::parse(request.subnet);
    if (!subnet) return fail(ErrorKind::kBadInput, "--subnet {}", subnet.error().message);
    if (subnet->prefix > 29 || subnet->prefix < 8)
      return fail(ErrorKind::kBadInput, "--subnet {}: the prefix must be /8 to /29 (a gateway and instances)",
                  request.subnet);
    if (std::string other = clash(*subnet); !other.empty())
      return fail(ErrorKind::kBadInput, "--subnet {} overlaps {}", request.subnet, other);
    network.subnet = *subnet;
    return network;
  }
  for (uint32_t n = 0; n < 256; ++n) {
    Ipv4Subnet candidate{kPickedSubnetBase | (n << 8), 24};
    if (clash(candidate).empty()) {
      network.subnet = candidate;
      return network;
    }
  }
  return fail(ErrorKind::kBadInput, "every 10.77.N.0/24 is taken: give --subnet");
}

Result<uint32_t> allocate_address(const KilnNetwork& network, const std::set<uint32_t>& taken,
                                  std::optional<uint32_t> wanted, const std::string& what) {
  const Ipv4Subnet& subnet = network.subnet;
  if (wanted) {
    if (!subnet.contains(*wanted) || *wanted == subnet.network || *wanted == subnet.broadcast())
      return fail(ErrorKind::kBadInput, "{}: {} is not an instance's address on network {} ({})", what,
                  ipv4_text(*wanted), network.name, subnet.to_string());
    if (*wanted == network.gateway())
      return fail(ErrorKind::kBadInput, "{}: {} is network {}'s gateway", what, ipv4_text(*wanted), network.name);
    if (taken.contains(*wanted))
      return fail(ErrorKind::kBadInput, "{}: {} is taken on network {} by another instance", what,
                  ipv4_text(*wanted), network.name);
    return *wanted;
  }
  for (uint32_t address = subnet.host(2); address < subnet.broadcast(); ++address)
    if (!taken.contains(address)) return address;
  return fail(ErrorKind::kBadInput, "{}: network {} ({}) has no free address", what, network.name,
              subnet.to_string());
}

Result<KilnNetwork> NetworkStore::load(const std::string& name) const {
  KILN_TRY(check_network_name(name));
  fs::path file = dir(name) / "network.json";
  if (!fs::exists(file))
    return fail(ErrorKind::kBadInput, "no network named {}: `kiln network create {}` makes one", name, name);
  KILN_ASSIGN(std::string text, read_file(file));
  auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded()) return fail(ErrorKind::kFailed, "{}: damaged network definition", file.string());
  return network_from(json, file.string());
}

bool NetworkStore::exists(const std::string& name) const {
  std::error_code ec;
  return check_network_name(name).has_value() && fs::exists(dir(name) / "network.json", ec);
}

std::vector<KilnNetwork> NetworkStore::list() const {
  std::vector<KilnNetwork> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec))
    if (auto network = load(entry.path().filename().string())) out.push_back(std::move(*network));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

Result<> NetworkStore::save(const KilnNetwork& network) const {
  std::error_code ec;
  fs::create_directories(dir(network.name), ec);
  if (ec) return fail_errno("cannot create", dir(network.name).string(), ec.value());
  return write_file_atomic(dir(network.name) / "network.json", network_json(network).dump(2) + "\n");
}

Result<> NetworkStore::remove(const std::string& name) const { return remove_tree(dir(name)); }

namespace {
// The process's hold on the lock: its descriptor, and how many Locks share it.
UniqueFd held_lock;
int lock_depth = 0;
}  // namespace

NetworkStore::Lock::~Lock() {
  if (held_ && --lock_depth == 0) held_lock = UniqueFd();  // closing it unlocks
}

Result<NetworkStore::Lock> NetworkStore::lock() const {
  if (lock_depth > 0) {
    ++lock_depth;
    return Lock(true);
  }
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) return fail_errno("cannot create", root_.string(), ec.value());
  KILN_ASSIGN(UniqueFd fd, open_file(root_ / ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  // A POSIX record lock, not flock: a child forked meanwhile (the
  // supervisor a boot starts) does not inherit it, so it ends with this.
  struct flock whole{};
  whole.l_type = F_WRLCK;
  whole.l_whence = SEEK_SET;
  while (::fcntl(fd.get(), F_SETLKW, &whole) != 0)
    if (errno != EINTR) return fail_errno("cannot lock", (root_ / ".lock").string(), errno);
  held_lock = std::move(fd);
  lock_depth = 1;
  return Lock(true);
}

Result<NetworkStore::Lock> NetworkStore::lock_if_any() const {
  std::error_code ec;
  if (!fs::exists(root_, ec)) return Lock(false);
  return lock();
}

}  // namespace kiln
