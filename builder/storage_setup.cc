#include "builder/storage_setup.h"

#include "builder/plan.h"

namespace kiln {
namespace {

// Debian's cryptsetup-initramfs puts cryptsetup into the initramfs only
// when it sees the running system's root is encrypted, which a build
// chroot's is not; CRYPTSETUP=y makes it do so anyway.
constexpr std::string_view kConfHook =
    "# Written by kiln: the image's root is encrypted, whatever the build host's is.\n"
    "CRYPTSETUP=y\n";

// Left to itself, initramfs-tools takes the build host's active swap as the
// image's resume device.
constexpr std::string_view kResume = "# Written by kiln: no hibernation image to resume from.\nRESUME=none\n";

std::string doubled_dashes(std::string_view name) {
  std::string out;
  for (char c : name) {
    out += c;
    if (c == '-') out += '-';
  }
  return out;
}

}  // namespace

const LvmVolume& root_volume(const StorageSection& storage) {
  for (const LvmVolume& volume : storage.lvm.volumes)
    if (volume.mountpoint.value == "/") return volume;
  // recipes/storage_checks.cc guarantees one.
  return storage.lvm.volumes.front();
}

std::string lvm_mapper_path(std::string_view vg, std::string_view lv) {
  return fmt::format("/dev/mapper/{}-{}", doubled_dashes(vg), doubled_dashes(lv));
}

std::string root_device(const Recipe& recipe, const ImageIdentity& identity) {
  const StorageSection& storage = recipe.storage;
  if (storage.layout.value == StorageLayout::kLvm) return lvm_mapper_path(storage.lvm.vg.value, root_volume(storage).name.value);
  return "UUID=" + identity.root_filesystem.to_string();
}

std::string crypttab_for(const Recipe& recipe, const ImageIdentity& identity) {
  const StorageSection& storage = recipe.storage;
  // "initramfs": unlock it in the initramfs although the build chroot's
  // root is not on it (the hook cannot tell otherwise).
  std::string header = "# <target name>\t<source device>\t<key file>\t<options>\n# Written by kiln from the recipe's [storage].\n";
  if (storage.luks.present.value)
    return header + fmt::format("{}\tUUID={}\tnone\tluks,initramfs\n", storage.luks.name.value,
                                identity.luks.to_string());
  if (storage.dmcrypt.present.value) {
    const DmcryptSection& d = storage.dmcrypt;
    std::string options = fmt::format("plain,cipher={},size={},hash={}", d.cipher.value, d.key_size.value, d.hash.value);
    if (d.sector_size.value != 512) options += fmt::format(",sector-size={}", d.sector_size.value);
    return header + fmt::format("{}\tPARTUUID={}\tnone\t{},initramfs\n", d.name.value,
                                identity.root_partition.to_string(), options);
  }
  return {};
}

StorageSupport storage_support(const Recipe& recipe, const ImageIdentity& identity) {
  StorageSupport support;
  const StorageSection& storage = recipe.storage;
  if (storage.layout.value == StorageLayout::kLvm) support.packages.push_back("lvm2");
  if (storage.encrypted()) {
    support.packages.push_back("cryptsetup-initramfs");
    support.files.emplace_back("/etc/crypttab", crypttab_for(recipe, identity));
    support.files.emplace_back("/etc/cryptsetup-initramfs/conf-hook", std::string(kConfHook));
  }
  if (!support.packages.empty()) support.files.emplace_back("/etc/initramfs-tools/conf.d/resume", std::string(kResume));
  return support;
}

}  // namespace kiln
