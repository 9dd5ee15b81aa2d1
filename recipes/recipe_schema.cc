#include "recipes/recipe_schema.h"

#include <algorithm>
#include <array>
#include <variant>

#include "base/vm_shape.h"
#include "base/architecture.h"
#include "recipes/section_parsers.h"
#include "recipes/value_checks.h"

namespace kiln {
namespace {

using StringField = Located<std::string>& (*)(Recipe&);
using ListField = Located<std::vector<std::string>>& (*)(Recipe&);
using SizeField = Located<uint64_t>& (*)(Recipe&);
using IntegerField = Located<int64_t>& (*)(Recipe&);
// The keys of a [[storage.lvm.volumes]] entry bind to that entry.
using VolumeStringField = Located<std::string>& (*)(LvmVolume&);
using VolumeSizeField = Located<uint64_t>& (*)(LvmVolume&);
// A choice, stored as its enum (the value's place among the choices).
using LayoutField = Located<StorageLayout>& (*)(Recipe&);
using FilesystemField = Located<FilesystemType>& (*)(Recipe&);
using VolumeFilesystemField = Located<FilesystemType>& (*)(LvmVolume&);
using Field = std::variant<StringField, ListField, SizeField, IntegerField, VolumeStringField,
                           VolumeSizeField, LayoutField, FilesystemField, VolumeFilesystemField>;
// Returns what is wrong with one string value, or "" when it is fine.
using Check = std::string (*)(std::string_view value);
// The same for a size (bytes) or an integer.
using NumberCheck = std::string (*)(int64_t value);

struct Setting {
  SettingInfo info;
  Field field;
  Check check = nullptr;
  int64_t min_integer = 1;  // integers below are refused
  NumberCheck number_check = nullptr;
};

std::string check_vm_memory(int64_t bytes) { return vm_memory_problem(static_cast<uint64_t>(bytes)); }

#define FIELD(member) [](Recipe& recipe) -> auto& { return recipe.member; }
#define VOLUME(member) [](LvmVolume& volume) -> auto& { return volume.member; }

const std::array kSettings = {
    // [image]
    Setting{{"image", "name", ValueKind::kString, "", "",
             "Image name: names the output files (NAME.xl.cfg) and the VM.", true},
            StringField{FIELD(image.name)}, check_image_name},
    Setting{{"image", "version", ValueKind::kString, "\"1.0\"", "",
             "Image version, recorded in manifest.json and published feeds, where it names files: "
             "letters, digits, '.', '+', '~', '_', ':' and '-', no '/' and no '..'."},
            StringField{FIELD(image.version)}, check_version},
    Setting{{"image", "description", ValueKind::kString, "\"\"", "", "One line about the image."},
            StringField{FIELD(image.description)}},
    Setting{{"image", "kernel_cmdline", ValueKind::kString, "\"console=tty0 console=ttyS0\"", "",
             "Kernel arguments after root=UUID=... ro, for every boot path."},
            StringField{FIELD(image.kernel_cmdline)}, check_text_line},
    Setting{{"image", "arch", ValueKind::kString, "\"amd64\"", architecture_choices(),
             "Debian architecture of the image. The kernel package, the EFI boot loader and the "
             "serial console follow it; another architecture than the host's is bootstrapped "
             "through qemu-user emulation (package qemu-user-static) and boots under its "
             "qemu-system (TCG)."},
            StringField{FIELD(image.arch)}},
    // [bootstrap]
    Setting{{"bootstrap", "tool", ValueKind::kString, "\"mmdebstrap\"", "mmdebstrap|debootstrap",
             "The program that bootstraps the root filesystem."},
            StringField{FIELD(bootstrap.tool)}},
    Setting{{"bootstrap", "distro", ValueKind::kString, "\"debian\"", "debian",
             "The distribution family."},
            StringField{FIELD(bootstrap.distro)}},
    Setting{{"bootstrap", "suite", ValueKind::kString, "", "",
             "The release to install, e.g. \"bookworm\". Required unless `from` is given."},
            StringField{FIELD(bootstrap.suite)}, check_word},
    Setting{{"bootstrap", "variant", ValueKind::kString, "\"minbase\"", "",
             "Package selection: mmdebstrap takes extract, custom, essential, apt, required, "
             "minbase, buildd, important, standard; debootstrap takes minbase, buildd, default."},
            StringField{FIELD(bootstrap.variant)}},
    Setting{{"bootstrap", "components", ValueKind::kStringList, "[\"main\"]", "",
             "Archive components."},
            ListField{FIELD(bootstrap.components)}, check_word},
    Setting{{"bootstrap", "packages", ValueKind::kStringList, "[]", "",
             "Extra packages installed by the bootstrap (changing them re-runs it)."},
            ListField{FIELD(bootstrap.packages)}, check_package},
    Setting{{"bootstrap", "mirror", ValueKind::kString, "\"\"", "",
             "Archive URI. Empty: the Debian mirror of the host's apt sources."},
            StringField{FIELD(bootstrap.mirror)}, check_mirror},
    Setting{{"bootstrap", "apt_options", ValueKind::kStringList, "[]", "",
             "apt configuration for the bootstrap and the in-image stage, as mmdebstrap's --aptopt takes it "
             "(it stays in the image's /etc/apt/apt.conf.d/99mmdebstrap). For example "
             "'Acquire::Check-Valid-Until \"false\"' accepts a Release file past its Valid-Until date, as a "
             "mirror snapshot's sid and testing have; apt then cannot tell an old snapshot from a replayed one. "
             "mmdebstrap only."},
            ListField{FIELD(bootstrap.apt_options)}, check_text_line},
    Setting{{"bootstrap", "initramfs_modules", ValueKind::kStringList, "[]", "",
             "The kernel modules the initramfs carries (with those they depend on; udev loads each when "
             "its device appears), in place of initramfs-tools' MODULES=most, every storage, filesystem "
             "and network driver. Name the root filesystem's module too. A virtual machine's short list "
             "makes the default recipe's initramfs 7 MiB instead of 35 and its boot under TCG about 2 s "
             "shorter. The choice stays in the image (/etc/initramfs-tools), so a kernel upgrade there "
             "keeps it. Empty: initramfs-tools' own. mmdebstrap and initramfs-tools only."},
            ListField{FIELD(bootstrap.initramfs_modules)}, check_module},
    Setting{{"bootstrap", "from", ValueKind::kPath, "\"\"", "",
             "Import this rootfs archive (.tar, .tar.gz, .tar.xz, .tar.zst, .cpio, .cpio.gz; a "
             "path or a file://, http://, https:// or ftp:// URI) instead of bootstrapping; or start from "
             "the root filesystem of a kiln image directory (the output of `kiln bake` or `kiln import`; "
             "not an encrypted or LVM one), read in place, for the same architecture as image.arch."},
            StringField{FIELD(bootstrap.from)}, check_text_line},
    // [storage]
    Setting{{"storage", "size", ValueKind::kSize, "\"2G\"", "",
             "Size of the disk image (disk.raw), or of root.img for the plain layout."},
            SizeField{FIELD(storage.size)}},
    Setting{{"storage", "layout", ValueKind::kString, "\"gpt\"", "gpt|lvm|plain",
             "gpt: a GPT disk with an EFI system partition and the root partition; lvm: the same "
             "disk with an LVM physical volume in place of the root partition, holding the "
             "[[storage.lvm.volumes]]; plain: the root filesystem alone."},
            LayoutField{FIELD(storage.layout)}},
    Setting{{"storage", "filesystem", ValueKind::kString, "\"ext4\"", "ext4|ext3|ext2",
             "Root filesystem type (with layout \"lvm\": of the default root volume)."},
            FilesystemField{FIELD(storage.filesystem)}},
    Setting{{"storage", "label", ValueKind::kString, "\"root\"", "",
             "Root filesystem label (with layout \"lvm\": of the default root volume)."},
            StringField{FIELD(storage.label)}, check_fs_label},
    Setting{{"storage", "esp_size", ValueKind::kSize, "\"128M\"", "",
             "Size of the EFI system partition (gpt and lvm layouts)."},
            SizeField{FIELD(storage.esp_size)}},
    // [storage.lvm]
    Setting{{"storage.lvm", "vg", ValueKind::kString, "\"vg0\"", "",
             "Volume group name; the guest sees its volumes as /dev/VG/LV."},
            StringField{FIELD(storage.lvm.vg)}, check_lvm_name},
    Setting{{"storage.lvm", "extent_size", ValueKind::kSize, "\"4M\"", "",
             "Physical extent size: a power of two of at least 1 MiB; volume sizes round up to "
             "it."},
            SizeField{FIELD(storage.lvm.extent_size)}},
    // [[storage.lvm.volumes]]
    Setting{{"storage.lvm.volumes", "name", ValueKind::kString, "", "",
             "Logical volume name.", true},
            VolumeStringField{VOLUME(name)}, check_lvm_name},
    Setting{{"storage.lvm.volumes", "size", ValueKind::kSizeOrRest, "", "",
             "Volume size, rounded up to whole extents, or \"rest\" for what the other volumes "
             "leave (one volume at most).",
             true},
            VolumeSizeField{VOLUME(size)}},
    Setting{{"storage.lvm.volumes", "filesystem", ValueKind::kString, "\"ext4\"",
             "ext4|ext3|ext2|swap", "What the volume holds."},
            VolumeFilesystemField{VOLUME(filesystem)}},
    Setting{{"storage.lvm.volumes", "mountpoint", ValueKind::kString, "\"\"", "",
             "Where the guest mounts it (by UUID in /etc/fstab); exactly one volume has \"/\". "
             "The files under it go into this volume. Not for swap."},
            VolumeStringField{VOLUME(mountpoint)}, check_mountpoint},
    Setting{{"storage.lvm.volumes", "label", ValueKind::kString, "\"\"", "",
             "Filesystem or swap label."},
            VolumeStringField{VOLUME(label)}, check_fs_label},
    // [storage.luks]
    Setting{{"storage.luks", "version", ValueKind::kString, "\"luks2\"", "luks2|luks1",
             "LUKS header version."},
            StringField{FIELD(storage.luks.version)}},
    Setting{{"storage.luks", "cipher", ValueKind::kString, "\"aes-xts-plain64\"", "",
             "Data cipher as cryptsetup names it. kiln encrypts aes-xts-plain64, aes-xts-plain, "
             "aes-cbc-essiv:sha256, aes-cbc-plain64 and aes-cbc-plain itself; other ciphers "
             "(luks2 only) go through libcryptsetup's reencryption, which is slower."},
            StringField{FIELD(storage.luks.cipher)}, check_cipher},
    Setting{{"storage.luks", "key_size", ValueKind::kInteger, "512", "",
             "Volume key size in bits: 256 or 512 for xts (two keys), 128, 192 or 256 for other "
             "modes. The default is 256 for non-xts ciphers."},
            IntegerField{FIELD(storage.luks.key_size)}},
    Setting{{"storage.luks", "sector_size", ValueKind::kInteger, "4096", "",
             "Encryption sector size: 4096 or 512 bytes (luks1: 512 only, and the default)."},
            IntegerField{FIELD(storage.luks.sector_size)}},
    Setting{{"storage.luks", "hash", ValueKind::kString, "\"sha256\"", "sha256|sha512|sha1|ripemd160",
             "Hash of the header's digest and anti-forensic splitter, and of pbkdf2."},
            StringField{FIELD(storage.luks.hash)}},
    Setting{{"storage.luks", "pbkdf", ValueKind::kString, "\"argon2id\"", "argon2id|argon2i|pbkdf2",
             "Key derivation of the keyslots (luks1: pbkdf2 only, and the default)."},
            StringField{FIELD(storage.luks.pbkdf)}},
    Setting{{"storage.luks", "pbkdf_time", ValueKind::kInteger, "2000", "",
             "Milliseconds an unlock should take on the build host; the key derivation cost is "
             "benchmarked to it, unless pbkdf_iterations is given."},
            IntegerField{FIELD(storage.luks.pbkdf_time)}},
    Setting{{"storage.luks", "pbkdf_iterations", ValueKind::kInteger, "0", "",
             "A fixed cost instead of a benchmark: pbkdf2 iterations (at least 1000) or argon2 "
             "passes (at least 4). 0: benchmark to pbkdf_time."},
            IntegerField{FIELD(storage.luks.pbkdf_iterations)}, nullptr, 0},
    Setting{{"storage.luks", "pbkdf_memory", ValueKind::kSize, "\"256M\"", "",
             "Memory cost of argon2 (at most half of output.memory: the guest derives the key "
             "while booting)."},
            SizeField{FIELD(storage.luks.pbkdf_memory)}},
    Setting{{"storage.luks", "passphrase_file", ValueKind::kPath, "\"\"", "",
             "File whose first line is a passphrase for keyslot 0: what the guest asks for at "
             "boot. Never copied into the image, the manifest or a log."},
            StringField{FIELD(storage.luks.passphrase_file)}, check_text_line},
    Setting{{"storage.luks", "key_file", ValueKind::kPath, "\"\"", "",
             "File whose whole content is a key for the next keyslot (for scripts; "
             "`kiln luks` takes it with --key-file). At least one of passphrase_file and key_file "
             "is needed."},
            StringField{FIELD(storage.luks.key_file)}, check_text_line},
    Setting{{"storage.luks", "label", ValueKind::kString, "\"\"", "",
             "LUKS2 header label (luks1 has none)."},
            StringField{FIELD(storage.luks.label)}, check_fs_label},
    Setting{{"storage.luks", "name", ValueKind::kString, "\"cryptroot\"", "",
             "Mapping name in the guest's /etc/crypttab: /dev/mapper/NAME."},
            StringField{FIELD(storage.luks.name)}, check_mapping_name},
    // [storage.dmcrypt]
    Setting{{"storage.dmcrypt", "cipher", ValueKind::kString, "\"aes-xts-plain64\"",
             "aes-xts-plain64|aes-xts-plain|aes-cbc-essiv:sha256|aes-cbc-plain64|aes-cbc-plain",
             "Data cipher."},
            StringField{FIELD(storage.dmcrypt.cipher)}},
    Setting{{"storage.dmcrypt", "key_size", ValueKind::kInteger, "512", "",
             "Key size in bits: 256 or 512 for xts, 128, 192 or 256 for cbc (default 256)."},
            IntegerField{FIELD(storage.dmcrypt.key_size)}},
    Setting{{"storage.dmcrypt", "sector_size", ValueKind::kInteger, "512", "",
             "Encryption sector size: 512 or 4096 bytes."},
            IntegerField{FIELD(storage.dmcrypt.sector_size)}},
    Setting{{"storage.dmcrypt", "hash", ValueKind::kString, "\"sha256\"", "sha256|sha512|sha1|ripemd160",
             "Hash that turns the passphrase into the key (cryptsetup --hash)."},
            StringField{FIELD(storage.dmcrypt.hash)}},
    Setting{{"storage.dmcrypt", "passphrase_file", ValueKind::kPath, "", "",
             "File whose first line is the passphrase the guest asks for at boot.", true},
            StringField{FIELD(storage.dmcrypt.passphrase_file)}, check_text_line},
    Setting{{"storage.dmcrypt", "name", ValueKind::kString, "\"cryptroot\"", "",
             "Mapping name in the guest's /etc/crypttab: /dev/mapper/NAME."},
            StringField{FIELD(storage.dmcrypt.name)}, check_mapping_name},
    // [output]
    Setting{{"output", "formats", ValueKind::kStringList,
             "[\"disk\", \"partitions\", \"kernel\", \"xen\", \"libvirt\"]",
             "disk|partitions|kernel|qcow2|xen|libvirt",
             "Artifacts to write besides manifest.json: disk (disk.raw), partitions (root.img, and for an "
             "unencrypted lvm layout one image per volume: a copy of each, for Xen-era domains that take "
             "bare filesystems; `kiln boot` and NAME.xl.cfg use disk.raw without them), kernel (vmlinuz, "
             "initrd.img), qcow2 (disk.qcow2), xen (NAME.xl.cfg), libvirt (NAME.libvirt.xml)."},
            ListField{FIELD(output.formats)}},
    Setting{{"output", "disk_sha256", ValueKind::kString, "\"publish\"", "publish|bake",
             "When the sha256 of the whole-disk image (disk.raw, disk.qcow2, or a plain layout's root.img) is "
             "taken for manifest.json: at publish, which hashes the image in the same read that compresses it, "
             "or at bake, which costs a full read of the image on every bake (about 1.2 s for 2 GiB here). "
             "Every other artifact's sha256 is always taken at bake; `kiln pull` checks all of them."},
            StringField{FIELD(output.disk_sha256)}},
    Setting{{"output", "memory", ValueKind::kSize, "\"1G\"", "",
             "Memory of the VM, 64M to 16T: in NAME.xl.cfg and NAME.libvirt.xml, and what `kiln boot` gives an "
             "instance unless --memory says otherwise."},
            SizeField{FIELD(output.memory)}, nullptr, 1, check_vm_memory},
    Setting{{"output", "vcpus", ValueKind::kInteger, "1", "",
             "Virtual CPUs of the VM, 1 to 255: in NAME.xl.cfg and NAME.libvirt.xml, and what `kiln boot` gives an "
             "instance unless --vcpus says otherwise (the uml backend runs one)."},
            IntegerField{FIELD(output.vcpus)}, nullptr, 1, vm_vcpus_problem},
};

#undef FIELD
#undef VOLUME

using Presence = Located<bool>& (*)(Recipe&);
using ArrayParser = Result<> (*)(const toml::node& node, const recipes::TomlReader& reader,
                                 Recipe& recipe);

Result<> parse_volumes(const toml::node& node, const recipes::TomlReader& reader, Recipe& recipe);

struct Section {
  SectionInfo info;
  Presence presence = nullptr;  // nested sections: set when the table was written
  ArrayParser parse_array = nullptr;
};

const std::array kSections = {
    Section{{"image", ""}},
    Section{{"bootstrap", ""}},
    Section{{"storage", ""}},
    Section{{"storage.lvm",
             "The volume group of storage.layout = \"lvm\". kiln writes the LVM metadata with "
             "the real lvm2 tools on a loop device over the image file (the one loop device of a "
             "bake; no device-mapper is needed), then each filesystem straight into its volume."},
            [](Recipe& recipe) -> auto& { return recipe.storage.lvm.present; }},
    Section{{"storage.lvm.volumes",
             "The logical volumes, in order. Without any, one volume \"root\" takes the whole "
             "group with storage.filesystem and storage.label.",
             true},
            nullptr, parse_volumes},
    Section{{"storage.luks",
             "Encrypts the root partition (with layout \"lvm\": the physical volume, "
             "LVM-on-LUKS) with LUKS. The header comes from libcryptsetup; kiln encrypts the "
             "blocks in use itself. The guest gets /etc/crypttab and cryptsetup in its initramfs, "
             "and asks for the passphrase on the console at boot. The volume key is random, so "
             "an encrypted image is never byte-for-byte reproducible."},
            [](Recipe& recipe) -> auto& { return recipe.storage.luks.present; }},
    Section{{"storage.dmcrypt",
             "Encrypts the root partition with plain dm-crypt, as `cryptsetup create` does: no "
             "header, the key is the hashed passphrase. Needs the gpt or lvm layout (the guest "
             "finds the partition by its PARTUUID)."},
            [](Recipe& recipe) -> auto& { return recipe.storage.dmcrypt.present; }},
    Section{{"customize", ""}},
    Section{{"output", ""}},
};

bool is_top_level(const Section& section) {
  return section.info.name.find('.') == std::string_view::npos;
}

// Whether `child` is a section directly inside `parent` ("storage.luks" in "storage").
bool is_child(std::string_view child, std::string_view parent) {
  return child.size() > parent.size() + 1 && child.starts_with(parent) && child[parent.size()] == '.' &&
         child.substr(parent.size() + 1).find('.') == std::string_view::npos;
}

// The value's place among "a|b|c"; npos when it is none of them.
size_t choice_index(std::string_view choices, std::string_view value) {
  for (size_t index = 0; !choices.empty(); ++index) {
    auto bar = choices.find('|');
    if (choices.substr(0, bar) == value) return index;
    if (bar == std::string_view::npos) break;
    choices.remove_prefix(bar + 1);
  }
  return std::string_view::npos;
}

bool in_choices(std::string_view choices, std::string_view value) {
  return choice_index(choices, value) != std::string_view::npos;
}

std::string_view choice_at(std::string_view choices, size_t index) {
  for (; index > 0; --index) choices.remove_prefix(choices.find('|') + 1);
  return choices.substr(0, choices.find('|'));
}

template <class F, class Target>
using FieldValue = std::remove_cvref_t<decltype(std::declval<std::invoke_result_t<F, Target&>>().value)>;

std::string choices_text(std::string_view choices) {
  std::string out;
  while (!choices.empty()) {
    auto bar = choices.find('|');
    if (!out.empty()) out += bar == std::string_view::npos ? " or " : ", ";
    out += fmt::format("\"{}\"", choices.substr(0, bar));
    if (bar == std::string_view::npos) break;
    choices.remove_prefix(bar + 1);
  }
  return out;
}

Result<> check_value(const Setting& setting, std::string_view value, const Location& where) {
  const SettingInfo& info = setting.info;
  if (!info.choices.empty() && !in_choices(info.choices, value))
    return fail_at(where, "{}.{}: unknown value {}: expected {}", info.section, info.key, shown_value(value),
                   choices_text(info.choices));
  if (setting.check && !value.empty()) {
    std::string problem = setting.check(value);
    if (!problem.empty())
      return fail_at(where, "{}.{}: {}: {}", info.section, info.key, shown_value(value), problem);
  }
  return {};
}

Result<> check_number(const Setting& setting, int64_t value, const Location& where) {
  if (!setting.number_check) return {};
  std::string problem = setting.number_check(value);
  if (problem.empty()) return {};
  return fail_at(where, "{}.{}: {}", setting.info.section, setting.info.key, problem);
}

// Binds one value to its field in `target` (the Recipe, or one volume).
template <class Target>
Result<> assign(const Setting& setting, const toml::node& node, const recipes::TomlReader& reader,
                Target& target, bool from_user) {
  std::string what = fmt::format("{}.{}", setting.info.section, setting.info.key);
  Location default_place{reader.file(), 0, 0};
  auto finish = [&](auto& field, auto value) -> Result<> {
    field = std::move(value);
    if (!from_user) {
      field.set = false;
      field.where = default_place;
    }
    return {};
  };
  return std::visit(
      [&](auto field) -> Result<> {
        using F = decltype(field);
        if constexpr (!std::is_invocable_v<F, Target&>) {
          return fail(ErrorKind::kFailed, "internal: {} is bound to another kind of table", what);
        } else if constexpr (std::is_same_v<F, ListField>) {
          KILN_ASSIGN(auto value, reader.string_list(node, what));
          for (const auto& item : value.value) KILN_TRY(check_value(setting, item, value.where));
          return finish(field(target), std::move(value));
        } else if constexpr (std::is_same_v<F, SizeField>) {
          KILN_ASSIGN(auto value, reader.size(node, what));
          KILN_TRY(check_number(setting, static_cast<int64_t>(value.value), value.where));
          return finish(field(target), std::move(value));
        } else if constexpr (std::is_same_v<F, VolumeSizeField>) {
          // A size, or "rest": recorded as size 0, which no size can be.
          if (const auto* text = node.as_string(); text && text->get() == "rest")
            return finish(field(target), Located<uint64_t>{0, reader.at(node), true});
          auto value = reader.size(node, what);
          if (!value) return fail_at(reader.at(node), "{}: expected a size such as \"2G\" or \"rest\"", what);
          return finish(field(target), std::move(*value));
        } else if constexpr (std::is_same_v<F, IntegerField>) {
          KILN_ASSIGN(auto value, reader.integer(node, what));
          if (value.value < setting.min_integer)
            return fail_at(value.where, "{}: must be {}", what,
                           setting.min_integer == 0 ? "zero or a positive integer" : "a positive integer");
          KILN_TRY(check_number(setting, value.value, value.where));
          return finish(field(target), std::move(value));
        } else if constexpr (std::is_enum_v<FieldValue<F, Target>>) {
          KILN_ASSIGN(auto text, reader.string(node, what));
          KILN_TRY(check_value(setting, text.value, text.where));
          using Enum = FieldValue<F, Target>;
          auto index = choice_index(setting.info.choices, text.value);
          return finish(field(target), Located<Enum>{static_cast<Enum>(index), text.where, text.set});
        } else {
          KILN_ASSIGN(auto value, reader.string(node, what));
          KILN_TRY(check_value(setting, value.value, value.where));
          return finish(field(target), std::move(value));
        }
      },
      setting.field);
}

template <class Target>
Result<> bind_default(const Setting& setting, const recipes::TomlReader& reader, Target& target) {
  std::string text = fmt::format("value = {}", setting.info.default_value);
  toml::table parsed = toml::parse(std::string_view(text), std::string_view("default"));
  return assign(setting, *parsed.get("value"), reader, target, false);
}

// The keys a table of `section` may hold: its settings and its nested sections.
std::vector<std::string_view> known_keys(std::string_view section) {
  std::vector<std::string_view> known;
  for (const Setting& setting : kSettings)
    if (setting.info.section == section) known.push_back(setting.info.key);
  for (const Section& nested : kSections)
    if (is_child(nested.info.name, section)) known.push_back(nested.info.name.substr(section.size() + 1));
  return known;
}

Result<> check_keys(const toml::table& table, std::string_view section, const recipes::TomlReader& reader) {
  std::vector<std::string_view> known = known_keys(section);
  for (const auto& [key, node] : table)
    if (std::find(known.begin(), known.end(), key.str()) == known.end())
      return reader.unknown_key(key, section, known);
  return {};
}

// Binds every setting of `section` from `table` (null: the section is
// absent) into `target`: the user's values, else the defaults.
template <class Target>
Result<> bind_section(std::string_view section, const toml::table* table, const recipes::TomlReader& reader,
                      Target& target, bool require) {
  for (const Setting& setting : kSettings) {
    if (setting.info.section != section) continue;
    const toml::node* node = table ? table->get(setting.info.key) : nullptr;
    if (node) {
      KILN_TRY(assign(setting, *node, reader, target, true));
    } else if (setting.info.required && require) {
      Location where = table ? reader.at(*table) : Location{reader.file(), 0, 0};
      return fail_at(where, "missing required key {}.{} ({})", section, setting.info.key, setting.info.doc);
    } else if (!setting.info.default_value.empty()) {
      KILN_TRY(bind_default(setting, reader, target));
    }
  }
  return {};
}

Result<> parse_volumes(const toml::node& node, const recipes::TomlReader& reader, Recipe& recipe) {
  constexpr std::string_view kSection = "storage.lvm.volumes";
  const toml::array* array = node.as_array();
  if (!array)
    return fail_at(reader.at(node), "storage.lvm.volumes: expected [[storage.lvm.volumes]] tables");
  for (const toml::node& item : *array) {
    const toml::table* table = item.as_table();
    if (!table) return fail_at(reader.at(item), "storage.lvm.volumes: each volume is a table");
    std::vector<std::string_view> known = known_keys(kSection);
    for (const auto& [key, value] : *table)
      if (std::find(known.begin(), known.end(), key.str()) == known.end())
        return reader.unknown_key(key, "[storage.lvm.volumes]", known);
    LvmVolume volume;
    volume.where = reader.at(*table);
    KILN_TRY(bind_section(kSection, table, reader, volume, true));
    volume.rest = volume.size.value == 0;
    recipe.storage.lvm.volumes.push_back(std::move(volume));
  }
  return {};
}

// The table at a dotted section name, or null when the recipe has none.
Result<const toml::table*> find_table(const toml::table& root, std::string_view section,
                                      const recipes::TomlReader& reader) {
  const toml::table* table = &root;
  std::string walked;
  std::string_view rest = section;
  while (!rest.empty()) {
    auto dot = rest.find('.');
    std::string_view part = rest.substr(0, dot);
    walked += (walked.empty() ? "" : ".") + std::string(part);
    const toml::node* node = table->get(part);
    if (!node) return nullptr;
    if (!node->is_table()) return fail_at(reader.at(*node), "[{}] must be a table, found a value", walked);
    table = node->as_table();
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
  }
  return table;
}

// The names of a choice setting's values, from its row of the table.
std::string_view choice_name(std::string_view section, std::string_view key, size_t index) {
  for (const Setting& setting : kSettings)
    if (setting.info.section == section && setting.info.key == key) return choice_at(setting.info.choices, index);
  return {};
}

}  // namespace

std::string_view name_of(StorageLayout layout) {
  return choice_name("storage", "layout", static_cast<size_t>(layout));
}

std::string_view name_of(FilesystemType type) {
  return choice_name("storage.lvm.volumes", "filesystem", static_cast<size_t>(type));
}

std::span<const SettingInfo> recipe_settings() {
  static const auto infos = [] {
    std::vector<SettingInfo> out;
    for (const Setting& setting : kSettings) out.push_back(setting.info);
    return out;
  }();
  return infos;
}

std::span<const SectionInfo> recipe_sections() {
  static const auto infos = [] {
    std::vector<SectionInfo> out;
    for (const Section& section : kSections) out.push_back(section.info);
    return out;
  }();
  return infos;
}

std::string_view value_kind_name(ValueKind kind) {
  switch (kind) {
    case ValueKind::kString: return "string";
    case ValueKind::kStringList: return "array of strings";
    case ValueKind::kSize: return "size";
    case ValueKind::kInteger: return "integer";
    case ValueKind::kPath: return "path or URI";
    case ValueKind::kSizeOrRest: return "size or \"rest\"";
  }
  return "value";
}

namespace recipes {

Result<> bind_settings(const toml::table& root, const TomlReader& reader, Recipe& recipe) {
  std::vector<std::string_view> top_level;
  for (const Section& section : kSections)
    if (is_top_level(section)) top_level.push_back(section.info.name);
  for (const auto& [key, node] : root) {
    if (std::find(top_level.begin(), top_level.end(), key.str()) == top_level.end())
      return reader.unknown_key(key, "", top_level);
    if (!node.is_table())
      return fail_at(reader.at(node), "[{}] must be a table, found a value", key.str());
  }
  for (const Section& section : kSections) {
    std::string_view name = section.info.name;
    if (name == "customize") continue;
    if (section.parse_array) {
      auto dot = name.rfind('.');
      KILN_ASSIGN(const toml::table* parent, find_table(root, name.substr(0, dot), reader));
      if (const toml::node* node = parent ? parent->get(name.substr(dot + 1)) : nullptr)
        KILN_TRY(section.parse_array(*node, reader, recipe));
      continue;
    }
    KILN_ASSIGN(const toml::table* table, find_table(root, name, reader));
    if (table) KILN_TRY(check_keys(*table, name, reader));
    // A nested section is optional as a whole: its required keys are
    // required only when it is written.
    bool present = table != nullptr;
    if (section.presence && present) section.presence(recipe) = Located<bool>{true, reader.at(*table), true};
    KILN_TRY(bind_section(name, table, reader, recipe, !section.presence || present));
  }
  return {};
}

}  // namespace recipes
}  // namespace kiln
