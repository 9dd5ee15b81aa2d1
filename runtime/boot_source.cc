#include "runtime/boot_source.h"

#include <algorithm>

#include "base/files.h"
#include "formats/image/image_manifest.h"
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
  source.description = dir.string();
  source.kernel = dir / "vmlinuz";
  source.initrd = dir / "initrd.img";
  if (fs::exists(dir / "root.img")) source.disks.push_back({dir / "root.img", false, false});
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
    source.disks.push_back({source.firmware_disk, false, false});
    source.root_partition = *image.root_partition();
  }
  if (image.encryption) {
    source.root_encryption = image.encryption->type.empty() ? "encrypted" : image.encryption->type;
    source.root_needs_initramfs = "an encrypted root (" + source.root_encryption + ")";
  }
  if (image.layout == "lvm") {
    // root.img is the root volume alone; the whole disk has the volume group.
    source.root_needs_initramfs = source.root_encryption.empty() ? "a root on LVM" : "a root on LVM on LUKS";
    source.disks = {{dir / "disk.raw", false, false}};
    source.root_device = image.root_device;
  }
  return source;
}

// "/dev/sda1 ro" -> "sda1"; "UUID=..." -> "".
std::string device_of(std::string_view root) {
  std::string_view word = root.substr(0, root.find(' '));
  if (!word.starts_with("/dev/")) return {};
  return std::string(word.substr(5));
}

// "sda1" -> ("sda", 1); "xvdb" -> ("xvdb", 0).
std::pair<std::string, int> split_partition(const std::string& frontend) {
  size_t digits = frontend.find_first_of("0123456789");
  if (digits == std::string::npos) return {frontend, 0};
  return {frontend.substr(0, digits), std::stoi(frontend.substr(digits))};
}

fs::path resolve(const fs::path& base, const std::string& path) {
  fs::path p(path);
  return p.is_relative() ? base / p : p;
}

Result<BootSource> from_xen_config(const fs::path& file) {
  KILN_ASSIGN(std::string text, read_file(file));
  KILN_ASSIGN(DomainSpec domain, parse_xen_config(text, file.string()));
  fs::path base = file.parent_path();
  BootSource source;
  source.description = file.string();
  source.name = domain.name;
  source.own_hostname = true;
  for (const UnsupportedKey& key : domain.source.unsupported)
    source.warnings.push_back(fmt::format("{}: '{}' is a Xen setting kiln does not act on; ignored",
                                          key.where.to_string(), key.key));
  if (domain.kernel.empty())
    return fail_at(domain.source.of("kernel"), "no kernel = \"...\": kiln boots Xen configs with a direct kernel");
  source.kernel = resolve(base, domain.kernel);
  source.kernel_key = domain.source.of("kernel");
  if (!fs::exists(source.kernel))
    return fail_at(domain.source.of("kernel"), "kernel {}: no such file", source.kernel.string());
  if (!domain.ramdisk.empty()) {
    source.initrd = resolve(base, domain.ramdisk);
    if (!fs::exists(source.initrd))
      return fail_at(domain.source.of("ramdisk"), "ramdisk {}: no such file", source.initrd.string());
  }
  if (domain.disks.empty()) return fail_at(domain.source.of("disk"), "no disk = [...] to boot from");
  // The root device named by root= goes first; the others follow in order.
  std::string root_frontend = device_of(domain.root);
  std::vector<const DomainDisk*> ordered;
  for (const DomainDisk& disk : domain.disks) ordered.push_back(&disk);
  // root=/dev/sda1 names the disk "sda1", or partition 1 of the disk "sda".
  auto root_disk = std::find_if(ordered.begin(), ordered.end(),
                                [&](const DomainDisk* d) { return d->frontend == root_frontend; });
  if (root_disk == ordered.end())
    root_disk = std::find_if(ordered.begin(), ordered.end(), [&](const DomainDisk* d) {
      return d->frontend == split_partition(root_frontend).first;
    });
  if (root_disk != ordered.end()) std::rotate(ordered.begin(), root_disk, root_disk + 1);
  for (const DomainDisk* disk : ordered) {
    fs::path path = resolve(base, disk->path);
    if (!fs::exists(path)) return fail_at(disk->where, "disk {}: no such file or device", path.string());
    source.disks.push_back({path, false, disk->read_only});
  }
  // A frontend with a partition number ("sda1") exports a bare filesystem;
  // root= names a partition of a whole disk only when the frontend has none.
  int root_part = split_partition(root_frontend).second;
  bool bare = split_partition(ordered.front()->frontend).second != 0;
  source.root_partition = bare ? 0 : root_part;
  std::string rest = domain.root.substr(std::min(domain.root.size(), domain.root.find(' ') == std::string::npos
                                                                         ? domain.root.size()
                                                                         : domain.root.find(' ') + 1));
  if (root_frontend.empty() && !domain.root.empty()) {
    // root = "UUID=..." or a label: pass it through unchanged.
    std::string word = domain.root.substr(0, domain.root.find(' '));
    if (word.starts_with("UUID=")) source.root_uuid = word.substr(5);
  }
  source.kernel_args = extra_kernel_args(rest + " " + domain.extra);
  if (domain.memory_mib) source.memory_mib = domain.memory_mib;
  source.vcpus = domain.vcpus;
  if (!domain.vifs.empty()) {
    if (!domain.vifs.front().mac.empty()) source.mac = domain.vifs.front().mac;
    if (!domain.vifs.front().bridge.empty()) source.bridge = domain.vifs.front().bridge;
  }
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

Result<BootSource> read_boot_source(const fs::path& argument) {
  std::error_code ec;
  if (fs::is_directory(argument, ec)) return from_image_directory(argument);
  if (fs::is_regular_file(argument, ec)) return from_xen_config(argument);
  return fail(ErrorKind::kBadInput, "{}: no such image directory or domain config file", argument.string());
}

}  // namespace kiln
