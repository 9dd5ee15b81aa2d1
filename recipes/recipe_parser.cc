#include "recipes/recipe_parser.h"

#include <algorithm>
#include <array>
#include <regex>
#include <sstream>

#include "base/files.h"
#include "base/hash.h"
#include "recipes/section_parsers.h"

namespace kiln {
namespace {

using recipes::TomlReader;

// Moves every value of `from` into `into`, recursing where both hold tables,
// so "--set customize.hostname=x" replaces one key and keeps its siblings.
Result<> merge_into(toml::table& into, toml::table& from, const std::string& origin) {
  for (auto& [key, node] : from) {
    toml::node* existing = into.get(key.str());
    if (existing && existing->is_table() && node.is_table()) {
      KILN_TRY(merge_into(*existing->as_table(), *node.as_table(), origin));
      continue;
    }
    if (existing && existing->is_table() != node.is_table() && node.is_table())
      return fail(ErrorKind::kBadInput, "{}: '{}' holds a value, not a table", origin, key.str());
    node.visit([&, &name = key](auto&& value) { into.insert_or_assign(name, std::move(value)); });
  }
  return {};
}

std::string toml_quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

Result<> apply_override(toml::table& root, const std::string& text) {
  std::string origin = "--set " + text;
  auto eq = text.find('=');
  static const std::regex key_pattern("[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*");
  std::string key = eq == std::string::npos ? text : text.substr(0, eq);
  if (eq == std::string::npos || !std::regex_match(key, key_pattern))
    return fail(ErrorKind::kBadInput, "{}: expected KEY=VALUE with a dotted key, e.g. customize.hostname=web1",
                origin);
  std::string value = text.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse(std::string_view(key + " = " + value), std::string_view(origin));
  } catch (const toml::parse_error&) {
    // A bare word such as web1 is not TOML; take it as a string.
    try {
      parsed = toml::parse(std::string_view(key + " = " + toml_quote(value)), std::string_view(origin));
    } catch (const toml::parse_error& error) {
      return fail(ErrorKind::kBadInput, "{}: {}", origin, error.description());
    }
  }
  return merge_into(root, parsed, origin);
}

bool is_valid_variant(std::string_view tool, std::string_view variant) {
  static constexpr std::array<std::string_view, 10> mmdebstrap = {
      "extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important",
      "debootstrap", "standard"};
  static constexpr std::array<std::string_view, 4> debootstrap = {"minbase", "buildd", "fakechroot",
                                                                  "default"};
  auto contains = [&](const auto& list) { return std::find(list.begin(), list.end(), variant) != list.end(); };
  return tool == "debootstrap" ? contains(debootstrap) : contains(mmdebstrap);
}

// " (line 7)", " (from --set)" or " (the default)": where a related value came from.
template <class T>
std::string origin_of(const Located<T>& value) {
  if (!value.set) return " (the default)";
  if (value.where.line > 0) return fmt::format(" (line {})", value.where.line);
  return fmt::format(" ({})", value.where.file);
}

// The user's own value if they wrote one, else the other related value.
template <class A, class B>
const Location& blame(const Located<A>& first, const Located<B>& second) {
  return first.set ? first.where : second.where;
}

// Rules that involve more than one key.
Result<> check_consistency(const Recipe& recipe) {
  const BootstrapSection& b = recipe.bootstrap;
  if (b.from.set && !b.from.value.empty()) {
    for (const Located<std::string>* other : {&b.suite, &b.variant, &b.mirror, &b.tool}) {
      if (!other->set) continue;
      return fail_at(b.from.where,
                     "bootstrap.from conflicts with the bootstrap setting at {}: an imported rootfs "
                     "is not bootstrapped; remove one of them",
                     other->where.to_string());
    }
    for (const Located<std::vector<std::string>>* other :
         {&b.packages, &b.components, &b.apt_options, &b.initramfs_modules}) {
      if (!other->set) continue;
      return fail_at(b.from.where,
                     "bootstrap.from conflicts with the bootstrap setting at {}: an imported rootfs "
                     "is not bootstrapped; install extra packages with customize.packages",
                     other->where.to_string());
    }
  } else {
    if (b.suite.value.empty())
      return fail_at(Location{recipe.file.string(), 0, 0},
                     "missing required key bootstrap.suite (or bootstrap.from to import a rootfs)");
    if (!is_valid_variant(b.tool.value, b.variant.value))
      return fail_at(b.variant.where.line ? b.variant.where : b.tool.where,
                     "bootstrap.variant \"{}\" is not a variant of {}", b.variant.value, b.tool.value);
    if (b.tool.value == "debootstrap" && !b.apt_options.value.empty())
      return fail_at(b.apt_options.where, "bootstrap.apt_options are mmdebstrap's --aptopt: debootstrap takes none");
    if (b.tool.value == "debootstrap" && !b.initramfs_modules.value.empty())
      return fail_at(b.initramfs_modules.where,
                     "bootstrap.initramfs_modules are set through mmdebstrap's hooks: debootstrap takes none");
  }
  const StorageSection& s = recipe.storage;
  if (s.layout.value == StorageLayout::kPlain) {
    for (std::string_view format : {"disk", "qcow2"})
      if (recipe.wants_output(format))
        return fail_at(blame(recipe.output.formats, s.layout),
                       "output format \"{}\" needs a partitioned disk, but storage.layout is "
                       "\"plain\"{}: use layout \"gpt\" or drop \"{}\" from output.formats",
                       format, origin_of(s.layout), format);
  }
  // NAME.xl.cfg boots root.img, or else disk.raw, with the kernel beside it,
  // as Xen PV does.
  if (recipe.wants_output("xen")) {
    if (!recipe.wants_output("kernel"))
      return fail_at(recipe.output.formats.where,
                     "output format \"xen\" describes a domain booting with vmlinuz and initrd.img: add \"kernel\" "
                     "to output.formats");
    if (!recipe.wants_output("partitions") && !recipe.wants_output("disk") && s.layout.value != StorageLayout::kPlain)
      return fail_at(recipe.output.formats.where,
                     "output format \"xen\" describes a domain booting root.img or disk.raw: add \"partitions\" or "
                     "\"disk\" to output.formats");
  }
  if (recipe.wants_output("qcow2") && !recipe.wants_output("disk"))
    return fail_at(recipe.output.formats.where,
                   "output format \"qcow2\" is converted from \"disk\": add \"disk\" to output.formats");
  return {};
}

}  // namespace

bool Recipe::wants_output(std::string_view format) const {
  const auto& formats = output.formats.value;
  return std::find(formats.begin(), formats.end(), format) != formats.end();
}

Result<Recipe> parse_recipe(std::string_view text, const std::string& file_name,
                            const std::filesystem::path& base_dir,
                            std::span<const std::string> overrides) {
  toml::table root;
  try {
    root = toml::parse(text, std::string_view(file_name));
  } catch (const toml::parse_error& error) {
    const auto& begin = error.source().begin;
    return fail_at(Location{file_name, static_cast<int>(begin.line), static_cast<int>(begin.column)},
                   "{}", error.description());
  }
  for (const std::string& override_text : overrides) KILN_TRY(apply_override(root, override_text));

  TomlReader reader(file_name, base_dir);
  Recipe recipe;
  recipe.file = file_name;
  recipe.base_dir = base_dir;
  KILN_TRY(recipes::bind_settings(root, reader, recipe));
  KILN_TRY(recipes::parse_customize(root["customize"].as_table(), reader, recipe.customize));
  KILN_TRY(check_consistency(recipe));
  KILN_TRY(recipes::check_storage(recipe));

  std::ostringstream canonical;
  canonical << toml::toml_formatter{root};
  recipe.hash = sha256_hex(canonical.str());
  return recipe;
}

Result<Recipe> load_recipe(const std::filesystem::path& file, std::span<const std::string> overrides) {
  auto text = read_file(file);
  if (!text) {
    Error error = text.error();
    error.kind = ErrorKind::kBadInput;
    return std::unexpected(std::move(error));
  }
  std::filesystem::path base = file.parent_path();
  if (base.empty()) base = ".";
  return parse_recipe(*text, file.string(), base, overrides);
}

}  // namespace kiln
