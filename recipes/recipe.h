// Recipe: what a user asked kiln to bake, after parsing and validation.
// Plain data; every value remembers where it was written (file:line:col) so
// that errors found later, during the bake, still point at the recipe line.
// The keys, their types, defaults and docs live in one table,
// recipes/recipe_schema.cc; the customisation operations in another,
// recipes/customize_ops.cc.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/error.h"

namespace kiln {

// Values that select among fixed choices are enums, resolved once by the
// parser; their order is that of the setting's choices in
// recipes/recipe_schema.cc, which also gives their names.
enum class StorageLayout { kGpt, kLvm, kPlain };
enum class FilesystemType { kExt4, kExt3, kExt2, kSwap };
// "gpt", "ext4": as recipes, manifests and messages write them.
std::string_view name_of(StorageLayout layout);
std::string_view name_of(FilesystemType type);

template <class T>
struct Located {
  T value{};
  Location where;    // where the value was written; a default has no line
  bool set = false;  // written by the user (recipe or --set), not a default
};

struct ImageSection {
  Located<std::string> name;
  Located<std::string> version;
  Located<std::string> description;
  Located<std::string> kernel_cmdline;  // appended to root=UUID=... ro
  Located<std::string> arch;            // dpkg's name: base/architecture.h
};

struct BootstrapSection {
  Located<std::string> tool;  // "mmdebstrap" | "debootstrap"
  Located<std::string> distro;
  Located<std::string> suite;
  Located<std::string> variant;
  Located<std::vector<std::string>> components;
  Located<std::vector<std::string>> packages;
  Located<std::string> mirror;  // empty: the host's apt sources
  Located<std::vector<std::string>> apt_options;  // mmdebstrap --aptopt, in order
  Located<std::vector<std::string>> initramfs_modules;  // empty: initramfs-tools' own choice (MODULES=most)
  Located<std::string> from;    // import an existing rootfs archive instead
};

// One logical volume of [[storage.lvm.volumes]].
struct LvmVolume {
  Located<std::string> name;
  Located<uint64_t> size;  // bytes; 0 when `rest`
  bool rest = false;       // size = "rest": what the other volumes leave
  Located<FilesystemType> filesystem;
  Located<std::string> mountpoint;  // "" for swap
  Located<std::string> label;
  Location where;  // the [[storage.lvm.volumes]] header
};

// [storage.lvm]: the root partition is an LVM physical volume.
struct LvmSection {
  Located<bool> present;  // the table was written (where = its header)
  Located<std::string> vg;
  Located<uint64_t> extent_size;
  // As written, or, when none is, one "root" volume taking the rest with
  // storage.filesystem and storage.label.
  std::vector<LvmVolume> volumes;
};

// [storage.luks]: the root partition is a LUKS volume.
struct LuksSection {
  Located<bool> present;
  Located<std::string> version;  // "luks2" | "luks1"
  Located<std::string> cipher;   // "aes-xts-plain64"
  Located<int64_t> key_size;     // bits
  Located<int64_t> sector_size;  // bytes
  Located<std::string> hash;
  Located<std::string> pbkdf;    // "argon2id" | "argon2i" | "pbkdf2"
  Located<int64_t> pbkdf_time;   // milliseconds, when not pbkdf_iterations
  Located<int64_t> pbkdf_iterations;  // 0: benchmarked to pbkdf_time
  Located<uint64_t> pbkdf_memory;     // bytes (argon2)
  Located<std::string> passphrase_file;  // resolved against the recipe's directory
  Located<std::string> key_file;
  Located<std::string> label;
  Located<std::string> name;  // the mapping name in /etc/crypttab
};

// [storage.dmcrypt]: plain dm-crypt, no header (`cryptsetup create`).
struct DmcryptSection {
  Located<bool> present;
  Located<std::string> cipher;
  Located<int64_t> key_size;
  Located<int64_t> sector_size;
  Located<std::string> hash;
  Located<std::string> passphrase_file;
  Located<std::string> name;
};

struct StorageSection {
  Located<uint64_t> size;
  Located<StorageLayout> layout;
  Located<FilesystemType> filesystem;  // not swap
  Located<std::string> label;
  Located<uint64_t> esp_size;
  LvmSection lvm;
  LuksSection luks;
  DmcryptSection dmcrypt;

  bool encrypted() const { return luks.present.value || dmcrypt.present.value; }
};

// --- Customisation operations (see recipes/customize_ops.h for the table) ---

struct SetHostname {
  std::string hostname;
};
struct SetTimezone {
  std::string zone;
};
struct SetLocale {
  std::string locale;
};
struct SetRootPassword {
  std::filesystem::path password_file;
};
struct InstallPackages {
  std::vector<std::string> packages;
};
struct RunCommand {
  std::string command;                // a shell command line, or
  std::filesystem::path script_file;  // a script copied in and run
};
struct AddUser {
  std::string name;
  std::optional<uint32_t> uid;
  std::string comment;
  std::string shell;
  std::vector<std::string> groups;
  bool sudo = false;
  std::filesystem::path password_file;
  std::vector<std::string> ssh_authorized_keys;
  std::filesystem::path ssh_authorized_keys_file;
};

// One entry of [[customize.files]]: a path and at most one action, plus
// optional attributes. With no action, the attributes change an existing path.
struct FileOperation {
  enum class Action { kAttributesOnly, kWrite, kCopy, kAppendLine, kDelete, kSymlink, kMkdir };
  std::string path;
  Action action = Action::kAttributesOnly;
  std::string content;               // kWrite, kAppendLine, kSymlink (the target)
  std::filesystem::path source;      // kCopy
  std::optional<uint32_t> mode;
  std::optional<std::string> owner;  // "user", "user:group" or "uid:gid"
};

using CustomizeOperation = std::variant<SetHostname, SetTimezone, SetLocale, SetRootPassword,
                                        InstallPackages, RunCommand, AddUser, FileOperation>;

// A parsed operation with the place it came from.
struct CustomizeStep {
  CustomizeOperation operation;
  Location where;
};

struct CustomizeSection {
  // In application order: in-image operations first (packages, locale, run),
  // then offline ones (users, passwords, hostname, timezone, files).
  std::vector<CustomizeStep> steps;
};

struct OutputSection {
  Located<std::vector<std::string>> formats;
  // "publish" or "bake": when the whole-disk image's sha256 is taken.
  Located<std::string> disk_sha256;
  Located<uint64_t> memory;
  Located<int64_t> vcpus;
};

struct Recipe {
  std::filesystem::path file;      // as given on the command line
  std::filesystem::path base_dir;  // relative paths in the recipe start here
  // sha256 of the effective recipe (after --set), canonically formatted.
  std::string hash;
  ImageSection image;
  BootstrapSection bootstrap;
  StorageSection storage;
  CustomizeSection customize;
  OutputSection output;

  bool wants_output(std::string_view format) const;
  bool hashes_disk_at_bake() const { return output.disk_sha256.value == "bake"; }
};

}  // namespace kiln
