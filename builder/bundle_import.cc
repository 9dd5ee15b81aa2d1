#include "builder/bundle_import.h"

#include <algorithm>

namespace kiln {
namespace {

std::string file_name_of(std::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

std::string listed(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "" : ", ") + name;
  return out.empty() ? "nothing" : out;
}

std::string disk_name(const BundleDisk& d) { return fmt::format("{} ({})", d.disk->frontend, d.member); }

}  // namespace

Result<std::string> find_bundle_config(const std::vector<std::string>& files, std::string_view bundle) {
  std::vector<std::string> configs;
  for (const std::string& file : files)
    if (file.ends_with(".cfg")) configs.push_back(file);
  if (configs.size() == 1) return configs.front();
  std::sort(configs.begin(), configs.end());
  if (configs.empty())
    return fail(ErrorKind::kBadInput,
                "{}: no Xen domain config (a file named *.cfg) in the bundle, which holds {}: kiln finds the disks "
                "and their devices through it",
                bundle, listed(files));
  return fail(ErrorKind::kBadInput, "{}: {} Xen domain configs in the bundle ({}); kiln import takes a bundle with one",
              bundle, configs.size(), listed(configs));
}

Result<std::string> bundle_member_for(const DomainDisk& disk, const std::vector<std::string>& files) {
  std::string wanted = file_name_of(disk.path);
  std::vector<std::string> found;
  for (const std::string& file : files)
    if (!wanted.empty() && file_name_of(file) == wanted) found.push_back(file);
  if (found.size() == 1) return found.front();
  if (found.empty())
    return fail_at(disk.where, "disk {}: {} is not in the bundle, which holds {}", disk.frontend,
                   shown_value(disk.path), listed(files));
  return fail_at(disk.where, "disk {}: the bundle has {} files named {} ({}); kiln cannot tell which is meant",
                 disk.frontend, found.size(), shown_value(wanted), listed(found));
}

std::string config_root_device(const DomainSpec& config) {
  std::string line = config.kernel_command_line();
  std::string root;
  for (size_t start = 0; start < line.size();) {
    size_t end = line.find_first_of(" \t", start);
    if (end == std::string::npos) end = line.size();
    std::string_view word(line.data() + start, end - start);
    if (word.starts_with("root=")) root = std::string(word.substr(5));
    start = end + 1;
  }
  return root.starts_with("/dev/") ? root.substr(5) : "";
}

Result<BundleChoice> choose_bundle_disks(const DomainSpec& config, const std::vector<BundleDisk>& disks) {
  if (disks.empty()) return fail_at(config.source.of("disk"), "no disk = [...] in the config: nothing to import");
  BundleChoice choice;
  std::optional<size_t> root;
  std::string device = config_root_device(config);
  std::string root_note;
  if (!device.empty()) {
    auto [whole, partition] = split_xen_device(device);
    for (size_t i = 0; i < disks.size() && !root; ++i) {
      const std::string& frontend = disks[i].disk->frontend;
      if (frontend == device || (partition > 0 && frontend == whole)) root = i;
    }
    if (root && disks[*root].swap)
      return fail_at(config.source.of("root"), "root names /dev/{}, but {} is a swap area", device,
                     disk_name(disks[*root]));
    if (root) choice.how = fmt::format("{}, which root=/dev/{} names", disk_name(disks[*root]), device);
    else root_note = fmt::format("root=/dev/{} names none of its disks, and ", device);
  }
  if (!root) {
    for (size_t i = 0; i < disks.size() && !root; ++i)
      if (disks[i].os_root) root = i;
    if (!root) {
      std::string what;
      for (const BundleDisk& d : disks)
        what += fmt::format("\n{}: {}", disk_name(d),
                            d.swap ? "a swap area" : "no ext2/3/4 filesystem with /etc/os-release");
      return std::unexpected(Error{ErrorKind::kBadInput,
                                   fmt::format("{}no disk of the config is a root filesystem (ext2, ext3 or ext4 "
                                               "with /etc/os-release)",
                                               root_note),
                                   config.source.of(device.empty() ? "disk" : "root"), what.substr(1)});
    }
    choice.how = fmt::format("{}, {}the first disk with a root filesystem", disk_name(disks[*root]),
                             device.empty() ? "" : fmt::format("(root=/dev/{} names no disk) ", device));
  }
  choice.root = *root;
  for (size_t i = 0; i < disks.size(); ++i) {
    if (i == choice.root) continue;
    if (!disks[i].swap)
      return fail_at(disks[i].disk->where,
                     "disk {} is neither the root ({}) nor a swap area; kiln import carries a bundle's root and "
                     "swap disks only",
                     disk_name(disks[i]), disk_name(disks[choice.root]));
    choice.swaps.push_back(i);
  }
  return choice;
}

void take_config_shape(const DomainSpec& config, std::optional<uint64_t>& memory_mib, std::optional<int>& vcpus) {
  if (!memory_mib && config.memory_mib > 0) memory_mib = config.memory_mib;
  if (!vcpus && config.source.keys.contains("vcpus")) vcpus = config.vcpus;
}

}  // namespace kiln
