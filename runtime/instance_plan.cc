#include "runtime/instance_plan.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>

#include "base/architecture.h"
#include "base/files.h"
#include "base/host_memory.h"
#include "base/ipv4_subnet.h"
#include "base/size.h"
#include "base/subprocess.h"
#include "crypto/ssh_host_key.h"
#include "runtime/hypervisor_command.h"
#include "runtime/instance_store.h"
#include "runtime/port_publication.h"
#include "runtime/uml_sandbox.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

class RealHost : public HostFacts {
 public:
  explicit RealHost(const InstanceStore& store) : store_(store), state_root_(store.state_root()) {}
  Result<std::string> program(std::string_view name) const override { return find_program(name); }
  KvmVerdict kvm(const std::string& qemu) const override { return probe_kvm(state_root_, qemu); }
  uint64_t memory_bytes() const override { return host_meminfo_bytes("MemTotal"); }
  bool has_bridge(const std::string& name) const override {
    std::error_code ec;
    return fs::exists("/sys/class/net/" + name + "/bridge", ec);
  }
  bool is_root() const override { return ::geteuid() == 0; }
  // A port published on a kiln network is a DNAT rule, which holds no
  // socket: the records say whose it is.
  Result<> host_port_free(const PortPublication& port) const override {
    for (const std::string& name : store_.names()) {
      auto record = store_.load(name);
      if (!record) continue;
      for (const PortPublication& other : record->spec.network.published)
        if (publications_clash(other, port))
          return fail(ErrorKind::kBadInput, "--publish {}: instance {} publishes {}:{}/{} already",
                      publication_text(port), name, other.host_address, other.host_port, other.protocol);
    }
    return check_host_port_free(port);
  }
  std::optional<KilnNetwork> kiln_network(const std::string& name) const override {
    NetworkStore networks = NetworkStore::under(state_root_);
    if (!networks.exists(name)) return std::nullopt;
    auto network = networks.load(name);
    return network ? std::optional(*network) : std::nullopt;
  }
  std::set<uint32_t> addresses_taken(const std::string& network) const override {
    std::set<uint32_t> taken;
    for (const std::string& name : store_.names()) {
      auto record = store_.load(name);
      if (!record) continue;
      for (const NicSpec& nic : record->spec.network.nics)
        if (nic.network == network && !nic.address.empty())
          if (auto address = parse_ipv4(nic.address.substr(0, nic.address.find('/')))) taken.insert(*address);
    }
    return taken;
  }
  Result<> uml_fence() const override { return landlock_available(); }

 private:
  const InstanceStore& store_;
  fs::path state_root_;
};

// Xen's own limit on a domain's vifs, and plenty for either backend.
constexpr size_t kMaxNics = 8;

// One NIC as --net or a Xen vif asks for it, before kiln makes it.
struct NicRequest {
  std::string what;    // for messages: "--net tap:br0", "domain.cfg:7: vif bridge=xenbr0"
  std::string bridge;  // a host bridge, a kiln network (by_name), or empty: user networking
  std::string mac, ip, vifname;
  bool from_config = false;
  // --net NAME, or a vif's bridge=NAME: the kiln network NAME, else (a
  // vif's only) the host bridge NAME.
  bool by_name = false;
};

Result<std::vector<NicRequest>> requested_nics(const BootRequest& request, const BootSource& source) {
  std::vector<NicRequest> nics;
  if (!request.networks.empty()) {
    for (const std::string& text : request.networks) {
      if (text == "none") {
        if (request.networks.size() > 1)
          return fail(ErrorKind::kBadInput, "--net none: a guest without a network has no other --net");
        return nics;
      }
      NicRequest nic{.what = "--net " + text};
      if (text.starts_with("tap:") && text.size() > 4) {
        nic.bridge = text.substr(4);
      } else if (text != "user") {
        if (!check_network_name(text))
          return fail(ErrorKind::kBadInput, "--net {}: expected user, a network's name, tap:BRIDGE or none", text);
        nic.bridge = text;
        nic.by_name = true;
      }
      nics.push_back(std::move(nic));
    }
    return nics;
  }
  if (source.nics.empty()) return std::vector<NicRequest>{{.what = "user networking"}};
  for (const SourceNic& vif : source.nics)
    nics.push_back({fmt::format("{}: vif{}", vif.where.to_string(), vif.bridge.empty() ? "" : " bridge=" + vif.bridge),
                    vif.bridge, vif.mac, vif.ip, vif.vifname, true, !vif.bridge.empty()});
  return nics;
}

bool first_nic_is_user(const BootRequest& request, const BootSource& source) {
  if (!request.networks.empty()) return request.networks.front() == "user";
  return source.nics.empty() || source.nics.front().bridge.empty();
}

// Why the request's networking needs qemu's user networking, which forwards
// ports, rather than UML's (slirp's SLIP line forwards none); "" if not.
std::string networking_needs_qemu(const BootRequest& request, const BootSource& source) {
  if (request.ssh_port) return "--ssh-port needs qemu's user networking (UML's forwards no ports)";
  if (!request.publish.empty() && first_nic_is_user(request, source))
    return "--publish on user networking needs qemu's (UML's forwards no ports)";
  bool user_after_first = request.networks.empty()
      ? std::any_of(source.nics.begin() + std::min<size_t>(1, source.nics.size()), source.nics.end(),
                    [](const SourceNic& nic) { return nic.bridge.empty(); })
      : std::find(request.networks.begin() + 1, request.networks.end(), "user") != request.networks.end();
  if (user_after_first) return "user networking on a NIC after the first needs qemu's (UML takes it only as eth0)";
  return "";
}

// A static address as a vif's ip= gives it: ADDRESS[/PREFIX], /24 unless
// it says.
Result<std::string> static_address(const NicRequest& nic) {
  std::string address = nic.ip;
  std::string prefix = "24";
  if (size_t slash = address.find('/'); slash != std::string::npos) {
    prefix = address.substr(slash + 1);
    address.resize(slash);
  }
  int bits = -1;
  auto [end, error] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), bits);
  if (!parse_ipv4(address) || error != std::errc() || end != prefix.data() + prefix.size() || bits < 1 || bits > 32)
    return fail(ErrorKind::kBadInput, "{}: ip={} is not an IPv4 address with an optional /PREFIX", nic.what, nic.ip);
  return address + "/" + prefix;
}

// The address a NIC on kiln network `network` gets: a vif's ip= if it is
// free there, else the lowest free one.
Result<std::string> network_address(const NicRequest& wanted, const KilnNetwork& network, const HostFacts& host,
                                    std::map<std::string, std::set<uint32_t>>& taken_by_network) {
  auto [slot, fresh] = taken_by_network.try_emplace(network.name);
  if (fresh) slot->second = host.addresses_taken(network.name);
  std::set<uint32_t>& taken = slot->second;
  std::optional<uint32_t> asked;
  if (!wanted.ip.empty()) {
    KILN_ASSIGN(std::string address, static_address(wanted));
    if (address.substr(address.find('/') + 1) != std::to_string(network.subnet.prefix) &&
        wanted.ip.find('/') != std::string::npos)
      return fail(ErrorKind::kBadInput, "{}: ip={} is not on network {} ({})", wanted.what, wanted.ip, network.name,
                  network.subnet.to_string());
    KILN_ASSIGN(asked, parse_ipv4(address.substr(0, address.find('/'))));
  }
  KILN_ASSIGN(uint32_t address, allocate_address(network, taken, asked, wanted.what));
  taken.insert(address);
  return fmt::format("{}/{}", ipv4_text(address), network.subnet.prefix);
}

// Where a NIC's tap goes: the kiln network's bridge, or the host's.
struct NicPlace {
  std::optional<KilnNetwork> network;
  std::string bridge;
};

Result<NicPlace> nic_place(const NicRequest& wanted, const HostFacts& host) {
  if (wanted.by_name)
    if (auto network = host.kiln_network(wanted.bridge)) return NicPlace{network, network->bridge()};
  if (wanted.by_name && !wanted.from_config)
    return fail(ErrorKind::kBadInput, "{}: no network named {}: `kiln network create {}` makes one (or: user, "
                "tap:BRIDGE, none)", wanted.what, wanted.bridge, wanted.bridge);
  if (!host.has_bridge(wanted.bridge)) {
    if (wanted.from_config)
      return fail(ErrorKind::kBadInput,
                  "{}: no kiln network and no host bridge named {}: `kiln network create {}` makes one; or boot "
                  "it with --net user (user networking, no bridge) or --net none",
                  wanted.what, wanted.bridge, wanted.bridge);
    return fail(ErrorKind::kBadInput, "{}: the host has no bridge named {}", wanted.what, wanted.bridge);
  }
  return NicPlace{std::nullopt, wanted.bridge};
}

// A NIC on a socket network: no host side, so no root, and no gateway or
// DNS server; its neighbours' names reach the guest's hosts file.
Result<NicSpec> plan_socket_nic(const NicRequest& wanted, NicSpec nic, const KilnNetwork& network,
                                const HostFacts& host, std::map<std::string, std::set<uint32_t>>& taken) {
  nic.kind = NetworkKind::kSocket;
  nic.network = network.name;
  nic.socket = network.socket_text();
  KILN_ASSIGN(nic.address, network_address(wanted, network, host, taken));
  return nic;
}

Result<NicSpec> plan_nic(const NicRequest& wanted, size_t index, const InstanceSpec& spec, const HostFacts& host,
                         std::map<std::string, std::set<uint32_t>>& taken) {
  NicSpec nic;
  nic.mac = wanted.mac.empty() ? instance_mac(spec.name, index) : wanted.mac;
  // The low bit of the first octet marks a group address, which no NIC has.
  if (std::stoul(nic.mac.substr(0, 2), nullptr, 16) & 1)
    return fail(ErrorKind::kBadInput, "{}: mac={} is a multicast address; a NIC's must be unicast (e.g. 00:16:3e:...)",
                wanted.what, nic.mac);
  if (wanted.bridge.empty()) return nic;
  KILN_ASSIGN(NicPlace place, nic_place(wanted, host));
  if (place.network && !place.network->on_host_bridge()) return plan_socket_nic(wanted, nic, *place.network, host, taken);
  nic.kind = NetworkKind::kTap;
  nic.bridge = place.bridge;
  if (!host.is_root())
    return fail(ErrorKind::kMissingTool, "{}: a NIC on bridge {} is a tap device, which needs root{}", wanted.what,
                nic.bridge, wanted.from_config ? "; boot it with --net user (user networking, no bridge) or --net none" : "");
  nic.tap = wanted.vifname.empty() ? fmt::format("kiln-{}-{}", spec.id.substr(0, 8), index) : wanted.vifname;
  if (nic.tap.size() > 15 || nic.tap.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
                                std::string::npos)
    return fail(ErrorKind::kBadInput, "{}: vifname={} is not an interface name (at most 15 letters, digits, '.', '-', '_')",
                wanted.what, nic.tap);
  if (place.network) {
    nic.network = place.network->name;
    if (place.network->kiln_addressed()) {
      KILN_ASSIGN(nic.address, network_address(wanted, *place.network, host, taken));
      std::string gateway = ipv4_text(place.network->gateway());
      if (place.network->has_way_out()) nic.gateway = gateway;
      nic.dns = gateway;
      return nic;
    }
  }
  if (!wanted.ip.empty()) {
    KILN_ASSIGN(nic.address, static_address(wanted));
  }
  return nic;
}

Result<std::vector<PortPublication>> published_ports(const BootRequest& request, const NetworkSpec& net,
                                                     const HostFacts& host) {
  std::vector<PortPublication> ports;
  for (const std::string& text : request.publish) {
    KILN_ASSIGN(PortPublication port, parse_publication(text));
    if (net.nics.empty())
      return fail(ErrorKind::kBadInput, "--publish {}: the guest has no network to publish a port of", text);
    const NicSpec& first = net.nics.front();
    if (first.kind == NetworkKind::kSocket)
      return fail(ErrorKind::kBadInput,
                  "--publish {}: ports are published through the first NIC, and this one is on socket network {}, "
                  "which the host has no side of; put --net user first (qemu forwards its ports)",
                  text, first.network);
    if (first.kind != NetworkKind::kUser && (first.network.empty() || first.address.empty()))
      return fail(ErrorKind::kBadInput,
                  "--publish {}: ports are published through the first NIC, and this one's is on host bridge {}, "
                  "whose addresses kiln does not hand out; put --net user or a kiln network first",
                  text, first.bridge);
    for (const PortPublication& other : ports)
      if (publications_clash(other, port))
        return fail(ErrorKind::kBadInput, "--publish {}: host port {}/{} is published twice", text, port.host_port,
                    port.protocol);
    KILN_TRY(host.host_port_free(port));
    ports.push_back(std::move(port));
  }
  return ports;
}

Result<NetworkSpec> network_for(const BootRequest& request, const BootSource& source, const InstanceSpec& spec,
                                const HostFacts& host) {
  KILN_ASSIGN(std::vector<NicRequest> wanted, requested_nics(request, source));
  if (wanted.size() > kMaxNics)
    return fail(ErrorKind::kBadInput, "{} NICs asked for ({}); kiln gives a guest at most {}", wanted.size(),
                request.networks.empty() ? source.description : "--net", kMaxNics);
  NetworkSpec net;
  std::map<std::string, std::set<uint32_t>> taken;  // per kiln network
  for (size_t i = 0; i < wanted.size(); ++i) {
    KILN_ASSIGN(NicSpec nic, plan_nic(wanted[i], i, spec, host, taken));
    net.nics.push_back(std::move(nic));
  }
  KILN_ASSIGN(net.published, published_ports(request, net, host));
  if (request.ssh_port &&
      std::none_of(net.nics.begin(), net.nics.end(), [](const NicSpec& nic) { return nic.kind == NetworkKind::kUser; }))
    return fail(ErrorKind::kBadInput, "--ssh-port forwards through user networking, and this instance has none");
  net.ssh_port = request.ssh_port;
  return net;
}

Result<Personality> personality_for(const BootRequest& request, const BootSource& source, const std::string& name) {
  Personality p;
  if (!request.hostname.empty()) p.hostname = request.hostname;
  else if (!source.own_hostname) p.hostname = name;
  p.machine_id = random_hex(16);
  std::string comment = "root@" + (p.hostname.empty() ? name : p.hostname);
  for (SshKeyType type : {SshKeyType::kEd25519, SshKeyType::kEcdsaP256}) {
    KILN_ASSIGN(SshHostKey key, generate_ssh_host_key(type, comment));
    p.ssh_host_keys.push_back(std::move(key));
  }
  for (const fs::path& file : request.ssh_key_files) {
    auto text = read_file(file);
    if (!text) return fail(ErrorKind::kBadInput, "--ssh-key {}: {}", file.string(), text.error().message);
    size_t start = 0;
    while (start < text->size()) {
      size_t end = text->find('\n', start);
      if (end == std::string::npos) end = text->size();
      std::string line = text->substr(start, end - start);
      if (!line.empty() && !line.starts_with('#')) p.ssh_keys.push_back(line);
      start = end + 1;
    }
  }
  for (const std::string& spec : request.files) {
    auto colon = spec.rfind(':');
    if (colon == std::string::npos || colon == 0 || spec.size() == colon + 1 || spec[colon + 1] != '/')
      return fail(ErrorKind::kBadInput, "--file {}: expected SRC:/ABSOLUTE/DEST", spec);
    fs::path source_file = spec.substr(0, colon);
    if (!fs::is_regular_file(source_file))
      return fail(ErrorKind::kBadInput, "--file {}: {} is not a file", spec, source_file.string());
    p.files.push_back({fs::absolute(source_file), spec.substr(colon + 1)});
  }
  if (!request.firstboot.empty()) {
    if (!fs::is_regular_file(request.firstboot))
      return fail(ErrorKind::kBadInput, "--firstboot {}: no such file", request.firstboot.string());
    p.firstboot = fs::absolute(request.firstboot);
  }
  return p;
}

// Another architecture than the host's: its qemu-system, under TCG (KVM
// runs only the host's own).
Result<BackendChoice> choose_foreign_backend(const Architecture& arch, const HostFacts& host) {
  KILN_TRY(host.program(arch.qemu_system));
  return BackendChoice{BackendKind::kQemu, false,
                       fmt::format("{} with TCG: the image is for {}, and KVM runs only this host's own architecture ({})",
                                   arch.qemu_system, arch.dpkg, host_architecture())};
}

}  // namespace

std::unique_ptr<HostFacts> real_host(const InstanceStore& store) { return std::make_unique<RealHost>(store); }

Result<const Architecture*> boot_architecture(const BootRequest& request, const BootSource& source) {
  const Architecture* arch = find_architecture(source.architecture);
  if (!arch)
    return fail(ErrorKind::kBadInput, "{}: an image for {}, which this kiln does not boot (it boots {})",
                source.description, source.architecture, architecture_choices());
  if ((request.firmware || source.boots_through_firmware) && arch->firmware_code.empty())
    return fail(ErrorKind::kBadInput, "{}: Debian has no UEFI firmware for {} guests that kiln can use: boot without --firmware",
                source.description, arch->dpkg);
  return arch;
}

Result<BackendChoice> choose_backend(const BootRequest& request, const BootSource& source, const HostFacts& host) {
  KILN_ASSIGN(const Architecture* arch, boot_architecture(request, source));
  if (request.backend != "qemu" && request.backend != "auto" && request.backend != "uml")
    return fail(ErrorKind::kBadInput, "unknown backend \"{}\": expected auto, qemu or uml", request.backend);
  if (request.backend == "uml" && !arch->uml)
    return fail(ErrorKind::kBadInput, "{}: a {} image; User-Mode Linux runs amd64 images only: use --backend qemu",
                source.description, arch->dpkg);
  if (arch->dpkg != host_architecture()) return choose_foreign_backend(*arch, host);
  bool initramfs_only = !source.root_needs_initramfs.empty();
  std::string forwards = networking_needs_qemu(request, source);
  bool uml_possible = arch->uml && host.program(kUmlBinary).has_value() && !source.disks.empty() && !request.firmware &&
                      !initramfs_only && forwards.empty() && !source.boots_through_firmware && source.needs_qemu.empty();
  if (request.backend == "uml") {
    if (request.firmware) return fail(ErrorKind::kBadInput, "--firmware needs the qemu backend: UML has no firmware");
    if (source.boots_through_firmware)
      return fail(ErrorKind::kBadInput, "{}: an hvm domain boots its disk through firmware, which needs the qemu "
                  "backend: UML has no firmware", source.description);
    if (!source.needs_qemu.empty())
      return fail(ErrorKind::kBadInput, "{}: {}: use --backend qemu", source.description, source.needs_qemu);
    if (!forwards.empty())
      return fail(ErrorKind::kBadInput, "{}: use --backend qemu; `kiln exec` needs no network", forwards);
    if (initramfs_only)
      return fail(ErrorKind::kBadInput,
                  "{}: {} opens only with the image's own kernel and initramfs, and the uml backend boots "
                  "neither: use --backend qemu",
                  source.description, source.root_needs_initramfs);
    KILN_TRY(host.program(kUmlBinary));
    KILN_TRY(host.uml_fence());
    return BackendChoice{BackendKind::kUml, false, "uml, as asked"};
  }
  KILN_ASSIGN(std::string qemu, host.program(arch->qemu_system));
  KvmVerdict kvm = host.kvm(qemu);
  if (request.backend == "qemu")
    return BackendChoice{BackendKind::kQemu, kvm.works,
                         kvm.works ? "qemu with KVM, as asked" : "qemu with TCG: KVM does not work here (" + kvm.reason + ")"};
  if (kvm.works) return BackendChoice{BackendKind::kQemu, true, "qemu with KVM: " + kvm.reason};
  if (uml_possible) {
    Result<> fence = host.uml_fence();
    if (fence)
      return BackendChoice{BackendKind::kUml, false,
                           "uml: KVM does not work here (" + kvm.reason + "), and UML is faster than qemu's TCG"};
    return BackendChoice{BackendKind::kQemu, false,
                         "qemu with TCG: KVM does not work here (" + kvm.reason +
                             "), and UML would be faster but cannot be fenced from the host's files here (" +
                             fence.error().message + ")"};
  }
  if (initramfs_only)
    return BackendChoice{BackendKind::kQemu, false,
                         "qemu with TCG: KVM does not work here (" + kvm.reason + "), and " +
                             source.root_needs_initramfs + " needs the image's initramfs, which UML does not boot"};
  if (!forwards.empty())
    return BackendChoice{BackendKind::kQemu, false,
                         "qemu with TCG: KVM does not work here (" + kvm.reason + "), and " + forwards};
  if (source.boots_through_firmware)
    return BackendChoice{BackendKind::kQemu, false,
                         "qemu with TCG: KVM does not work here (" + kvm.reason +
                             "), and an hvm domain boots through firmware, which UML has not"};
  if (!source.needs_qemu.empty())
    return BackendChoice{BackendKind::kQemu, false,
                         "qemu with TCG: KVM does not work here (" + kvm.reason + "), and " + source.needs_qemu};
  return BackendChoice{BackendKind::kQemu, false, "qemu with TCG: KVM does not work here (" + kvm.reason + ")"};
}

Result<InstanceSpec> plan_instance(const BootRequest& request, const BootSource& source,
                                   const BackendChoice& backend, const HostFacts& host) {
  InstanceSpec spec;
  spec.name = request.name.empty() ? source.name : request.name;
  KILN_TRY(check_instance_name(spec.name));
  spec.id = random_hex(8);
  spec.backend = backend.kind;
  spec.kvm = backend.kvm;
  spec.firmware = request.firmware || source.boots_through_firmware;
  spec.architecture = source.architecture;
  spec.source = fs::absolute(source.description).string();
  if (source.boots_through_firmware) {
    spec.disks = source.disks;
    spec.disks.front().partitioned = true;
  } else if (request.firmware) {
    if (source.firmware_disk.empty())
      return fail(ErrorKind::kBadInput, "{}: --firmware boots disk.raw, and this image has none", source.description);
    spec.disks.push_back({source.firmware_disk, true, false, false});
  } else {
    if (source.disks.empty())
      return fail(ErrorKind::kBadInput,
                  "{}: no root.img, and no disk.raw with a root partition, to boot (bake with output format "
                  "\"disk\" or \"partitions\")",
                  source.description);
    spec.disks = source.disks;
    if (backend.kind == BackendKind::kQemu) {
      if (!fs::exists(source.kernel))
        return fail(ErrorKind::kBadInput, "{}: kernel {} is missing", source.description, source.kernel.string());
      spec.kernel = source.kernel;
      if (!source.initrd.empty() && fs::exists(source.initrd)) spec.initrd = source.initrd;
    }
  }
  for (const DiskSpec& disk : spec.disks)
    if (!fs::exists(disk.base))
      return fail(ErrorKind::kBadInput, "{}: image {} is missing", source.description, disk.base.string());
  // UUID= needs an initramfs to find the disk; without one the kernel
  // wants a device name.
  bool by_uuid = !source.root_uuid.empty() && !spec.initrd.empty();
  spec.root = by_uuid ? "UUID=" + source.root_uuid : guest_device(spec.backend, 0, source.root_partition);
  if (!source.root_device.empty() && !request.firmware) {
    if (spec.initrd.empty())
      return fail(ErrorKind::kBadInput, "{}: {} needs the image's initrd.img, which is missing", source.description,
                  source.root_needs_initramfs);
    spec.root = source.root_device;
  }
  if (!source.xen_root.empty() && !spec.firmware) {
    KILN_ASSIGN(spec.root, translate_xen_root(source.xen_root, source.xen_devices, spec.backend, source.xen_root_key));
  }
  spec.kernel_args = source.kernel_args;
  spec.memory_mib = request.memory_mib.value_or(source.memory_mib.value_or(512));
  spec.vcpus = request.vcpus.value_or(source.vcpus.value_or(1));
  // Each door (flags, manifest, config) checked its value (base/vm_shape);
  // what is left is whether this host can give it, blaming where it came from.
  uint64_t memory = host.memory_bytes();
  if (memory && spec.memory_mib * kMiB > memory)
    return fail(ErrorKind::kBadInput, "{} MiB of memory ({}) is more than this host has ({})", spec.memory_mib,
                request.memory_mib ? "--memory" : "from " + source.description, format_size(memory));
  KILN_ASSIGN(spec.network, network_for(request, source, spec, host));
  KILN_ASSIGN(spec.personality, personality_for(request, source, spec.name));
  spec.persistent = request.persistent;
  spec.on_poweroff = request.on_poweroff.value_or(source.on_poweroff.value_or(LifecyclePolicy::kDestroy));
  spec.on_reboot = request.on_reboot.value_or(source.on_reboot.value_or(LifecyclePolicy::kRestart));
  spec.on_crash = request.on_crash.value_or(source.on_crash.value_or(LifecyclePolicy::kDestroy));
  return spec;
}

}  // namespace kiln
