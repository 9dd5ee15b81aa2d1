#include "recipes/customize_ops.h"

#include <algorithm>
#include <array>

#include "recipes/section_parsers.h"
#include "recipes/value_checks.h"

namespace kiln {
namespace {

using recipes::TomlReader;
using Steps = std::vector<CustomizeStep>;
using Parse = Result<> (*)(const toml::node& value, const TomlReader& reader, Steps& steps);

struct Operation {
  CustomizeOpInfo info;
  Parse parse;
};

Result<std::string> checked_string(const toml::node& node, const TomlReader& reader,
                                   std::string_view what, std::string (*check)(std::string_view)) {
  KILN_ASSIGN(auto value, reader.string(node, what));
  std::string problem = check(value.value);
  if (!problem.empty()) return fail_at(value.where, "{}: {}: {}", what, shown_value(value.value), problem);
  return value.value;
}

Result<> parse_packages(const toml::node& node, const TomlReader& reader, Steps& steps) {
  KILN_ASSIGN(auto list, reader.string_list(node, "customize.packages"));
  for (const auto& name : list.value) {
    std::string problem = check_package(name);
    if (!problem.empty())
      return fail_at(list.where, "customize.packages: {}: {}", shown_value(name), problem);
  }
  if (!list.value.empty()) steps.push_back({InstallPackages{list.value}, list.where});
  return {};
}

Result<> parse_locale(const toml::node& node, const TomlReader& reader, Steps& steps) {
  KILN_ASSIGN(auto locale, checked_string(node, reader, "customize.locale", check_locale));
  steps.push_back({SetLocale{locale}, reader.at(node)});
  return {};
}

Result<> parse_run(const toml::node& node, const TomlReader& reader, Steps& steps) {
  const auto* array = node.as_array();
  if (!array)
    return fail_at(reader.at(node), "customize.run: expected an array of commands or {{ script = \"FILE\" }} tables");
  for (const toml::node& item : *array) {
    if (const auto* command = item.as_string()) {
      if (command->get().empty()) return fail_at(reader.at(item), "customize.run: empty command");
      steps.push_back({RunCommand{command->get(), {}}, reader.at(item)});
      continue;
    }
    const auto* table = item.as_table();
    if (!table)
      return fail_at(reader.at(item), "customize.run: expected a command string or {{ script = \"FILE\" }}");
    for (const auto& [key, value] : *table) {
      if (key.str() != "script") {
        static constexpr std::array<std::string_view, 1> known = {"script"};
        return reader.unknown_key(key, "customize.run", known);
      }
    }
    const toml::node* script = table->get("script");
    if (!script) return fail_at(reader.at(item), "customize.run: a table entry needs script = \"FILE\"");
    KILN_ASSIGN(auto path, reader.existing_file(*script, "customize.run.script"));
    steps.push_back({RunCommand{{}, path}, reader.at(item)});
  }
  return {};
}

constexpr std::array kUserKeys = {
    UserKeyInfo{"name", "NAME", "Login name (required)."},
    UserKeyInfo{"uid", "NUMBER", "User id; default: the first free id from 1000."},
    UserKeyInfo{"comment", "TEXT", "The GECOS field."},
    UserKeyInfo{"shell", "PATH", "Login shell; default /bin/bash if present, else /bin/sh."},
    UserKeyInfo{"groups", "[GROUP, ...]", "Supplementary groups; each must exist in the image."},
    UserKeyInfo{"sudo", "true|false", "Member of the sudo group (the image needs the sudo package)."},
    UserKeyInfo{"password_file", "FILE", "File holding the password, stored hashed (yescrypt); "
                                         "default: the account has no password (locked)."},
    UserKeyInfo{"ssh_authorized_keys", "[KEY, ...]", "Public keys for ~/.ssh/authorized_keys."},
    UserKeyInfo{"ssh_authorized_keys_file", "FILE", "A host file appended to ~/.ssh/authorized_keys."},
};

std::vector<std::string_view> keys_of(auto const& table) {
  std::vector<std::string_view> keys;
  for (const auto& entry : table) keys.push_back(entry.key);
  return keys;
}

Result<AddUser> parse_user(const toml::table& table, const TomlReader& reader) {
  static const std::vector<std::string_view> known = keys_of(kUserKeys);
  for (const auto& [key, value] : table)
    if (std::find(known.begin(), known.end(), key.str()) == known.end())
      return reader.unknown_key(key, "[customize.users]", known);
  AddUser user;
  const toml::node* name = table.get("name");
  if (!name) return fail_at(reader.at(table), "customize.users: each user needs a name");
  KILN_ASSIGN(user.name, checked_string(*name, reader, "customize.users.name", check_user_name));
  if (const toml::node* uid = table.get("uid")) {
    KILN_ASSIGN(auto value, reader.integer(*uid, "customize.users.uid"));
    if (value.value < 1 || value.value > 60000)
      return fail_at(value.where, "customize.users.uid: expected 1 to 60000");
    user.uid = static_cast<uint32_t>(value.value);
  }
  if (const toml::node* comment = table.get("comment")) {
    KILN_ASSIGN(auto value, reader.string(*comment, "customize.users.comment"));
    if (value.value.find_first_of(":\n") != std::string::npos)
      return fail_at(value.where, "customize.users.comment: ':' and newlines are not allowed");
    user.comment = value.value;
  }
  if (const toml::node* shell = table.get("shell")) {
    KILN_ASSIGN(user.shell, checked_string(*shell, reader, "customize.users.shell", check_image_path));
  }
  if (const toml::node* groups = table.get("groups")) {
    KILN_ASSIGN(auto value, reader.string_list(*groups, "customize.users.groups"));
    for (const auto& group : value.value) {
      std::string problem = check_user_name(group);
      if (!problem.empty())
        return fail_at(value.where, "customize.users.groups: {}: {}", shown_value(group), problem);
    }
    user.groups = value.value;
  }
  if (const toml::node* sudo = table.get("sudo")) {
    KILN_ASSIGN(user.sudo, reader.boolean(*sudo, "customize.users.sudo"));
  }
  if (const toml::node* file = table.get("password_file")) {
    KILN_ASSIGN(user.password_file, reader.existing_file(*file, "customize.users.password_file"));
  }
  if (const toml::node* keys = table.get("ssh_authorized_keys")) {
    KILN_ASSIGN(auto value, reader.string_list(*keys, "customize.users.ssh_authorized_keys"));
    for (const auto& key : value.value)
      if (key.find('\n') != std::string::npos || key.find(' ') == std::string::npos)
        return fail_at(value.where,
                       "customize.users.ssh_authorized_keys: expected one key per item, like "
                       "\"ssh-ed25519 AAAA... comment\"");
    user.ssh_authorized_keys = value.value;
  }
  if (const toml::node* file = table.get("ssh_authorized_keys_file")) {
    KILN_ASSIGN(user.ssh_authorized_keys_file,
                reader.existing_file(*file, "customize.users.ssh_authorized_keys_file"));
  }
  return user;
}

Result<> parse_users(const toml::node& node, const TomlReader& reader, Steps& steps) {
  const auto* array = node.as_array();
  if (!array) return fail_at(reader.at(node), "customize.users: expected [[customize.users]] tables");
  std::vector<std::string> seen;
  for (const toml::node& item : *array) {
    KILN_ASSIGN(const toml::table* table, reader.table(item, "customize.users"));
    KILN_ASSIGN(AddUser user, parse_user(*table, reader));
    if (std::find(seen.begin(), seen.end(), user.name) != seen.end())
      return fail_at(reader.at(item), "customize.users: user \"{}\" is listed twice", user.name);
    seen.push_back(user.name);
    steps.push_back({std::move(user), reader.at(item)});
  }
  return {};
}

Result<> parse_root_password(const toml::node& node, const TomlReader& reader, Steps& steps) {
  KILN_ASSIGN(auto path, reader.existing_file(node, "customize.root_password_file"));
  steps.push_back({SetRootPassword{path}, reader.at(node)});
  return {};
}

Result<> parse_hostname(const toml::node& node, const TomlReader& reader, Steps& steps) {
  KILN_ASSIGN(auto name, checked_string(node, reader, "customize.hostname", check_hostname));
  steps.push_back({SetHostname{name}, reader.at(node)});
  return {};
}

Result<> parse_timezone(const toml::node& node, const TomlReader& reader, Steps& steps) {
  KILN_ASSIGN(auto zone, checked_string(node, reader, "customize.timezone", check_timezone));
  steps.push_back({SetTimezone{zone}, reader.at(node)});
  return {};
}

constexpr std::array kFileActions = {
    FileActionInfo{"content", "TEXT", "Write TEXT as the file, creating or replacing it."},
    FileActionInfo{"copy", "HOST-FILE", "Copy a host file in (relative to the recipe)."},
    FileActionInfo{"append_line", "LINE",
                   "Append LINE (and a newline) unless the file already has that line; creates the file."},
    FileActionInfo{"delete", "true", "Delete the path; a directory is deleted with its contents."},
    FileActionInfo{"symlink", "TARGET", "Make the path a symbolic link to TARGET."},
    FileActionInfo{"mkdir", "true", "Create the directory and any missing parents."},
};

constexpr std::array<std::string_view, 3> kFileAttributes = {"path", "mode", "owner"};

Result<FileOperation> parse_file(const toml::table& table, const TomlReader& reader) {
  std::vector<std::string_view> known = keys_of(kFileActions);
  known.insert(known.end(), kFileAttributes.begin(), kFileAttributes.end());
  for (const auto& [key, value] : table)
    if (std::find(known.begin(), known.end(), key.str()) == known.end())
      return reader.unknown_key(key, "[customize.files]", known);
  FileOperation op;
  const toml::node* path = table.get("path");
  if (!path) return fail_at(reader.at(table), "customize.files: each entry needs a path");
  KILN_ASSIGN(op.path, checked_string(*path, reader, "customize.files.path", check_image_path));

  const toml::node* action_node = nullptr;
  std::string_view action_key;
  for (const FileActionInfo& action : kFileActions) {
    const toml::node* node = table.get(action.key);
    if (!node) continue;
    if (action_node)
      return fail_at(reader.at(*node), "customize.files: conflicting actions for {}: '{}' and '{}' (one per entry)",
                     op.path, action_key, action.key);
    action_node = node;
    action_key = action.key;
  }
  std::string what = fmt::format("customize.files.{}", action_key);
  if (action_key == "content" || action_key == "append_line" || action_key == "symlink") {
    KILN_ASSIGN(auto text, reader.string(*action_node, what));
    op.content = text.value;
    op.action = action_key == "content"       ? FileOperation::Action::kWrite
                : action_key == "append_line" ? FileOperation::Action::kAppendLine
                                              : FileOperation::Action::kSymlink;
    if (op.action == FileOperation::Action::kAppendLine && op.content.find('\n') != std::string::npos)
      return fail_at(text.where, "{}: one line, without a newline", what);
    if (op.action == FileOperation::Action::kSymlink && op.content.empty())
      return fail_at(text.where, "{}: empty link target", what);
    if (std::string problem = check_text_line(op.content);
        op.action == FileOperation::Action::kSymlink && !problem.empty())
      return fail_at(text.where, "{}: {}: {}", what, shown_value(op.content), problem);
  } else if (action_key == "copy") {
    KILN_ASSIGN(op.source, reader.existing_file(*action_node, what));
    op.action = FileOperation::Action::kCopy;
  } else if (action_key == "delete" || action_key == "mkdir") {
    KILN_ASSIGN(bool yes, reader.boolean(*action_node, what));
    if (!yes) return fail_at(reader.at(*action_node), "{}: only 'true' makes sense here", what);
    op.action = action_key == "delete" ? FileOperation::Action::kDelete : FileOperation::Action::kMkdir;
  }
  if (const toml::node* mode = table.get("mode")) {
    KILN_ASSIGN(op.mode, reader.mode(*mode, "customize.files.mode"));
  }
  if (const toml::node* owner = table.get("owner")) {
    KILN_ASSIGN(auto text, reader.string(*owner, "customize.files.owner"));
    op.owner = text.value;
  }
  bool has_attributes = op.mode || op.owner;
  if (op.action == FileOperation::Action::kAttributesOnly && !has_attributes)
    return fail_at(reader.at(table), "customize.files: {} has no action: give one of content, copy, "
                                     "append_line, delete, symlink, mkdir, or mode/owner", op.path);
  if (op.action == FileOperation::Action::kDelete && has_attributes)
    return fail_at(reader.at(table), "customize.files: {}: 'delete' conflicts with mode/owner", op.path);
  return op;
}

Result<> parse_files(const toml::node& node, const TomlReader& reader, Steps& steps) {
  const auto* array = node.as_array();
  if (!array) return fail_at(reader.at(node), "customize.files: expected [[customize.files]] tables");
  for (const toml::node& item : *array) {
    KILN_ASSIGN(const toml::table* table, reader.table(item, "customize.files"));
    KILN_ASSIGN(FileOperation op, parse_file(*table, reader));
    steps.push_back({std::move(op), reader.at(item)});
  }
  return {};
}

const std::array kOperations = {
    Operation{{"packages", "[PACKAGE, ...]", "packages = [\"vim-tiny\", \"curl\"]",
               "Install packages with apt-get inside the image, after the bootstrap (changing them "
               "does not re-run the bootstrap).",
               CustomizePhase::kInImage},
              parse_packages},
    Operation{{"locale", "LOCALE", "locale = \"en_US.UTF-8\"",
               "Set the system locale; locales other than C.UTF-8 are generated with locale-gen "
               "(the locales package is installed when needed).",
               CustomizePhase::kInImage},
              parse_locale},
    Operation{{"run", "[COMMAND | { script = FILE }, ...]",
               "run = [\"apt-get clean\", { script = \"setup.sh\" }]",
               "Run shell commands (or a host script, copied in) inside the image at bake time, "
               "in order, as root, with the network of the host.",
               CustomizePhase::kInImage},
              parse_run},
    Operation{{"users", "[[customize.users]] tables",
               "[[customize.users]]\nname = \"alice\"\nsudo = true\nssh_authorized_keys = [\"ssh-ed25519 AAAA... alice\"]",
               "Create users with groups, sudo rights, passwords and ssh authorized keys.",
               CustomizePhase::kOffline},
              parse_users},
    Operation{{"root_password_file", "FILE", "root_password_file = \"root.pw\"",
               "Set root's password from the first line of FILE, stored hashed (yescrypt). "
               "The password never appears in logs or the manifest.",
               CustomizePhase::kOffline},
              parse_root_password},
    Operation{{"hostname", "NAME", "hostname = \"web1\"",
               "Set /etc/hostname and the 127.0.1.1 line of /etc/hosts.", CustomizePhase::kOffline},
              parse_hostname},
    Operation{{"timezone", "ZONE", "timezone = \"Europe/Paris\"",
               "Set /etc/localtime and /etc/timezone (the image needs tzdata for zones other than UTC).",
               CustomizePhase::kOffline},
              parse_timezone},
    Operation{{"files", "[[customize.files]] tables",
               "[[customize.files]]\npath = \"/etc/motd\"\ncontent = \"baked by kiln\\n\"\nmode = \"0644\"",
               "Write, copy in, append to, delete, link or create files and directories, and set "
               "their mode and owner; applied in the order written.",
               CustomizePhase::kOffline},
              parse_files},
};

}  // namespace

std::span<const CustomizeOpInfo> customize_operations() {
  static const auto infos = [] {
    std::vector<CustomizeOpInfo> out;
    for (const Operation& op : kOperations) out.push_back(op.info);
    return out;
  }();
  return infos;
}

std::span<const FileActionInfo> file_actions() { return kFileActions; }
std::span<const UserKeyInfo> user_keys() { return kUserKeys; }

namespace recipes {

Result<> parse_customize(const toml::table* section, const TomlReader& reader,
                         CustomizeSection& customize) {
  if (!section) return {};
  static const std::vector<std::string_view> known = [] {
    std::vector<std::string_view> keys;
    for (const Operation& op : kOperations) keys.push_back(op.info.key);
    return keys;
  }();
  for (const auto& [key, value] : *section)
    if (std::find(known.begin(), known.end(), key.str()) == known.end())
      return reader.unknown_key(key, "customize", known);
  for (const Operation& op : kOperations)
    if (const toml::node* node = section->get(op.info.key))
      KILN_TRY(op.parse(*node, reader, customize.steps));
  return {};
}

}  // namespace recipes
}  // namespace kiln
