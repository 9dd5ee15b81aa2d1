#include "runtime/boot_source.h"

#include <algorithm>
#include <set>

#include "base/files.h"
#include "formats/image/image_manifest.h"
#include "base/hash.h"
#include "formats/domain/pygrub.h"
#include "formats/domain/xen_config.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// The recipe's kernel arguments without what kiln sets per boot.
std::string extra_kernel_args(std::string_view cmdline) {
  std::string out;
  size_t start = 0;
  while (start < cmdline.size()) {
    size_t end = cmdline.find(' ', start);
    if (end == std::string_view::npos) end = cmdline.size();
    std::string_view word = cmdline.substr(start, end - start);
    start = end + 1;
    if (word.empty() || word == "ro" || word == "rw" || word.starts_with("root=") || word.starts_with("console="))
      continue;
    if (!out.empty()) out += ' ';
    out += word;
  }
  return out;
}

Result<BootSource> from_image_directory(const fs::path& dir) {
  auto text = read_file(dir / "manifest.json");
  if (!text)
    return fail(ErrorKind::kBadInput, "{}: not a baked image (no manifest.json); give an image directory from "
                                      "`kiln bake` or a Xen domain config file",
                dir.string());
  KILN_ASSIGN(ImageManifest image, read_image_manifest(*text, (dir / "manifest.json").string()));
  BootSource source;
  source.name = image.name;
  source.architecture = image.architecture;
  source.description = dir.string();
  source.kernel = dir / "vmlinuz";
  source.initrd = dir / "initrd.img";
  if (fs::exists(dir / "root.img")) source.disks.push_back({dir / "root.img", false, false, false});
  if (fs::exists(dir / "disk.raw")) source.firmware_disk = dir / "disk.raw";
  source.root_uuid = image.root_filesystem_uuid;
  source.kernel_args = extra_kernel_args(image.kernel_cmdline);
  // The recipe's [output] memory and vcpus (images baked before kiln wrote
  // them have neither, and get kiln boot's defaults).
  if (image.memory_mib > 0) source.memory_mib = image.memory_mib;
  if (image.vcpus > 0) source.vcpus = image.vcpus;
  // Without root.img (the recipe did not ask for "partitions"), the root
  // partition of disk.raw, which a kernel mounts as it would root.img.
  if (source.disks.empty() && !source.firmware_disk.empty() && image.root_partition()) {
    source.disks.push_back({source.firmware_disk, false, false, false});
    source.root_partition = *image.root_partition();
  }
  if (image.encryption) {
    source.root_encryption = image.encryption->type.empty() ? "encrypted" : image.encryption->type;
    source.root_needs_initramfs = "an encrypted root (" + source.root_encryption + ")";
  }
  if (image.layout == "lvm") {
    // root.img is the root volume alone; the whole disk has the volume group.
    source.root_needs_initramfs = source.root_encryption.empty() ? "a root on LVM" : "a root on LVM on LUKS";
    source.disks = {{dir / "disk.raw", false, false, false}};
    source.root_device = image.root_device;
  }
  return source;
}

fs::path resolve(const fs::path& base, const std::string& path) {
  fs::path p(path);
  return p.is_relative() ? base / p : p;
}

// A Xen kernel command line: root= comes out (the last one, as the kernel
// reads it) for plan_instance to translate; every other word stays, in
// order. Xen's paravirtual console is kiln's serial console.
struct XenCommandLine {
  std::string root;
  std::string rest;
};

XenCommandLine split_xen_command_line(std::string_view line) {
  XenCommandLine out;
  size_t start = 0;
  while (start < line.size()) {
    size_t end = line.find_first_of(" \t", start);
    if (end == std::string_view::npos) end = line.size();
    std::string word(line.substr(start, end - start));
    start = end + 1;
    if (word.empty()) continue;
    if (word.starts_with("root=")) {
      out.root = word.substr(5);
      continue;
    }
    if (word == "console=hvc0" || word == "console=xvc0") word = "console=ttyS0";
    out.rest += (out.rest.empty() ? "" : " ") + word;
  }
  return out;
}

// The disks of a Xen config, the one root= names first (so that disks[0]
// holds the root, as for a baked image), each with its Xen device.
Result<> add_xen_disks(const DomainSpec& domain, const fs::path& base, const BootSourceOptions& options,
                       BootSource& source) {
  std::vector<const DomainDisk*> ordered;
  for (const DomainDisk& disk : domain.disks) {
    if (disk.cdrom && disk.path.empty()) {
      options.warn(fmt::format("{}: {} is an empty cdrom drive; left out", disk.where.to_string(), disk.frontend));
      continue;
    }
    ordered.push_back(&disk);
  }
  if (ordered.empty()) return fail_at(domain.source.of("disk"), "no disk = [...] to boot from");
  std::string root_device = source.xen_root.starts_with("/dev/") ? source.xen_root.substr(5) : "";
  if (!source.boots_through_firmware && !root_device.empty()) {
    auto root_disk = std::ranges::find_if(ordered, [&](const DomainDisk* d) {
      return d->frontend == root_device || d->frontend == split_xen_device(root_device).first;
    });
    if (root_disk != ordered.end()) std::rotate(ordered.begin(), root_disk, root_disk + 1);
  }
  for (const DomainDisk* disk : ordered) {
    fs::path path = resolve(base, disk->path);
    if (!fs::exists(path)) return fail_at(disk->where, "disk {}: no such file or device", path.string());
    source.disks.push_back({path, false, disk->read_only, disk->format == DiskFormat::kQcow2});
    source.xen_devices.push_back(disk->frontend);
    if (disk->cdrom && source.needs_qemu.empty())
      source.needs_qemu = fmt::format("{} ({}) is a cdrom, and UML has no CD-ROM drive", disk->frontend,
                                      disk->where.to_string());
    if (disk->format == DiskFormat::kQcow2 && source.needs_qemu.empty())
      source.needs_qemu = fmt::format("{} ({}) is a qcow2 image, which UML cannot read", disk->frontend,
                                      disk->where.to_string());
  }
  if (source.boots_through_firmware) source.firmware_disk = source.disks.front().base;
  return {};
}

// bootloader = "pygrub": the kernel, initrd and command line come from the
// first disk's boot loader configuration, as pygrub would pick them.
Result<std::string> run_boot_loader(const DomainSpec& domain, const fs::path& config, const BootSourceOptions& options,
                                    BootSource& source) {
  const Location where = domain.source.of("bootloader");
  if (fs::path(domain.bootloader).filename() != "pygrub")
    options.warn(fmt::format("{}: bootloader '{}': kiln finds the kernel in the guest's disk as pygrub does",
                             where.to_string(), domain.bootloader));
  if (domain.disks.empty() || domain.disks.front().path.empty())
    return fail_at(where, "bootloader: no disk = [...] to find the kernel in");
  const DomainDisk& disk = domain.disks.front();
  if (disk.format != DiskFormat::kRaw)
    return fail_at(disk.where, "bootloader {}: {} is a {} image; pygrub reads raw disks", domain.bootloader,
                   disk.path, "qcow2");
  KILN_ASSIGN(BootLoaderArgs args, parse_bootloader_args(domain.bootloader_args, domain.source.of("bootloader_args")));
  fs::path disk_path = resolve(config.parent_path(), disk.path);
  auto found = find_guest_boot_files(disk_path, args);
  if (!found) return fail_at(where, "bootloader {}: {}", domain.bootloader, found.error().message);
  if (options.boot_files_dir.empty())
    return fail_at(where, "bootloader {}: no directory to put the guest's kernel in", domain.bootloader);
  fs::path dir = options.boot_files_dir / sha256_hex(fs::absolute(config).string()).substr(0, 16);
  KILN_TRY(extract_guest_boot_files(*found, disk_path, dir));
  source.kernel = dir / "vmlinuz";
  if (!found->initrd.empty()) source.initrd = dir / "initrd.img";
  return found->command_line;
}

// Each vif a NIC. Keys no backend of kiln's acts on (script=, rate=,
// model=...) warn once each, by name.
void add_xen_nics(const DomainSpec& domain, const BootSourceOptions& options, BootSource& source) {
  std::set<std::string> warned;
  for (const DomainVif& vif : domain.vifs) {
    SourceNic nic{vif.mac, vif.bridge, "", "", vif.where};
    for (const auto& [key, value] : vif.other_keys) {
      if (key == "ip") nic.ip = value;
      else if (key == "vifname") nic.vifname = value;
      else if (warned.insert(key).second)
        options.warn(fmt::format("{}: vif {}= is not acted on: kiln sets up the interface itself",
                                 vif.where.to_string(), key));
    }
    if (!nic.ip.empty() && nic.bridge.empty()) {
      options.warn(fmt::format("{}: vif ip={} is not acted on: without bridge= the interface is on user networking, "
                               "which gives the guest its own address",
                               vif.where.to_string(), nic.ip));
      nic.ip.clear();
    }
    source.nics.push_back(std::move(nic));
  }
}

Result<BootSource> from_xen_config(const fs::path& file, const BootSourceOptions& options) {
  KILN_ASSIGN(std::string text, read_file(file));
  std::vector<UnsupportedKey> notes;
  auto parsed = parse_xen_config(text, file.string(), &notes);
  for (const UnsupportedKey& key : notes)
    options.warn(fmt::format("{}: '{}' is not acted on: {}", key.where.to_string(), key.key, key.why));
  if (!parsed) return std::unexpected(parsed.error());
  const DomainSpec& domain = *parsed;
  fs::path base = file.parent_path();
  BootSource source;
  source.description = file.string();
  source.name = domain.name;
  source.own_hostname = true;
  source.boots_through_firmware = domain.type == DomainType::kHvm && domain.kernel.empty();
  if (source.boots_through_firmware && !domain.boot.empty() && domain.boot.front() != 'c')
    options.warn(fmt::format("{}: boot = \"{}\": kiln boots the first disk ({}); not a cdrom or the network",
                             domain.source.of("boot").to_string(), domain.boot,
                             domain.disks.empty() ? "none" : domain.disks.front().frontend));
  std::string loader_args;
  if (!domain.kernel.empty()) {
    source.kernel = resolve(base, domain.kernel);
    source.kernel_key = domain.source.of("kernel");
    if (!fs::exists(source.kernel))
      return fail_at(domain.source.of("kernel"), "kernel {}: no such file", source.kernel.string());
    if (!domain.ramdisk.empty()) {
      source.initrd = resolve(base, domain.ramdisk);
      if (!fs::exists(source.initrd))
        return fail_at(domain.source.of("ramdisk"), "ramdisk {}: no such file", source.initrd.string());
    }
  } else if (!domain.bootloader.empty() && !source.boots_through_firmware) {
    KILN_ASSIGN(loader_args, run_boot_loader(domain, file, options, source));
  } else if (!source.boots_through_firmware) {
    return fail_at(domain.source.of("kernel"), "nothing to boot: give kernel = \"...\", bootloader = \"pygrub\" "
                   "(the kernel in the guest's disk) or type = \"hvm\" (the disk through firmware)");
  }
  // The boot loader's entry first, then what the config adds: a root= of
  // the config's wins, as the kernel reads the last one.
  std::string root_words = domain.root.empty() ? "" : "root=" + domain.root;
  XenCommandLine line = split_xen_command_line(loader_args + " " + root_words + " " + domain.extra);
  source.xen_root = line.root;
  if (!split_xen_command_line(domain.extra).root.empty())
    source.xen_root_key = domain.source.of(domain.source.keys.contains("cmdline") ? "cmdline" : "extra");
  else
    source.xen_root_key = domain.source.of(domain.root.empty() ? "bootloader" : "root");
  source.kernel_args = line.rest;
  KILN_TRY(add_xen_disks(domain, base, options, source));
  if (source.xen_root.starts_with("UUID=")) source.root_uuid = source.xen_root.substr(5);
  if (domain.memory_mib) source.memory_mib = domain.memory_mib;
  source.vcpus = domain.vcpus;
  add_xen_nics(domain, options, source);
  KILN_ASSIGN(source.on_poweroff, parse_policy(action_name(domain.on_poweroff)));
  KILN_ASSIGN(source.on_reboot, parse_policy(action_name(domain.on_reboot)));
  KILN_ASSIGN(source.on_crash, parse_policy(action_name(domain.on_crash)));
  return source;
}

}  // namespace

std::string guest_device(BackendKind backend, size_t index, int partition) {
  std::string name = fmt::format("/dev/{}{}", backend == BackendKind::kUml ? "ubd" : "vd",
                                 static_cast<char>('a' + index));
  return partition > 0 ? name + std::to_string(partition) : name;
}

Result<std::string> translate_xen_root(const std::string& root, const std::vector<std::string>& xen_devices,
                                       BackendKind backend, const Location& where) {
  if (!root.starts_with("/dev/")) return root;
  std::string device = root.substr(5);
  auto [disk_name, partition] = split_xen_device(device);
  for (size_t i = 0; i < xen_devices.size(); ++i) {
    // "sda1" exports a bare filesystem: the guest sees a whole disk.
    if (xen_devices[i] == device) return guest_device(backend, i, 0);
    if (xen_devices[i] == disk_name) return guest_device(backend, i, partition);
  }
  std::string names;
  for (const std::string& name : xen_devices) names += (names.empty() ? "" : ", ") + name;
  return fail_at(where, "root={} names no disk of the config (its disks are {})", root, names);
}

Result<BootSource> read_boot_source(const fs::path& argument, const BootSourceOptions& options) {
  std::error_code ec;
  if (fs::is_directory(argument, ec)) return from_image_directory(argument);
  if (fs::is_regular_file(argument, ec)) return from_xen_config(argument, options);
  return fail(ErrorKind::kBadInput, "{}: no such image directory or domain config file", argument.string());
}

}  // namespace kiln
