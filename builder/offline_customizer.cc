#include "builder/offline_customizer.h"

#include <sys/stat.h>

#include "base/files.h"
#include "builder/account_files.h"
#include "crypto/password.h"

namespace kiln {
namespace {

// Everything an operation needs; one per bake.
struct Context {
  const Plan& plan;
  Ext4Image& fs;

  Ext4Attributes attributes(uint32_t mode, uint32_t uid = 0, uint32_t gid = 0) const {
    return {mode, uid, gid, plan.timestamp};
  }
};

std::string parent_of(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == 0 ? "/" : std::string(path.substr(0, slash));
}

Result<bool> exists(Ext4Image& fs, std::string_view path) {
  KILN_ASSIGN(auto st, fs.stat(path));
  return st.has_value();
}

Result<> write_text(Context& c, std::string_view path, std::string_view content, uint32_t mode = 0644) {
  KILN_TRY(make_parents(c.fs, path, c.plan.timestamp));
  return c.fs.write_file(path, content, c.attributes(mode));
}

Result<AccountFiles> load_accounts(Ext4Image& fs, int64_t timestamp) {
  AccountFiles files;
  KILN_ASSIGN(std::string passwd, fs.read_file("/etc/passwd"));
  KILN_ASSIGN(std::string group, fs.read_file("/etc/group"));
  KILN_ASSIGN(std::string shadow, fs.read_file("/etc/shadow"));
  files.passwd = ColonFile::parse(passwd);
  files.group = ColonFile::parse(group);
  files.shadow = ColonFile::parse(shadow);
  KILN_ASSIGN(bool has_gshadow, exists(fs, "/etc/gshadow"));
  if (has_gshadow) {
    KILN_ASSIGN(std::string gshadow, fs.read_file("/etc/gshadow"));
    files.gshadow = ColonFile::parse(gshadow);
  }
  files.days_since_epoch = timestamp / 86400;
  return files;
}

Result<> save_accounts(Context& c, const AccountFiles& files) {
  KILN_TRY(c.fs.write_file("/etc/passwd", files.passwd.to_string(), c.attributes(0644)));
  KILN_TRY(c.fs.write_file("/etc/group", files.group.to_string(), c.attributes(0644)));
  // shadow files keep the owner and mode the image gave them (root:shadow 0640)
  KILN_TRY(c.fs.write_file("/etc/shadow", files.shadow.to_string(), c.attributes(0640)));
  return c.fs.write_file("/etc/gshadow", files.gshadow.to_string(), c.attributes(0640));
}

std::string salt_seed(const Plan& plan, std::string_view user) {
  return plan.recipe->image.name.value + "/" + plan.recipe->hash + "/" + std::string(user);
}

Result<std::string> hashed_password_from(const std::filesystem::path& file, const Plan& plan,
                                         std::string_view user) {
  KILN_ASSIGN(std::string password, read_password_file(file.string()));
  auto hash = hash_password(password, salt_seed(plan, user));
  wipe(password);
  return hash;
}

// --- one function per operation ---

Result<> set_hostname(Context& c, const SetHostname& op) {
  KILN_TRY(write_text(c, "/etc/hostname", op.hostname + "\n"));
  std::string hosts;
  KILN_ASSIGN(bool has_hosts, exists(c.fs, "/etc/hosts"));
  if (has_hosts) {
    KILN_ASSIGN(hosts, c.fs.read_file("/etc/hosts"));
  } else {
    hosts = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
            "ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n";
  }
  std::string out;
  bool replaced = false;
  size_t start = 0;
  while (start < hosts.size()) {
    size_t end = hosts.find('\n', start);
    if (end == std::string::npos) end = hosts.size();
    std::string line = hosts.substr(start, end - start);
    if (line.starts_with("127.0.1.1")) {
      if (!replaced) out += "127.0.1.1\t" + op.hostname + "\n";
      replaced = true;
    } else {
      out += line + "\n";
    }
    start = end + 1;
  }
  if (!replaced) {
    size_t after_localhost = out.find('\n', out.find("127.0.0.1"));
    std::string line = "127.0.1.1\t" + op.hostname + "\n";
    if (after_localhost == std::string::npos) out = line + out;
    else out.insert(after_localhost + 1, line);
  }
  return write_text(c, "/etc/hosts", out);
}

Result<> set_timezone(Context& c, const SetTimezone& op) {
  std::string zone = op.zone == "UTC" ? "Etc/UTC" : op.zone;
  std::string zone_file = "/usr/share/zoneinfo/" + zone;
  KILN_ASSIGN(bool has_zone, exists(c.fs, zone_file));
  KILN_ASSIGN(bool has_localtime, exists(c.fs, "/etc/localtime"));
  if (has_localtime) KILN_TRY(c.fs.remove("/etc/localtime"));
  if (has_zone) {
    KILN_TRY(c.fs.make_symlink("/etc/localtime", zone_file, c.attributes(0777)));
  } else if (zone != "Etc/UTC") {
    return fail(ErrorKind::kBadInput,
                "customize.timezone: {} is not in the image: add \"tzdata\" to customize.packages",
                zone_file);
  }
  // Without tzdata and /etc/localtime, glibc and systemd both use UTC.
  return write_text(c, "/etc/timezone", zone + "\n");
}

Result<> set_locale(Context& c, const SetLocale& op) {
  return write_text(c, "/etc/default/locale", "LANG=" + op.locale + "\n");
}

Result<> set_root_password(Context& c, const SetRootPassword& op) {
  KILN_ASSIGN(std::string hash, hashed_password_from(op.password_file, c.plan, "root"));
  KILN_ASSIGN(AccountFiles accounts, load_accounts(c.fs, c.plan.timestamp));
  KILN_TRY(accounts.set_password("root", hash));
  return save_accounts(c, accounts);
}

// Copies /etc/skel into a new home directory, owned by the user.
Result<> copy_skeleton(Context& c, const std::string& from, const std::string& to, uint32_t uid,
                       uint32_t gid) {
  KILN_ASSIGN(auto names, c.fs.list_directory(from));
  for (const std::string& name : names) {
    std::string source = from + "/" + name;
    std::string target = to + "/" + name;
    KILN_ASSIGN(auto st, c.fs.stat(source));
    if (!st) continue;
    if (st->type == EntryType::kDirectory) {
      KILN_TRY(c.fs.make_directory(target, c.attributes(st->mode, uid, gid)));
      KILN_TRY(copy_skeleton(c, source, target, uid, gid));
    } else if (st->type == EntryType::kSymlink) {
      KILN_TRY(c.fs.make_symlink(target, st->symlink_target, c.attributes(0777, uid, gid)));
    } else if (st->type == EntryType::kFile) {
      KILN_ASSIGN(std::string content, c.fs.read_file(source));
      KILN_TRY(c.fs.write_file(target, content, c.attributes(st->mode, uid, gid)));
    }
  }
  return {};
}

Result<> add_user(Context& c, const AddUser& op) {
  KILN_ASSIGN(AccountFiles accounts, load_accounts(c.fs, c.plan.timestamp));
  NewUser user;
  user.name = op.name;
  user.uid = op.uid;
  user.comment = op.comment;
  user.home = "/home/" + op.name;
  user.groups = op.groups;
  if (op.sudo) {
    KILN_ASSIGN(bool has_sudo, exists(c.fs, "/usr/bin/sudo"));
    if (!has_sudo || !accounts.group.find("sudo"))
      return fail(ErrorKind::kBadInput,
                  "customize.users: {} has sudo = true, but the image has no sudo: add \"sudo\" to "
                  "customize.packages or bootstrap.packages",
                  op.name);
    if (std::find(user.groups.begin(), user.groups.end(), "sudo") == user.groups.end())
      user.groups.push_back("sudo");
  }
  if (op.shell.empty()) {
    KILN_ASSIGN(bool has_bash, exists(c.fs, "/bin/bash"));
    user.shell = has_bash ? "/bin/bash" : "/bin/sh";
  } else {
    user.shell = op.shell;
    KILN_ASSIGN(bool has_shell, exists(c.fs, user.shell));
    if (!has_shell)
      return fail(ErrorKind::kBadInput, "customize.users: {}: shell {} is not in the image", op.name,
                  user.shell);
  }
  user.password_hash = "*";
  if (!op.password_file.empty()) {
    KILN_ASSIGN(user.password_hash, hashed_password_from(op.password_file, c.plan, op.name));
  }
  auto ids = accounts.add_user(user);
  if (!ids) return fail(ErrorKind::kBadInput, "customize.users: {}", ids.error().message);
  auto [uid, gid] = *ids;
  KILN_TRY(save_accounts(c, accounts));

  KILN_TRY(make_parents(c.fs, user.home, c.plan.timestamp));
  KILN_ASSIGN(bool home_exists, exists(c.fs, user.home));
  if (!home_exists) KILN_TRY(c.fs.make_directory(user.home, c.attributes(0700, uid, gid)));
  KILN_ASSIGN(bool has_skel, exists(c.fs, "/etc/skel"));
  if (has_skel) KILN_TRY(copy_skeleton(c, "/etc/skel", user.home, uid, gid));

  std::string keys;
  for (const std::string& key : op.ssh_authorized_keys) keys += key + "\n";
  if (!op.ssh_authorized_keys_file.empty()) {
    KILN_ASSIGN(std::string more, read_file(op.ssh_authorized_keys_file));
    if (!more.empty() && more.back() != '\n') more += '\n';
    keys += more;
  }
  if (!keys.empty()) {
    std::string ssh_dir = user.home + "/.ssh";
    KILN_ASSIGN(bool ssh_exists, exists(c.fs, ssh_dir));
    if (!ssh_exists) KILN_TRY(c.fs.make_directory(ssh_dir, c.attributes(0700, uid, gid)));
    KILN_TRY(c.fs.write_file(ssh_dir + "/authorized_keys", keys, c.attributes(0600, uid, gid)));
  }
  return {};
}

Result<> apply_attributes(Context& c, const FileOperation& op) {
  if (op.mode) KILN_TRY(c.fs.set_mode(op.path, *op.mode));
  if (op.owner) {
    KILN_ASSIGN(AccountFiles accounts, load_accounts(c.fs, c.plan.timestamp));
    auto ids = accounts.resolve_owner(*op.owner);
    if (!ids) return fail(ErrorKind::kBadInput, "customize.files: {}: {}", op.path, ids.error().message);
    KILN_TRY(c.fs.set_owner(op.path, ids->first, ids->second));
  }
  return {};
}

Result<> make_directory_tree(Context& c, const std::string& path) {
  KILN_ASSIGN(auto st, c.fs.stat(path));
  if (st && st->type != EntryType::kDirectory)
    return fail(ErrorKind::kBadInput, "customize.files: {} exists and is not a directory", path);
  if (st) return {};
  KILN_TRY(make_parents(c.fs, path, c.plan.timestamp));
  return c.fs.make_directory(path, c.attributes(0755));
}

Result<> file_operation(Context& c, const FileOperation& op) {
  using Action = FileOperation::Action;
  KILN_ASSIGN(auto existing, c.fs.stat(op.path));
  switch (op.action) {
    case Action::kAttributesOnly:
      if (!existing)
        return fail(ErrorKind::kBadInput, "customize.files: {}: no such file or directory in the image",
                    op.path);
      break;
    case Action::kWrite:
      KILN_TRY(write_text(c, op.path, op.content, op.mode.value_or(existing ? existing->mode : 0644)));
      break;
    case Action::kCopy: {
      KILN_ASSIGN(std::string content, read_file(op.source));
      struct stat st;
      uint32_t host_mode = ::stat(op.source.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
      KILN_TRY(write_text(c, op.path, content, op.mode.value_or(host_mode)));
      break;
    }
    case Action::kAppendLine: {
      std::string content;
      if (existing) {
        KILN_ASSIGN(content, c.fs.read_file(op.path));
      }
      bool present = content == op.content || content.starts_with(op.content + "\n") ||
                     content.find("\n" + op.content + "\n") != std::string::npos ||
                     content.ends_with("\n" + op.content);
      if (!present) {
        if (!content.empty() && content.back() != '\n') content += '\n';
        content += op.content + "\n";
        KILN_TRY(write_text(c, op.path, content, existing ? existing->mode : 0644));
      }
      break;
    }
    case Action::kDelete:
      if (existing) KILN_TRY(c.fs.remove(op.path, /*recursive=*/true));
      return {};
    case Action::kSymlink:
      if (existing) KILN_TRY(c.fs.remove(op.path, existing->type == EntryType::kDirectory));
      KILN_TRY(make_parents(c.fs, op.path, c.plan.timestamp));
      KILN_TRY(c.fs.make_symlink(op.path, op.content, c.attributes(0777)));
      // mode is meaningless on a symlink; owner applies to the link itself
      if (op.owner) {
        FileOperation owner_only = op;
        owner_only.mode.reset();
        return apply_attributes(c, owner_only);
      }
      return {};
    case Action::kMkdir:
      KILN_TRY(make_directory_tree(c, op.path));
      break;
  }
  return apply_attributes(c, op);
}

Result<> apply_step(Context& c, const CustomizeStep& step) {
  return std::visit(
      [&](const auto& op) -> Result<> {
        using Op = std::decay_t<decltype(op)>;
        if constexpr (std::is_same_v<Op, SetHostname>) return set_hostname(c, op);
        else if constexpr (std::is_same_v<Op, SetTimezone>) return set_timezone(c, op);
        else if constexpr (std::is_same_v<Op, SetLocale>) return set_locale(c, op);
        else if constexpr (std::is_same_v<Op, SetRootPassword>) return set_root_password(c, op);
        else if constexpr (std::is_same_v<Op, AddUser>) return add_user(c, op);
        else if constexpr (std::is_same_v<Op, FileOperation>) return file_operation(c, op);
        else
          return fail(ErrorKind::kFailed, "internal: an in-image step reached the offline customizer");
      },
      step.operation);
}

}  // namespace

Result<> make_parents(Ext4Image& fs, std::string_view path, int64_t mtime) {
  std::string parent = parent_of(path);
  if (parent == "/") return {};
  KILN_ASSIGN(auto st, fs.stat(parent));
  if (st) {
    if (st->type == EntryType::kDirectory) return {};
    return fail(ErrorKind::kBadInput, "{} is not a directory in the image", parent);
  }
  KILN_TRY(make_parents(fs, parent, mtime));
  return fs.make_directory(parent, Ext4Attributes{0755, 0, 0, mtime});
}

Result<> apply_offline_steps(const std::vector<CustomizeStep>& steps, const Plan& plan, Ext4Image& fs) {
  Context context{plan, fs};
  for (const CustomizeStep& step : steps) {
    auto done = apply_step(context, step);
    if (!done) {
      Error error = std::move(done).error();
      if (error.where.empty()) error.where = step.where;
      return std::unexpected(std::move(error));
    }
  }
  return {};
}

}  // namespace kiln
