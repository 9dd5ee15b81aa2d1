#include "formats/domain/domain_spec.h"

#include <cctype>
#include <charconv>
#include <tuple>

#include "base/vm_shape.h"

namespace kiln {

namespace {

bool is_lower_letter(char c) { return c >= 'a' && c <= 'z'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool has_surrounding_space(std::string_view text) {
  return !text.empty() && (std::isspace(static_cast<unsigned char>(text.front())) ||
                           std::isspace(static_cast<unsigned char>(text.back())));
}

// A vif value is written between commas and read back trimmed.
Result<> check_vif_value(const DomainVif& vif, std::string_view key, std::string_view value) {
  if (value.find(',') != std::string_view::npos || has_surrounding_space(value))
    return fail_at(vif.where, "vif {} '{}' cannot contain ',' or start or end with a space",
                   key, value);
  return {};
}

Result<> check_vif(const DomainVif& vif) {
  if (!vif.mac.empty() && !is_mac_address(vif.mac))
    return fail_at(vif.where, "bad MAC address '{}': expected six hex octets like 00:16:3e:12:34:56",
                   vif.mac);
  KILN_TRY(check_vif_value(vif, "bridge", vif.bridge));
  for (const auto& [key, value] : vif.other_keys) {
    if (key.empty() || key == "mac" || key == "bridge" || has_surrounding_space(key) ||
        key.find_first_of(",=") != std::string::npos)
      return fail_at(vif.where, "bad vif key '{}': expected a name other than mac or bridge, "
                     "without ',', '=' or surrounding spaces", key);
    KILN_TRY(check_vif_value(vif, key, value));
  }
  return {};
}

Result<> check_disks(const std::vector<DomainDisk>& disks) {
  for (size_t i = 0; i < disks.size(); ++i) {
    const DomainDisk& disk = disks[i];
    if ((disk.path.empty() && !disk.cdrom) || has_surrounding_space(disk.path))
      return fail_at(disk.where, "disk {} has no path, or a path starting or ending with a space",
                     disk.frontend);
    if (disk.cdrom && !disk.read_only)
      return fail_at(disk.where, "cdrom {} must be read-only", disk.frontend);
    if (disk.backend == DiskBackend::kPhy && !disk.path.starts_with('/'))
      return fail_at(disk.where, "phy disk path '{}' must be absolute, e.g. /dev/vg0/root",
                     disk.path);
    if (!is_xen_frontend(disk.frontend))
      return fail_at(disk.where, "bad guest device '{}': expected sdX, hdX or xvdX with an "
                     "optional partition number, e.g. xvda1", disk.frontend);
    for (size_t j = 0; j < i; ++j) {
      if (disks[j].frontend == disk.frontend)
        return fail_at(disk.where, "guest device '{}' is used by two disks; give each its own",
                       disk.frontend);
    }
  }
  return {};
}

}  // namespace

std::string_view action_name(DomainAction action) {
  switch (action) {
    case DomainAction::kDestroy: return "destroy";
    case DomainAction::kRestart: return "restart";
    case DomainAction::kPreserve: return "preserve";
    case DomainAction::kRenameRestart: return "rename-restart";
    case DomainAction::kCoredumpDestroy: return "coredump-destroy";
    case DomainAction::kCoredumpRestart: return "coredump-restart";
  }
  return "destroy";
}

std::string_view domain_type_name(DomainType type) {
  switch (type) {
    case DomainType::kPv: return "pv";
    case DomainType::kPvh: return "pvh";
    case DomainType::kHvm: return "hvm";
  }
  return "pv";
}

Location DomainSource::of(std::string_view key) const {
  auto found = keys.find(key);
  return found == keys.end() ? Location{file} : found->second;
}

bool DomainDisk::operator==(const DomainDisk& other) const {
  return std::tie(backend, format, path, frontend, read_only, cdrom) ==
         std::tie(other.backend, other.format, other.path, other.frontend, other.read_only, other.cdrom);
}

bool DomainVif::operator==(const DomainVif& other) const {
  return std::tie(mac, bridge, other_keys) == std::tie(other.mac, other.bridge, other.other_keys);
}

bool DomainSpec::operator==(const DomainSpec& other) const {
  return std::tie(name, type, memory_mib, vcpus, kernel, ramdisk, root, extra, bootloader, bootloader_args,
                  boot, disks, vifs, on_poweroff, on_reboot, on_crash) ==
         std::tie(other.name, other.type, other.memory_mib, other.vcpus, other.kernel, other.ramdisk,
                  other.root, other.extra, other.bootloader, other.bootloader_args, other.boot, other.disks,
                  other.vifs, other.on_poweroff, other.on_reboot, other.on_crash);
}

std::string DomainSpec::kernel_command_line() const {
  std::string line = root.empty() ? "" : "root=" + root;
  if (!line.empty() && !extra.empty()) line += ' ';
  return line + extra;
}

std::pair<std::string, int> split_xen_device(std::string_view device) {
  size_t digits = device.find_first_of("0123456789");
  if (digits == std::string_view::npos) return {std::string(device), 0};
  int partition = 0;
  std::string_view number = device.substr(digits);
  auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), partition);
  if (error != std::errc() || end != number.data() + number.size()) return {std::string(device), 0};
  return {std::string(device.substr(0, digits)), partition};
}

bool is_xen_frontend(std::string_view name) {
  std::string_view rest = name;
  if (rest.starts_with("xvd")) {
    rest.remove_prefix(3);
  } else if (rest.starts_with("sd") || rest.starts_with("hd")) {
    rest.remove_prefix(2);
  } else {
    return false;
  }
  size_t letters = 0;
  while (letters < rest.size() && is_lower_letter(rest[letters])) ++letters;
  if (letters == 0 || letters > 4) return false;
  rest.remove_prefix(letters);
  if (rest.empty()) return true;
  if (rest.front() == '0' || rest.size() > 3) return false;
  for (char c : rest) {
    if (!is_digit(c)) return false;
  }
  return true;
}

bool is_mac_address(std::string_view text) {
  if (text.size() != 17) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    bool separator = i % 3 == 2;
    if (separator ? text[i] != ':' : !std::isxdigit(static_cast<unsigned char>(text[i])))
      return false;
  }
  return true;
}

Result<> check_domain(const DomainSpec& spec) {
  if (std::string problem = vm_vcpus_problem(spec.vcpus); !problem.empty())
    return fail_at(spec.source.of("vcpus"), "vcpus: {}", problem);
  // 0 is "not given": the toolstack's default applies.
  if (spec.memory_mib != 0) {
    if (std::string problem = vm_memory_mib_problem(spec.memory_mib); !problem.empty())
      return fail_at(spec.source.of("memory"), "memory: {}", problem);
  }
  KILN_TRY(check_disks(spec.disks));
  for (const DomainVif& vif : spec.vifs) KILN_TRY(check_vif(vif));
  for (auto [key, action] : {std::pair{"on_poweroff", spec.on_poweroff},
                             std::pair{"on_reboot", spec.on_reboot}}) {
    if (action == DomainAction::kCoredumpDestroy || action == DomainAction::kCoredumpRestart)
      return fail_at(spec.source.of(key), "{} cannot be '{}': coredump actions apply to "
                     "on_crash only", key, action_name(action));
  }
  return {};
}

}  // namespace kiln
