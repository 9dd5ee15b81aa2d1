// RecipeSchema: the one table of recipe keys. Each entry names its section
// and key, its kind of value, its default, its allowed choices and its doc,
// and binds it to its field in Recipe. The parser, `kiln help recipe` and the
// generated docs all read this table, so adding an option touches one place.
// Sections nest ([storage.luks] inside [storage]) and may be arrays of
// tables ([[storage.lvm.volumes]]); their keys are rows of the same table.
// The [customize] section is the table in recipes/customize_ops.h.
#pragma once

#include <span>
#include <string_view>

namespace kiln {

enum class ValueKind { kString, kStringList, kSize, kInteger, kPath, kSizeOrRest };

// What the docs and --help show of a setting.
struct SettingInfo {
  std::string_view section;
  std::string_view key;
  ValueKind kind;
  std::string_view default_value;  // as written in TOML; empty: no default
  std::string_view choices;        // "a|b|c"; empty: free-form
  std::string_view doc;
  bool required = false;
};

std::span<const SettingInfo> recipe_settings();

// A section as the docs present it.
struct SectionInfo {
  std::string_view name;  // dotted for a nested one: "storage.luks"
  std::string_view doc;   // what writing the section does; "" for the top-level ones
  bool array = false;     // [[name]]: a list of tables
};

// The recipe sections, nested ones after their parent, in the order the
// docs present them.
std::span<const SectionInfo> recipe_sections();

std::string_view value_kind_name(ValueKind kind);

}  // namespace kiln
