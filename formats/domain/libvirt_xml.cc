#include "formats/domain/libvirt_xml.h"

#include <cstdint>
#include <sstream>
#include <string_view>

#include <fmt/format.h>
#include <pugixml.hpp>

namespace kiln {

namespace {

// True when XML 1.0 can carry `text` as is: valid UTF-8 without control
// characters, surrogates or the non-characters U+FFFE and U+FFFF.
bool is_xml_text(std::string_view text) {
  static constexpr uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  size_t i = 0;
  while (i < text.size()) {
    auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      if (lead < 0x20 || lead == 0x7f) return false;
      ++i;
      continue;
    }
    size_t length = (lead & 0xe0) == 0xc0 ? 2 : (lead & 0xf0) == 0xe0 ? 3 : (lead & 0xf8) == 0xf0 ? 4 : 0;
    if (length == 0 || i + length > text.size()) return false;
    uint32_t code = lead & (0x7f >> length);
    for (size_t k = 1; k < length; ++k) {
      auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3f);
    }
    if (code < kSmallest[length] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff) ||
        code == 0xfffe || code == 0xffff)
      return false;
    i += length;
  }
  return true;
}

Result<> check_text(std::string_view what, std::string_view text, const Location& where) {
  if (is_xml_text(text)) return {};
  return fail_at(where, "{} {:?} holds a control character or invalid UTF-8, which libvirt XML "
                 "cannot carry", what, text);
}

Result<> check_libvirt_domain(const DomainSpec& spec, const LibvirtOptions& options) {
  KILN_TRY(check_domain(spec));
  const DomainSource& source = spec.source;
  if (spec.name.empty() || spec.name.find('/') != std::string::npos)
    return fail_at(source.of("name"), "a libvirt domain needs a name without '/'; set name = \"...\"");
  if (spec.memory_mib == 0)
    return fail_at(source.of("memory"), "a libvirt domain needs its memory size; set memory = MB");
  KILN_TRY(check_text("name", spec.name, source.of("name")));
  KILN_TRY(check_text("kernel", spec.kernel, source.of("kernel")));
  KILN_TRY(check_text("ramdisk", spec.ramdisk, source.of("ramdisk")));
  KILN_TRY(check_text("root", spec.root, source.of("root")));
  KILN_TRY(check_text("extra", spec.extra, source.of("extra")));
  KILN_TRY(check_text("UEFI loader", options.uefi_loader, {}));
  KILN_TRY(check_text("agent channel", options.agent_channel, {}));
  KILN_TRY(check_text("architecture", options.arch, {}));
  KILN_TRY(check_text("machine", options.machine, {}));
  KILN_TRY(check_text("CPU model", options.tcg_cpu, {}));
  for (const std::string& text : options.oem_strings) KILN_TRY(check_text("OEM string", text, {}));
  for (const DomainDisk& disk : spec.disks) KILN_TRY(check_text("disk path", disk.path, disk.where));
  for (const DomainVif& vif : spec.vifs) KILN_TRY(check_text("bridge", vif.bridge, vif.where));
  for (const std::string& network : options.vif_networks) KILN_TRY(check_text("network", network, {}));
  return {};
}

// vda, vdb, ... vdz, vdaa: the names Linux gives virtio disks.
std::string virtio_disk_name(size_t index) {
  std::string letters;
  for (size_t n = index + 1; n > 0; n = (n - 1) / 26)
    letters.insert(letters.begin(), static_cast<char>('a' + (n - 1) % 26));
  return "vd" + letters;
}

void add_text(pugi::xml_node parent, const char* name, std::string_view text) {
  parent.append_child(name).text().set(std::string(text).c_str());
}

// kiln's images boot an unsigned systemd-boot: left to choose, libvirt
// picks the firmware with Secure Boot on and Microsoft's keys enrolled
// (Debian 12's 40-edk2-x86_64-secure-enrolled.json comes first), which
// refuses it ("Access Denied"). So firmware without either is asked for.
void add_os(pugi::xml_node domain, const DomainSpec& spec, const LibvirtOptions& options) {
  pugi::xml_node os = domain.append_child("os");
  if (options.uefi && options.uefi_loader.empty()) os.append_attribute("firmware") = "efi";
  pugi::xml_node type = os.append_child("type");
  type.append_attribute("arch") = options.arch.c_str();
  type.append_attribute("machine") = options.machine.c_str();
  type.text().set("hvm");
  if (options.uefi && options.uefi_loader.empty()) {
    pugi::xml_node firmware = os.append_child("firmware");
    for (const char* feature : {"enrolled-keys", "secure-boot"}) {
      pugi::xml_node node = firmware.append_child("feature");
      node.append_attribute("enabled") = "no";
      node.append_attribute("name") = feature;
    }
  }
  if (options.uefi && !options.uefi_loader.empty()) {
    pugi::xml_node loader = os.append_child("loader");
    loader.append_attribute("readonly") = "yes";
    loader.append_attribute("secure") = "no";
    loader.append_attribute("type") = "pflash";
    loader.text().set(options.uefi_loader.c_str());
  }
  if (!options.oem_strings.empty()) os.append_child("smbios").append_attribute("mode") = "sysinfo";
  if (spec.kernel.empty()) {
    os.append_child("boot").append_attribute("dev") = "hd";
    return;
  }
  add_text(os, "kernel", spec.kernel);
  if (!spec.ramdisk.empty()) add_text(os, "initrd", spec.ramdisk);
  if (std::string command_line = spec.kernel_command_line(); !command_line.empty())
    add_text(os, "cmdline", command_line);
}

void add_disk(pugi::xml_node devices, const DomainDisk& disk, size_t index) {
  bool block = disk.backend == DiskBackend::kPhy;
  pugi::xml_node node = devices.append_child("disk");
  node.append_attribute("type") = block ? "block" : "file";
  node.append_attribute("device") = "disk";
  pugi::xml_node driver = node.append_child("driver");
  driver.append_attribute("name") = "qemu";
  driver.append_attribute("type") = disk.format == DiskFormat::kQcow2 ? "qcow2" : "raw";
  node.append_child("source").append_attribute(block ? "dev" : "file") = disk.path.c_str();
  pugi::xml_node target = node.append_child("target");
  target.append_attribute("dev") = virtio_disk_name(index).c_str();
  target.append_attribute("bus") = "virtio";
  if (disk.read_only) node.append_child("readonly");
}

// `network`: the libvirt network the vif joins, if any.
void add_interface(pugi::xml_node devices, const DomainVif& vif, const std::string& network) {
  bool bridged = !vif.bridge.empty();
  pugi::xml_node node = devices.append_child("interface");
  node.append_attribute("type") = !network.empty() ? "network" : bridged ? "bridge" : "user";
  if (!vif.mac.empty()) node.append_child("mac").append_attribute("address") = vif.mac.c_str();
  if (!network.empty()) node.append_child("source").append_attribute("network") = network.c_str();
  else if (bridged) node.append_child("source").append_attribute("bridge") = vif.bridge.c_str();
  node.append_child("model").append_attribute("type") = "virtio";
}

void add_serial_console(pugi::xml_node devices) {
  pugi::xml_node serial = devices.append_child("serial");
  serial.append_attribute("type") = "pty";
  serial.append_child("target").append_attribute("port") = "0";
  pugi::xml_node console = devices.append_child("console");
  console.append_attribute("type") = "pty";
  pugi::xml_node target = console.append_child("target");
  target.append_attribute("type") = "serial";
  target.append_attribute("port") = "0";
}

void add_agent_channel(pugi::xml_node devices, const std::string& name) {
  pugi::xml_node channel = devices.append_child("channel");
  channel.append_attribute("type") = "unix";
  pugi::xml_node target = channel.append_child("target");
  target.append_attribute("type") = "virtio";
  target.append_attribute("name") = name.c_str();
}

}  // namespace

std::string kiln_metadata_xml(const KilnInstanceMetadata& metadata, bool bare) {
  pugi::xml_document document;
  pugi::xml_node element =
      document.append_child(bare ? "instance" : fmt::format("{}:instance", kKilnMetadataPrefix).c_str());
  if (!bare) element.append_attribute(fmt::format("xmlns:{}", kKilnMetadataPrefix).c_str()) = kKilnMetadataNamespace;
  element.append_attribute("id") = metadata.id.c_str();
  element.append_attribute("source") = metadata.source.c_str();
  if (metadata.ready_seconds) element.append_attribute("ready-seconds") = fmt::format("{:.2f}", *metadata.ready_seconds).c_str();
  if (!metadata.exec.empty()) element.append_attribute("exec") = metadata.exec.c_str();
  std::ostringstream out;
  document.save(out, "", pugi::format_raw | pugi::format_no_declaration | pugi::format_attribute_single_quote);
  return out.str();
}

std::optional<KilnInstanceMetadata> parse_kiln_metadata(const std::string& xml) {
  pugi::xml_document document;
  if (!document.load_string(xml.c_str())) return std::nullopt;
  pugi::xml_node element = document.first_child();
  std::string name = element.name();
  // libvirt gives the element back under a prefix of its own choosing.
  std::string local = name.substr(name.find(':') == std::string::npos ? 0 : name.find(':') + 1);
  if (local != "instance" || element.attribute("id").empty()) return std::nullopt;
  KilnInstanceMetadata metadata{element.attribute("id").value(), element.attribute("source").value(), std::nullopt,
                                element.attribute("exec").value()};
  if (pugi::xml_attribute ready = element.attribute("ready-seconds")) metadata.ready_seconds = ready.as_double();
  return metadata;
}

Result<std::string> write_libvirt_xml(const DomainSpec& spec, const LibvirtOptions& options) {
  KILN_TRY(check_libvirt_domain(spec, options));
  pugi::xml_document document;
  pugi::xml_node domain = document.append_child("domain");
  domain.append_attribute("type") = options.type == LibvirtDomainType::kKvm ? "kvm" : "qemu";
  add_text(domain, "name", spec.name);
  if (options.instance) {
    pugi::xml_document element;
    element.load_string(kiln_metadata_xml(*options.instance).c_str());
    domain.append_child("metadata").append_copy(element.first_child());
  }
  pugi::xml_node memory = domain.append_child("memory");
  memory.append_attribute("unit") = "MiB";
  memory.text().set(static_cast<unsigned long long>(spec.memory_mib));
  domain.append_child("vcpu").text().set(spec.vcpus);
  if (!options.oem_strings.empty()) {
    pugi::xml_node sysinfo = domain.append_child("sysinfo");
    sysinfo.append_attribute("type") = "smbios";
    pugi::xml_node strings = sysinfo.append_child("oemStrings");
    for (const std::string& text : options.oem_strings) add_text(strings, "entry", text);
  }
  add_os(domain, spec, options);
  // ACPI lets `virsh shutdown` power the guest off cleanly.
  pugi::xml_node features = domain.append_child("features");
  features.append_child("acpi");
  features.append_child("apic");
  // Under KVM, the host's CPU as a named model plus features: fast, and
  // migratable between hosts alike (host-passthrough is not). libvirt's
  // default, qemu64, hangs early in Linux on hosts whose KVM is broken in
  // ways a model of the host's CPU shows at once (runtime/libvirt_kvm_probe
  // runs the same).
  if (options.type == LibvirtDomainType::kKvm) {
    domain.append_child("cpu").append_attribute("mode") = "host-model";
  } else if (!options.tcg_cpu.empty()) {
    pugi::xml_node cpu = domain.append_child("cpu");
    cpu.append_attribute("mode") = "custom";
    cpu.append_attribute("match") = "exact";
    pugi::xml_node model = cpu.append_child("model");
    model.append_attribute("fallback") = "forbid";
    model.text().set(options.tcg_cpu.c_str());
  }
  add_text(domain, "on_poweroff", action_name(spec.on_poweroff));
  add_text(domain, "on_reboot", action_name(spec.on_reboot));
  add_text(domain, "on_crash", action_name(spec.on_crash));
  pugi::xml_node devices = domain.append_child("devices");
  for (size_t i = 0; i < spec.disks.size(); ++i) add_disk(devices, spec.disks[i], i);
  for (size_t i = 0; i < spec.vifs.size(); ++i)
    add_interface(devices, spec.vifs[i], i < options.vif_networks.size() ? options.vif_networks[i] : "");
  add_serial_console(devices);
  if (!options.agent_channel.empty()) add_agent_channel(devices, options.agent_channel);

  std::ostringstream out;
  document.save(out, "  ", pugi::format_indent | pugi::format_no_declaration |
                               pugi::format_attribute_single_quote);
  return out.str();
}

}  // namespace kiln
