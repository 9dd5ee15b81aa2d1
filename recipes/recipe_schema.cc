#include "recipes/recipe_schema.h"

#include <algorithm>
#include <array>
#include <variant>

#include "recipes/section_parsers.h"
#include "recipes/value_checks.h"

namespace kiln {
namespace {

using StringField = Located<std::string>& (*)(Recipe&);
using ListField = Located<std::vector<std::string>>& (*)(Recipe&);
using SizeField = Located<uint64_t>& (*)(Recipe&);
using IntegerField = Located<int64_t>& (*)(Recipe&);
using Field = std::variant<StringField, ListField, SizeField, IntegerField>;
// Returns what is wrong with one string value, or "" when it is fine.
using Check = std::string (*)(std::string_view value);

struct Setting {
  SettingInfo info;
  Field field;
  Check check = nullptr;
};

#define FIELD(member) [](Recipe& recipe) -> auto& { return recipe.member; }

const std::array kSettings = {
    // [image]
    Setting{{"image", "name", ValueKind::kString, "", "",
             "Image name: names the output files (NAME.xl.cfg) and the VM.", true},
            StringField{FIELD(image.name)}, check_image_name},
    Setting{{"image", "version", ValueKind::kString, "\"1.0\"", "",
             "Image version, recorded in manifest.json and published feeds."},
            StringField{FIELD(image.version)}},
    Setting{{"image", "description", ValueKind::kString, "\"\"", "", "One line about the image."},
            StringField{FIELD(image.description)}},
    Setting{{"image", "kernel_cmdline", ValueKind::kString, "\"console=tty0 console=ttyS0\"", "",
             "Kernel arguments after root=UUID=... ro, for every boot path."},
            StringField{FIELD(image.kernel_cmdline)}},
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
    Setting{{"bootstrap", "from", ValueKind::kPath, "\"\"", "",
             "Import this rootfs archive (.tar, .tar.gz, .tar.xz, .tar.zst, .cpio, .cpio.gz; a "
             "path or a file://, http:// or https:// URI) instead of bootstrapping."},
            StringField{FIELD(bootstrap.from)}},
    Setting{{"bootstrap", "arch", ValueKind::kString, "\"amd64\"", "amd64",
             "Debian architecture of the image."},
            StringField{FIELD(bootstrap.arch)}},
    // [storage]
    Setting{{"storage", "size", ValueKind::kSize, "\"2G\"", "",
             "Size of the disk image (disk.raw), or of root.img for the plain layout."},
            SizeField{FIELD(storage.size)}},
    Setting{{"storage", "layout", ValueKind::kString, "\"gpt\"", "gpt|plain",
             "gpt: a GPT disk with an EFI system partition and the root partition; plain: the "
             "root filesystem alone."},
            StringField{FIELD(storage.layout)}},
    Setting{{"storage", "filesystem", ValueKind::kString, "\"ext4\"", "ext4|ext3|ext2",
             "Root filesystem type."},
            StringField{FIELD(storage.filesystem)}},
    Setting{{"storage", "label", ValueKind::kString, "\"root\"", "",
             "Root filesystem label."},
            StringField{FIELD(storage.label)}, check_fs_label},
    Setting{{"storage", "esp_size", ValueKind::kSize, "\"128M\"", "",
             "Size of the EFI system partition (gpt layout)."},
            SizeField{FIELD(storage.esp_size)}},
    // [output]
    Setting{{"output", "formats", ValueKind::kStringList,
             "[\"disk\", \"partitions\", \"kernel\", \"xen\", \"libvirt\"]",
             "disk|partitions|kernel|qcow2|xen|libvirt",
             "Artifacts to write besides manifest.json: disk (disk.raw), partitions (root.img), "
             "kernel (vmlinuz, initrd.img), qcow2 (disk.qcow2), xen (NAME.xl.cfg), libvirt "
             "(NAME.libvirt.xml)."},
            ListField{FIELD(output.formats)}},
    Setting{{"output", "memory", ValueKind::kSize, "\"1G\"", "",
             "Memory of the VM described by NAME.xl.cfg and NAME.libvirt.xml."},
            SizeField{FIELD(output.memory)}},
    Setting{{"output", "vcpus", ValueKind::kInteger, "1", "",
             "Virtual CPUs of the VM described by NAME.xl.cfg and NAME.libvirt.xml."},
            IntegerField{FIELD(output.vcpus)}},
};

#undef FIELD

constexpr std::array<std::string_view, 5> kSections = {"image", "bootstrap", "storage", "customize",
                                                       "output"};

bool in_choices(std::string_view choices, std::string_view value) {
  while (!choices.empty()) {
    auto bar = choices.find('|');
    if (choices.substr(0, bar) == value) return true;
    if (bar == std::string_view::npos) break;
    choices.remove_prefix(bar + 1);
  }
  return false;
}

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
    return fail_at(where, "{}.{}: unknown value \"{}\": expected {}", info.section, info.key, value,
                   choices_text(info.choices));
  if (setting.check && !value.empty()) {
    std::string problem = setting.check(value);
    if (!problem.empty())
      return fail_at(where, "{}.{}: \"{}\": {}", info.section, info.key, value, problem);
  }
  return {};
}

Result<> assign(const Setting& setting, const toml::node& node, const recipes::TomlReader& reader,
                Recipe& recipe, bool from_user) {
  std::string what = fmt::format("{}.{}", setting.info.section, setting.info.key);
  Location default_place{reader.file(), 0, 0};
  auto finish = [&](auto& target, auto value) -> Result<> {
    target = std::move(value);
    if (!from_user) {
      target.set = false;
      target.where = default_place;
    }
    return {};
  };
  return std::visit(
      [&](auto field) -> Result<> {
        using F = decltype(field);
        if constexpr (std::is_same_v<F, StringField>) {
          KILN_ASSIGN(auto value, reader.string(node, what));
          KILN_TRY(check_value(setting, value.value, value.where));
          return finish(field(recipe), std::move(value));
        } else if constexpr (std::is_same_v<F, ListField>) {
          KILN_ASSIGN(auto value, reader.string_list(node, what));
          for (const auto& item : value.value) KILN_TRY(check_value(setting, item, value.where));
          return finish(field(recipe), std::move(value));
        } else if constexpr (std::is_same_v<F, SizeField>) {
          KILN_ASSIGN(auto value, reader.size(node, what));
          return finish(field(recipe), std::move(value));
        } else {
          KILN_ASSIGN(auto value, reader.integer(node, what));
          if (value.value <= 0) return fail_at(value.where, "{}: must be a positive integer", what);
          return finish(field(recipe), std::move(value));
        }
      },
      setting.field);
}

Result<> bind_default(const Setting& setting, const recipes::TomlReader& reader, Recipe& recipe) {
  std::string text = fmt::format("value = {}", setting.info.default_value);
  toml::table parsed = toml::parse(std::string_view(text), std::string_view("default"));
  return assign(setting, *parsed.get("value"), reader, recipe, false);
}

}  // namespace

std::span<const SettingInfo> recipe_settings() {
  static const auto infos = [] {
    std::vector<SettingInfo> out;
    for (const Setting& setting : kSettings) out.push_back(setting.info);
    return out;
  }();
  return infos;
}

std::span<const std::string_view> recipe_sections() { return kSections; }

std::string_view value_kind_name(ValueKind kind) {
  switch (kind) {
    case ValueKind::kString: return "string";
    case ValueKind::kStringList: return "array of strings";
    case ValueKind::kSize: return "size";
    case ValueKind::kInteger: return "integer";
    case ValueKind::kPath: return "path or URI";
  }
  return "value";
}

namespace recipes {

Result<> bind_settings(const toml::table& root, const TomlReader& reader, Recipe& recipe) {
  for (const auto& [key, node] : root) {
    if (std::find(kSections.begin(), kSections.end(), key.str()) == kSections.end())
      return reader.unknown_key(key, "", kSections);
    if (!node.is_table())
      return fail_at(reader.at(node), "[{}] must be a table, found a value", key.str());
  }
  for (std::string_view section : kSections) {
    if (section == "customize") continue;
    const toml::table* table = root[section].as_table();
    std::vector<std::string_view> known;
    for (const Setting& setting : kSettings)
      if (setting.info.section == section) known.push_back(setting.info.key);
    if (table) {
      for (const auto& [key, node] : *table)
        if (std::find(known.begin(), known.end(), key.str()) == known.end())
          return reader.unknown_key(key, section, known);
    }
    for (const Setting& setting : kSettings) {
      if (setting.info.section != section) continue;
      const toml::node* node = table ? table->get(setting.info.key) : nullptr;
      if (node) {
        KILN_TRY(assign(setting, *node, reader, recipe, true));
      } else if (setting.info.required) {
        Location where = table ? reader.at(*table) : Location{reader.file(), 0, 0};
        return fail_at(where, "missing required key {}.{} ({})", section, setting.info.key,
                       setting.info.doc);
      } else if (!setting.info.default_value.empty()) {
        KILN_TRY(bind_default(setting, reader, recipe));
      }
    }
  }
  return {};
}

}  // namespace recipes
}  // namespace kiln
