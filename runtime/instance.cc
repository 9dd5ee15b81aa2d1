#include "runtime/instance.h"

#include <openssl/rand.h>

#include <array>

#include "base/hash.h"
#include "formats/image/guest_protocol.h"

namespace kiln {
namespace {

template <class Enum, size_t N>
std::string_view name_of(Enum value, const std::array<std::pair<Enum, std::string_view>, N>& names) {
  for (const auto& [candidate, name] : names)
    if (candidate == value) return name;
  return "?";
}

template <class Enum, size_t N>
std::optional<Enum> value_of(std::string_view text, const std::array<std::pair<Enum, std::string_view>, N>& names) {
  for (const auto& [candidate, name] : names)
    if (name == text) return candidate;
  return std::nullopt;
}

constexpr std::array<std::pair<BackendKind, std::string_view>, 2> kBackends = {
    {{BackendKind::kQemu, "qemu"}, {BackendKind::kUml, "uml"}}};
constexpr std::array<std::pair<LifecyclePolicy, std::string_view>, 3> kPolicies = {
    {{LifecyclePolicy::kDestroy, "destroy"},
     {LifecyclePolicy::kRestart, "restart"},
     {LifecyclePolicy::kPreserve, "preserve"}}};
constexpr std::array<std::pair<InstanceState, std::string_view>, 7> kStates = {
    {{InstanceState::kStarting, "starting"},
     {InstanceState::kRunning, "running"},
     {InstanceState::kPaused, "paused"},
     {InstanceState::kShuttingDown, "shutdown"},
     {InstanceState::kCrashed, "crashed"},
     {InstanceState::kStopped, "stopped"},
     {InstanceState::kSaved, "saved"}}};
constexpr std::array<std::pair<NetworkKind, std::string_view>, 3> kNetworks = {
    {{NetworkKind::kUser, "user"}, {NetworkKind::kTap, "tap"}, {NetworkKind::kSocket, "socket"}}};


nlohmann::json spec_json(const InstanceSpec& spec) {
  nlohmann::json disks = nlohmann::json::array();
  for (const DiskSpec& disk : spec.disks)
    disks.push_back({{"base", disk.base.string()},
                     {"partitioned", disk.partitioned},
                     {"read_only", disk.read_only},
                     {"qcow2", disk.qcow2}});
  nlohmann::json files = nlohmann::json::array();
  for (const PersonalityFile& file : spec.personality.files)
    files.push_back({{"source", file.source.string()}, {"destination", file.destination}});
  nlohmann::json host_keys = nlohmann::json::array();
  for (const SshHostKey& key : spec.personality.ssh_host_keys) host_keys.push_back(public_json(key));
  return {
      {"name", spec.name},
      {"id", spec.id},
      {"backend", backend_name(spec.backend)},
      {"kvm", spec.kvm},
      {"firmware", spec.firmware},
      {"architecture", spec.architecture},
      {"kernel", spec.kernel.string()},
      {"initrd", spec.initrd.string()},
      {"root", spec.root},
      {"kernel_args", spec.kernel_args},
      {"disks", disks},
      {"memory_mib", spec.memory_mib},
      {"vcpus", spec.vcpus},
      {"network", network_json(spec.network)},
      {"personality",
       {{"hostname", spec.personality.hostname},
        {"machine_id", spec.personality.machine_id},
        {"ssh_keys", spec.personality.ssh_keys},
        {"files", files},
        {"firstboot", spec.personality.firstboot.string()},
        {"ssh_host_keys", host_keys}}},
      {"persistent", spec.persistent},
      {"on_poweroff", policy_name(spec.on_poweroff)},
      {"on_reboot", policy_name(spec.on_reboot)},
      {"on_crash", policy_name(spec.on_crash)},
      {"source", spec.source},
      {"generation_id", spec.generation_id},
      {"nic_slots", spec.nic_slots},
  };
}

template <class Enum, size_t N>
Enum enum_field(const nlohmann::json& json, const char* key,
                const std::array<std::pair<Enum, std::string_view>, N>& names) {
  auto value = value_of(json.at(key).get<std::string>(), names);
  if (!value) throw std::invalid_argument(std::string("bad value for ") + key);
  return *value;
}

// An instance's NICs as its record holds them. A record written before
// instances had several NICs (one kind, bridge and MAC) still reads, so
// that an instance booted by an older kiln can be listed and destroyed.
NetworkSpec network_from(const nlohmann::json& network, const nlohmann::json& personality, const std::string& id) {
  NetworkSpec spec;
  spec.ssh_port = network.at("ssh_port");
  if (network.contains("kind")) {
    std::string kind = network.at("kind");
    if (kind == "user") spec.nics.push_back({.mac = personality.at("mac")});
    if (kind == "tap")
      spec.nics.push_back({.kind = NetworkKind::kTap, .bridge = network.at("bridge"), .tap = "kiln-" + id.substr(0, 10),
                           .mac = personality.at("mac")});
    return spec;
  }
  for (const auto& nic : network.at("nics"))
    spec.nics.push_back({enum_field(nic, "kind", kNetworks), nic.at("network"), nic.at("bridge"), nic.at("tap"),
                         nic.at("mac"), nic.at("address"), nic.at("gateway"), nic.at("dns"), nic.value("socket", "")});
  for (const auto& port : network.at("published"))
    spec.published.push_back({port.at("host_address"), port.at("host_port"), port.at("guest_port"), port.at("protocol")});
  return spec;
}

InstanceSpec spec_from(const nlohmann::json& json) {
  InstanceSpec spec;
  spec.name = json.at("name");
  spec.id = json.at("id");
  spec.backend = enum_field(json, "backend", kBackends);
  spec.kvm = json.at("kvm");
  spec.firmware = json.at("firmware");
  spec.architecture = json.value("architecture", "amd64");
  spec.kernel = json.at("kernel").get<std::string>();
  spec.initrd = json.at("initrd").get<std::string>();
  spec.root = json.at("root");
  spec.kernel_args = json.at("kernel_args");
  for (const auto& disk : json.at("disks"))
    spec.disks.push_back(
        {disk.at("base").get<std::string>(), disk.at("partitioned"), disk.at("read_only"), disk.value("qcow2", false)});
  spec.memory_mib = json.at("memory_mib");
  spec.vcpus = json.at("vcpus");
  spec.network = network_from(json.at("network"), json.at("personality"), spec.id);
  const auto& personality = json.at("personality");
  spec.personality.hostname = personality.at("hostname");
  spec.personality.machine_id = personality.at("machine_id");
  spec.personality.ssh_keys = personality.at("ssh_keys").get<std::vector<std::string>>();
  for (const auto& file : personality.at("files"))
    spec.personality.files.push_back({file.at("source").get<std::string>(), file.at("destination")});
  spec.personality.firstboot = personality.at("firstboot").get<std::string>();
  for (const auto& key : personality.value("ssh_host_keys", nlohmann::json::array()))
    spec.personality.ssh_host_keys.push_back({key.at("file"), "", key.at("public_key"), key.at("fingerprint")});
  spec.persistent = json.at("persistent");
  spec.on_poweroff = enum_field(json, "on_poweroff", kPolicies);
  spec.on_reboot = enum_field(json, "on_reboot", kPolicies);
  spec.on_crash = enum_field(json, "on_crash", kPolicies);
  spec.source = json.at("source");
  spec.generation_id = json.value("generation_id", "");
  spec.nic_slots = json.value("nic_slots", 0);
  return spec;
}

}  // namespace

nlohmann::json network_json(const NetworkSpec& network) {
  nlohmann::json nics = nlohmann::json::array();
  for (const NicSpec& nic : network.nics)
    nics.push_back({{"kind", name_of(nic.kind, kNetworks)},
                    {"network", nic.network},
                    {"bridge", nic.bridge},
                    {"tap", nic.tap},
                    {"mac", nic.mac},
                    {"address", nic.address},
                    {"gateway", nic.gateway},
                    {"dns", nic.dns},
                    {"socket", nic.socket}});
  nlohmann::json published = nlohmann::json::array();
  for (const PortPublication& port : network.published)
    published.push_back({{"host_address", port.host_address},
                         {"host_port", port.host_port},
                         {"guest_port", port.guest_port},
                         {"protocol", port.protocol}});
  return {{"nics", nics}, {"published", published}, {"ssh_port", network.ssh_port}};
}

std::string_view backend_name(BackendKind kind) { return name_of(kind, kBackends); }
std::string_view policy_name(LifecyclePolicy policy) { return name_of(policy, kPolicies); }
std::string_view state_name(InstanceState state) { return name_of(state, kStates); }

Result<LifecyclePolicy> parse_policy(std::string_view text) {
  // Xen's coredump-* and rename-restart are their plain counterparts here.
  if (text == "rename-restart" || text == "coredump-restart") return LifecyclePolicy::kRestart;
  if (text == "coredump-destroy") return LifecyclePolicy::kDestroy;
  if (auto policy = value_of(text, kPolicies)) return *policy;
  return fail(ErrorKind::kBadInput, "unknown lifecycle action \"{}\": expected destroy, restart or preserve", text);
}

char state_letter(InstanceState state) {
  switch (state) {
    case InstanceState::kStarting:
    case InstanceState::kRunning: return 'r';
    case InstanceState::kPaused: return 'p';
    case InstanceState::kShuttingDown: return 's';
    case InstanceState::kCrashed: return 'c';
    case InstanceState::kStopped:
    case InstanceState::kSaved: return '-';
  }
  return '?';
}

nlohmann::json to_json(const InstanceRecord& record) {
  nlohmann::json json = {{"spec", spec_json(record.spec)},
                         {"state", state_name(record.state)},
                         {"supervisor_pid", record.supervisor_pid},
                         {"hypervisor_pid", record.hypervisor_pid},
                         {"created_at", record.created_at},
                         {"started_at_ms", record.started_at_ms},
                         {"restarts", record.restarts},
                         {"crashes", record.crashes},
                         {"last_event", record.last_event},
                         {"saved_to", record.saved_to},
                         {"save_id", record.save_id},
                         {"waiting_for", record.waiting_for},
                         {"guest", guest_json(record)}};
  if (record.ready_seconds) json["ready_seconds"] = *record.ready_seconds;
  if (!record.process_mark.empty()) json["process_mark"] = record.process_mark;
  return json;
}

Result<InstanceRecord> record_from_json(const nlohmann::json& json, const std::string& origin) {
  try {
    InstanceRecord record;
    record.spec = spec_from(json.at("spec"));
    record.state = enum_field(json, "state", kStates);
    record.supervisor_pid = json.at("supervisor_pid");
    record.hypervisor_pid = json.at("hypervisor_pid");
    record.created_at = json.at("created_at");
    record.started_at_ms = json.at("started_at_ms");
    record.restarts = json.at("restarts");
    record.crashes = json.value("crashes", 0);
    record.last_event = json.at("last_event");
    record.waiting_for = json.value("waiting_for", "");
    record.saved_to = json.value("saved_to", "");
    record.save_id = json.value("save_id", "");
    record.process_mark = json.value("process_mark", "");
    if (json.contains("ready_seconds")) record.ready_seconds = json.at("ready_seconds").get<double>();
    const auto& guest = json.at("guest");
    record.guest_hostname = guest.at("hostname");
    record.guest_machine_id = guest.at("machine_id");
    record.guest_mac = guest.at("mac");
    record.guest_ssh_host_keys = guest.value("ssh_host_keys", "");
    record.guest_exec = guest.value("exec", "");
    return record;
  } catch (const std::exception& error) {
    return fail(ErrorKind::kBadInput, "{}: not an instance record kiln can read: {}", origin, error.what());
  }
}

nlohmann::json guest_json(const InstanceRecord& record) {
  return {{"hostname", record.guest_hostname},
          {"machine_id", record.guest_machine_id},
          {"mac", record.guest_mac},
          {"ssh_host_keys", record.guest_ssh_host_keys},
          {"exec", record.guest_exec}};
}

nlohmann::json public_json(const SshHostKey& key) {
  return {{"file", key.file_name}, {"public_key", key.public_key}, {"fingerprint", key.fingerprint}};
}

std::vector<SshHostKey> InstanceRecord::confirmed_ssh_host_keys() const {
  if (guest_ssh_host_keys != kHostKeysFromKiln) return {};
  return spec.personality.ssh_host_keys;
}

std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes));
  return to_hex(raw);
}

std::string instance_mac(const std::string& instance_name, size_t nic_index) {
  std::string hex = Hasher().field("kiln nic").field(instance_name).field(std::to_string(nic_index)).hex_digest();
  // The top bit of the fourth octet stays clear, as Xen's own allocator does.
  unsigned fourth = std::stoul(hex.substr(0, 2), nullptr, 16) & 0x7f;
  return fmt::format("00:16:3e:{:02x}:{}:{}", fourth, hex.substr(2, 2), hex.substr(4, 2));
}

}  // namespace kiln
