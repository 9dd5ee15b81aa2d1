// The rules of [storage] that involve more than one key: layouts and their
// sections, LVM volumes among themselves, and which LUKS and dm-crypt
// settings go together. Whether everything fits storage.size is the disk
// layout's to say (builder/disk_layout.h), where the sizes are computed. Defaults that depend on other keys (the
// key size of a cbc cipher, luks1's pbkdf and sector size, the default root
// volume) are filled in here, so the rest of kiln sees final values.
#include <algorithm>
#include <array>
#include <filesystem>

#include "base/size.h"
#include "recipes/section_parsers.h"

namespace kiln::recipes {
namespace {

// Ciphers kiln encrypts itself (crypto/sector_cipher.cc); tests keep the two
// lists equal.
constexpr std::array<std::string_view, 5> kUserspaceCiphers = {
    "aes-xts-plain64", "aes-xts-plain", "aes-cbc-essiv:sha256", "aes-cbc-plain64", "aes-cbc-plain"};

template <class T>
std::string origin_of(const Located<T>& value) {
  if (!value.set) return " (the default)";
  if (value.where.line > 0) return fmt::format(" (line {})", value.where.line);
  return fmt::format(" ({})", value.where.file);
}

// Where to point for a rule between a section and a key of it: the key when
// the user wrote it, else the section header.
template <class T>
const Location& spot(const Located<T>& key, const Located<bool>& section) {
  return key.set ? key.where : section.where;
}

bool is_xts(std::string_view cipher) { return cipher.find("-xts-") != std::string_view::npos; }

Result<> check_key_size(std::string_view what, const Located<std::string>& cipher, Located<int64_t>& key_size,
                        const Located<bool>& section) {
  bool xts = is_xts(cipher.value);
  if (!key_size.set && !xts) key_size.value = 256;
  int64_t bits = key_size.value;
  bool ok = xts ? (bits == 256 || bits == 512) : (bits == 128 || bits == 192 || bits == 256);
  if (ok) return {};
  return fail_at(spot(key_size, section), "{}.key_size {} does not suit cipher \"{}\"{}: expected {}", what, bits,
                 cipher.value, origin_of(cipher),
                 xts ? "256 or 512 (xts splits the key in two)" : "128, 192 or 256");
}

Result<> check_sector_size(std::string_view what, const Located<int64_t>& sector_size, const Located<bool>& section) {
  if (sector_size.value == 512 || sector_size.value == 4096) return {};
  return fail_at(spot(sector_size, section), "{}.sector_size {}: expected 512 or 4096", what, sector_size.value);
}

// Resolves a secret's file against the recipe's directory; it must exist.
Result<> resolve_file(const Recipe& recipe, std::string_view what, Located<std::string>& file) {
  if (file.value.empty()) return {};
  std::filesystem::path path = file.value;
  if (path.is_relative()) path = recipe.base_dir / path;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    return fail_at(file.where, "{}: {}: no such file", what, path.string());
  file.value = path.lexically_normal().string();
  return {};
}

Result<> check_luks(Recipe& recipe) {
  LuksSection& luks = recipe.storage.luks;
  const Located<bool>& section = luks.present;
  bool luks1 = luks.version.value == "luks1";
  if (luks1) {
    if (luks.pbkdf.set && luks.pbkdf.value != "pbkdf2")
      return fail_at(luks.pbkdf.where,
                     "storage.luks.pbkdf \"{}\" does not go with version \"luks1\"{}: LUKS1 keyslots use "
                     "pbkdf2 only; use version = \"luks2\" or pbkdf = \"pbkdf2\"",
                     luks.pbkdf.value, origin_of(luks.version));
    luks.pbkdf.value = "pbkdf2";
    if (luks.sector_size.set && luks.sector_size.value != 512)
      return fail_at(luks.sector_size.where,
                     "storage.luks.sector_size {} does not go with version \"luks1\"{}: LUKS1 has 512-byte "
                     "sectors only",
                     luks.sector_size.value, origin_of(luks.version));
    luks.sector_size.value = 512;
    if (!luks.label.value.empty())
      return fail_at(luks.label.where, "storage.luks.label: a LUKS1 header has no label{}; use version = \"luks2\"",
                     origin_of(luks.version));
  }
  bool userspace = std::find(kUserspaceCiphers.begin(), kUserspaceCiphers.end(), luks.cipher.value) !=
                   kUserspaceCiphers.end();
  if (luks1 && !userspace)
    return fail_at(spot(luks.cipher, section),
                   "storage.luks.cipher \"{}\" does not go with version \"luks1\"{}: kiln encrypts LUKS1 "
                   "volumes itself, with {} only (other ciphers go through libcryptsetup's reencryption, "
                   "which is LUKS2 only)",
                   luks.cipher.value, origin_of(luks.version), fmt::join(kUserspaceCiphers, ", "));
  if (luks.cipher.value.find("-xts-essiv") != std::string::npos)
    return fail_at(spot(luks.cipher, section),
                   "storage.luks.cipher \"{}\": xts takes a plain64 IV, not essiv; use \"aes-xts-plain64\"",
                   luks.cipher.value);
  KILN_TRY(check_key_size("storage.luks", luks.cipher, luks.key_size, section));
  KILN_TRY(check_sector_size("storage.luks", luks.sector_size, section));

  bool argon = luks.pbkdf.value != "pbkdf2";
  int64_t least = argon ? 4 : 1000;
  if (luks.pbkdf_iterations.value != 0 && luks.pbkdf_iterations.value < least)
    return fail_at(luks.pbkdf_iterations.where, "storage.luks.pbkdf_iterations {}: {} needs at least {} (or 0 to benchmark)",
                   luks.pbkdf_iterations.value, luks.pbkdf.value, least);
  if (!argon && luks.pbkdf_memory.set)
    return fail_at(luks.pbkdf_memory.where,
                   "storage.luks.pbkdf_memory applies to argon2 only, but pbkdf is \"pbkdf2\"{}; remove it",
                   origin_of(luks.pbkdf));
  if (argon) {
    uint64_t memory = luks.pbkdf_memory.value;
    if (memory < 32 * 1024 || memory > 4 * kGiB)
      return fail_at(spot(luks.pbkdf_memory, section), "storage.luks.pbkdf_memory {}: expected 32K to 4G",
                     format_size(memory));
    const Located<uint64_t>& guest = recipe.output.memory;
    if (memory > guest.value / 2)
      return fail_at(spot(luks.pbkdf_memory, section),
                     "storage.luks.pbkdf_memory {} is more than half of output.memory {}{}: the guest could "
                     "not unlock its root at boot; lower pbkdf_memory or raise output.memory",
                     format_size(memory), format_size(guest.value), origin_of(guest));
  }
  if (luks.passphrase_file.value.empty() && luks.key_file.value.empty())
    return fail_at(section.where,
                   "[storage.luks] needs passphrase_file (what the guest asks for at boot) or key_file, or both");
  KILN_TRY(resolve_file(recipe, "storage.luks.passphrase_file", luks.passphrase_file));
  KILN_TRY(resolve_file(recipe, "storage.luks.key_file", luks.key_file));
  return {};
}

Result<> check_dmcrypt(Recipe& recipe) {
  DmcryptSection& dmcrypt = recipe.storage.dmcrypt;
  if (recipe.storage.layout.value == StorageLayout::kPlain)
    return fail_at(dmcrypt.present.where,
                   "[storage.dmcrypt] needs a partition the guest can find by its PARTUUID (plain dm-crypt "
                   "has no header to find it by), but storage.layout is \"plain\"{}: use layout \"gpt\" or "
                   "\"lvm\", or [storage.luks]",
                   origin_of(recipe.storage.layout));
  KILN_TRY(check_key_size("storage.dmcrypt", dmcrypt.cipher, dmcrypt.key_size, dmcrypt.present));
  KILN_TRY(check_sector_size("storage.dmcrypt", dmcrypt.sector_size, dmcrypt.present));
  return resolve_file(recipe, "storage.dmcrypt.passphrase_file", dmcrypt.passphrase_file);
}

// Whether `path` is `dir` or lies under it.
bool within(std::string_view path, std::string_view dir) {
  if (dir == "/") return true;
  return path == dir || (path.starts_with(dir) && path.size() > dir.size() && path[dir.size()] == '/');
}

// Paths kiln's own setup reads or writes in the root filesystem after the
// import (accounts, fstab, machine ids, the kernel for the ESP, the package
// list): a volume of its own cannot be mounted on or above them. The
// virtual filesystems are the system's, not a volume's.
constexpr std::array<std::string_view, 14> kRootOnly = {
    "/etc", "/boot", "/usr/bin", "/usr/sbin", "/usr/lib", "/var/lib/dpkg", "/var/lib/dbus",
    "/bin", "/sbin", "/lib", "/lib64", "/proc", "/sys", "/dev"};

// The path an offline customisation step writes, if any ("" for none).
std::vector<std::string> offline_paths(const CustomizeStep& step) {
  if (const auto* file = std::get_if<FileOperation>(&step.operation)) return {file->path};
  if (const auto* user = std::get_if<AddUser>(&step.operation)) return {"/home/" + user->name};
  return {};
}

// A volume other than the root one gets the files under its mountpoint from
// the rootfs archive; kiln's customisation writes into the root filesystem
// only, so it must not aim below another volume's mountpoint.
Result<> check_volume_mountpoint(const Recipe& recipe, const LvmVolume& volume) {
  const std::string& mountpoint = volume.mountpoint.value;
  for (std::string_view needed : kRootOnly)
    if (within(needed, mountpoint) || within(mountpoint, "/etc") || within(mountpoint, "/boot"))
      return fail_at(volume.mountpoint.where,
                     "storage.lvm.volumes: \"{}\" cannot be mounted at {}: kiln sets the system up through {} in the "
                     "root filesystem; mount a volume at a data directory such as /srv, /home, /opt or /var/log",
                     volume.name.value, mountpoint, within(mountpoint, "/etc") || within(mountpoint, "/boot") ? mountpoint : needed);
  for (const CustomizeStep& step : recipe.customize.steps)
    for (const std::string& path : offline_paths(step))
      if (within(path, mountpoint))
        return fail_at(step.where,
                       "{} is on volume \"{}\" (mounted at {}, line {}), but kiln customises the root filesystem "
                       "only; do this at first boot, or with customize.run, whose changes go to the right volume",
                       path, volume.name.value, mountpoint, volume.mountpoint.where.line);
  return {};
}

Result<> check_lvm(Recipe& recipe) {
  StorageSection& storage = recipe.storage;
  LvmSection& lvm = storage.lvm;
  uint64_t extent = lvm.extent_size.value;
  if (extent < kMiB || (extent & (extent - 1)) != 0)
    return fail_at(spot(lvm.extent_size, lvm.present), "storage.lvm.extent_size {}: expected a power of two of at least 1M",
                   format_size(extent));
  if (lvm.volumes.empty()) {
    LvmVolume root;
    root.name = {"root", lvm.present.where, false};
    root.rest = true;
    root.filesystem = storage.filesystem;
    root.mountpoint = {"/", lvm.present.where, false};
    root.label = storage.label;
    root.where = lvm.present.where;
    lvm.volumes.push_back(std::move(root));
  } else {
    for (const Location* set : {storage.filesystem.set ? &storage.filesystem.where : nullptr,
                                storage.label.set ? &storage.label.where : nullptr})
      if (set)
        return fail_at(*set,
                       "with [[storage.lvm.volumes]], each volume names its own filesystem and label: move this "
                       "to the volume mounted at \"/\"");
  }
  const LvmVolume* rest = nullptr;
  const LvmVolume* root = nullptr;
  for (size_t i = 0; i < lvm.volumes.size(); ++i) {
    const LvmVolume& volume = lvm.volumes[i];
    for (size_t j = 0; j < i; ++j) {
      if (lvm.volumes[j].name.value == volume.name.value)
        return fail_at(volume.name.where, "storage.lvm.volumes: volume \"{}\" is listed twice (also line {})",
                       volume.name.value, lvm.volumes[j].name.where.line);
      if (!volume.mountpoint.value.empty() && lvm.volumes[j].mountpoint.value == volume.mountpoint.value)
        return fail_at(volume.mountpoint.where, "storage.lvm.volumes: \"{}\" and \"{}\" are both mounted at {}",
                       lvm.volumes[j].name.value, volume.name.value, volume.mountpoint.value);
    }
    if (volume.rest) {
      if (rest)
        return fail_at(volume.size.where,
                       "storage.lvm.volumes: only one volume can take the rest, and \"{}\" (line {}) already does",
                       rest->name.value, rest->size.where.line);
      rest = &volume;
    }
    bool swap = volume.filesystem.value == FilesystemType::kSwap;
    if (swap && !volume.mountpoint.value.empty())
      return fail_at(volume.mountpoint.where, "storage.lvm.volumes: \"{}\" is swap, which has no mountpoint",
                     volume.name.value);
    if (!swap && volume.mountpoint.value.empty())
      return fail_at(volume.where, "storage.lvm.volumes: \"{}\" ({}) needs a mountpoint, e.g. \"/srv\"",
                     volume.name.value, name_of(volume.filesystem.value));
    if (volume.mountpoint.value == "/") root = &volume;
    else if (!swap) KILN_TRY(check_volume_mountpoint(recipe, volume));
  }
  if (!root)
    return fail_at(lvm.volumes.front().where, "storage.lvm.volumes: no volume is mounted at \"/\"; give the root "
                                              "filesystem's volume mountpoint = \"/\"");
  return {};
}

}  // namespace

Result<> check_storage(Recipe& recipe) {
  StorageSection& storage = recipe.storage;
  if (storage.luks.present.value && storage.dmcrypt.present.value)
    return fail_at(storage.dmcrypt.present.where,
                   "[storage.dmcrypt] and [storage.luks] (line {}) both encrypt the root partition; keep one",
                   storage.luks.present.where.line);
  if (storage.lvm.present.value && storage.layout.value != StorageLayout::kLvm)
    return fail_at(storage.lvm.present.where,
                   "[storage.lvm] describes the volumes of storage.layout = \"lvm\", but the layout is \"{}\"{}: "
                   "set layout = \"lvm\" or remove [storage.lvm]",
                   name_of(storage.layout.value), origin_of(storage.layout));
  if (storage.luks.present.value) KILN_TRY(check_luks(recipe));
  if (storage.dmcrypt.present.value) KILN_TRY(check_dmcrypt(recipe));
  if (storage.layout.value == StorageLayout::kLvm) {
    if (!storage.lvm.present.value) storage.lvm.present.where = storage.layout.where;
    KILN_TRY(check_lvm(recipe));
  }
  return {};
}

}  // namespace kiln::recipes
