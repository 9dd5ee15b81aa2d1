#include "builder/image_chroot.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <optional>

#include "base/files.h"
#include "base/subprocess.h"
#include "base/tree_root.h"
#include "builder/bootstrap.h"
#include "formats/tree/dpkg_status.h"
#include "formats/tree/rootfs_tree.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// Paths prepared before fork: the child may only make system calls.
struct ChrootPaths {
  std::string root, proc, sys, dev, pts, shm, ptmx;
  std::array<std::string, 6> device_nodes;
  std::array<std::pair<std::string, std::string>, 4> dev_links;
};

struct DeviceNode {
  const char* name;
  unsigned major;
  unsigned minor;
};

constexpr std::array<DeviceNode, 6> kDevices = {{{"null", 1, 3},
                                                 {"zero", 1, 5},
                                                 {"full", 1, 7},
                                                 {"random", 1, 8},
                                                 {"urandom", 1, 9},
                                                 {"tty", 5, 0}}};

ChrootPaths paths_for(const fs::path& root) {
  ChrootPaths p;
  p.root = root.string();
  p.proc = (root / "proc").string();
  p.sys = (root / "sys").string();
  p.dev = (root / "dev").string();
  p.pts = (root / "dev/pts").string();
  p.shm = (root / "dev/shm").string();
  p.ptmx = (root / "dev/ptmx").string();
  for (size_t i = 0; i < kDevices.size(); ++i) p.device_nodes[i] = (root / "dev" / kDevices[i].name).string();
  p.dev_links = {{{"/proc/self/fd", (root / "dev/fd").string()},
                  {"/proc/self/fd/0", (root / "dev/stdin").string()},
                  {"/proc/self/fd/1", (root / "dev/stdout").string()},
                  {"/proc/self/fd/2", (root / "dev/stderr").string()}}};
  return p;
}

// Runs in the child between fork and exec.
bool enter_image(const ChrootPaths& p) {
  if (::unshare(CLONE_NEWNS) != 0) return false;
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return false;
  if (::mount("proc", p.proc.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) return false;
  if (::mount("sysfs", p.sys.c_str(), "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, nullptr) != 0)
    return false;
  if (::mount("tmpfs", p.dev.c_str(), "tmpfs", MS_NOSUID, "mode=0755") != 0) return false;
  // mknod applies the umask; apt's unprivileged _apt user must still be
  // able to write /dev/null (apt-key's `command -v gpgv >/dev/null`).
  for (size_t i = 0; i < kDevices.size(); ++i)
    if (::mknod(p.device_nodes[i].c_str(), S_IFCHR | 0666, makedev(kDevices[i].major, kDevices[i].minor)) != 0 ||
        ::chmod(p.device_nodes[i].c_str(), 0666) != 0)
      return false;
  for (const auto& [target, link] : p.dev_links)
    if (::symlink(target.c_str(), link.c_str()) != 0) return false;
  if (::mkdir(p.pts.c_str(), 0755) != 0 || ::mkdir(p.shm.c_str(), 01777) != 0) return false;
  if (::mount("devpts", p.pts.c_str(), "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") != 0)
    return false;
  if (::symlink("pts/ptmx", p.ptmx.c_str()) != 0) return false;
  if (::mount("tmpfs", p.shm.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) return false;
  if (::chroot(p.root.c_str()) != 0 || ::chdir("/") != 0) return false;
  return true;
}

// A file of the tree that kiln replaces for the duration of the stage (the
// resolver configuration, the "do not start services" policy) and puts back.
// The tree came from outside: the file and its directories are reached
// through TreeRoot, so a symlink there never leads a write to the host.
class TemporaryFile {
 public:
  static Result<TemporaryFile> install(const TreeRoot& tree, std::string path, std::string_view content, int mode) {
    TemporaryFile file(tree, std::move(path));
    KILN_ASSIGN(std::optional<struct stat> st, tree.lstat(file.path_));
    if (st && S_ISLNK(st->st_mode)) {
      KILN_ASSIGN(file.symlink_target_, tree.read_link(file.path_));
    } else if (st && S_ISREG(st->st_mode)) {
      KILN_ASSIGN(file.content_, tree.read_file(file.path_));
      file.mode_ = st->st_mode & 07777;
    }
    KILN_TRY(tree.replace_file(file.path_, content, mode));
    return file;
  }

  Result<> restore() {
    KILN_TRY(tree_.remove_all(path_));
    if (symlink_target_) {
      KILN_ASSIGN(TreeRoot::Location at, tree_.locate(path_));
      if (::symlinkat(symlink_target_->c_str(), at.dir.get(), at.name.c_str()) != 0)
        return fail_errno("cannot restore", tree_.host_path(path_), errno);
    } else if (content_) {
      KILN_TRY(tree_.replace_file(path_, *content_, mode_));
    }
    return {};
  }

 private:
  TemporaryFile(const TreeRoot& tree, std::string path) : tree_(tree), path_(std::move(path)) {}
  const TreeRoot& tree_;
  std::string path_;
  std::optional<std::string> symlink_target_;
  std::optional<std::string> content_;
  int mode_ = 0644;
};

class Session {
 public:
  Session(const Plan& plan, const TreeRoot& tree, CommandRunner& runner, Reporter& reporter)
      : plan_(plan), tree_(tree), paths_(paths_for(tree.path())), runner_(runner), reporter_(reporter) {}

  Result<> run(std::vector<std::string> argv, std::string_view what) {
    Command command;
    command.argv = std::move(argv);
    command.clear_env = true;
    command.env = reproducible_env(plan_);
    command.env.insert(command.env.end(), {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                           "HOME=/root", "DEBCONF_NONINTERACTIVE_SEEN=true"});
    // The program is looked up inside the image, after chroot.
    command.resolve_in_child = true;
    const ChrootPaths& paths = paths_;
    command.in_child = [&paths] { return enter_image(paths); };
    auto done = runner_.run(command);
    if (!done) {
      Error error = std::move(done).error();
      error.message = fmt::format("{}: {}", what, error.message);
      return std::unexpected(std::move(error));
    }
    return {};
  }

  Result<> apt_install(const std::vector<std::string>& packages) {
    if (!apt_updated_) {
      reporter_.note("apt-get update");
      KILN_TRY(run({"apt-get", "-q", "update"}, "apt-get update"));
      apt_updated_ = true;
    }
    reporter_.note(fmt::format("apt-get install {}", fmt::join(packages, " ")));
    // The tree is a scratch copy: dpkg need not sync each file it unpacks
    // (mmdebstrap does the same). A bake never stops at a conffile prompt.
    std::vector<std::string> argv = {"apt-get", "-q", "-y", "--no-install-recommends",
                                     "-o", "Dpkg::Options::=--force-unsafe-io",
                                     "-o", "Dpkg::Options::=--force-confdef",
                                     "-o", "Dpkg::Options::=--force-confold", "install"};
    argv.insert(argv.end(), packages.begin(), packages.end());
    return run(argv, "customize.packages: apt-get install");
  }

  Result<> set_locale(const SetLocale& op) {
    KILN_ASSIGN(bool has_locale_gen, exists("usr/sbin/locale-gen"));
    if (!has_locale_gen) KILN_TRY(apt_install({"locales"}));
    std::string locale = op.locale;
    auto dot = locale.find('.');
    std::string charset = dot == std::string::npos ? "ISO-8859-1" : locale.substr(dot + 1);
    std::string line = locale + " " + charset;
    std::string text = tree_.read_file("etc/locale.gen").value_or("");
    if (text.find("\n" + line + "\n") == std::string::npos && !text.starts_with(line + "\n")) {
      if (!text.empty() && text.back() != '\n') text += '\n';
      text += line + "\n";
      KILN_TRY(replace_tree_file("etc/locale.gen", text));
    }
    reporter_.note("locale-gen " + locale);
    KILN_TRY(run({"locale-gen"}, "customize.locale: locale-gen"));
    return replace_tree_file("etc/default/locale", "LANG=" + locale + "\n");
  }

  // lvm2 and cryptsetup in the initramfs, with the files they read there:
  // installed, configured, then the initramfs rebuilt with them.
  Result<> install_storage_support(const StorageSupport& support) {
    if (support.empty()) return {};
    std::vector<std::string> missing;
    std::string status = tree_.read_file("var/lib/dpkg/status").value_or("");
    std::vector<InstalledPackage> installed = installed_packages(status);
    for (const std::string& package : support.packages)
      if (std::none_of(installed.begin(), installed.end(),
                       [&](const InstalledPackage& p) { return p.name == package; }))
        missing.push_back(package);
    if (!missing.empty()) {
      // Their dpkg triggers would build the initramfs once before kiln's
      // files below are in place, and it is built again after them: a
      // minute of mkinitramfs for nothing. update-initramfs skips while
      // its configuration says so (held only where initramfs-tools is
      // installed: a new package must find its conffile missing, not ours).
      constexpr const char* kConf = "etc/initramfs-tools/update-initramfs.conf";
      KILN_ASSIGN(bool configured, exists(kConf));
      std::optional<TemporaryFile> held;
      if (configured) {
        KILN_ASSIGN(TemporaryFile file, TemporaryFile::install(tree_, kConf, "update_initramfs=no\n", 0644));
        held.emplace(std::move(file));
      }
      KILN_TRY(apt_install(missing));
      if (held) KILN_TRY(held->restore());
    }
    for (const auto& [path, content] : support.files) KILN_TRY(replace_tree_file(path, content));
    std::vector<std::string> boot = tree_.list_directory("boot").value_or(std::vector<std::string>{});
    if (std::none_of(boot.begin(), boot.end(), [](const std::string& name) { return name.starts_with("vmlinuz-"); }))
      return {};
    KILN_ASSIGN(bool has_update_initramfs, exists("usr/sbin/update-initramfs"));
    if (!has_update_initramfs)
      return fail(ErrorKind::kBadInput,
                  "storage.layout \"{}\"{} needs the image's initramfs rebuilt, but it has no update-initramfs: add "
                  "\"initramfs-tools\" to bootstrap.packages",
                  name_of(plan_.recipe->storage.layout.value), plan_.recipe->storage.encrypted() ? " (encrypted)" : "");
    reporter_.note("update-initramfs");
    return run({"update-initramfs", "-u", "-k", "all"}, "update-initramfs");
  }

  Result<> run_command(const RunCommand& op, int index) {
    if (!op.command.empty()) {
      reporter_.note("run: " + op.command);
      return run({"/bin/sh", "-c", op.command}, fmt::format("customize.run: `{}`", op.command));
    }
    std::string inside = fmt::format("/tmp/kiln-script-{}", index);
    KILN_ASSIGN(std::string script, read_file(op.script_file));
    KILN_TRY(replace_tree_file(inside, script, 0755));
    reporter_.note("run script " + op.script_file.string());
    auto done = run({inside}, fmt::format("customize.run: script {}", op.script_file.string()));
    KILN_TRY(tree_.remove_all(inside));
    return done;
  }

  // Writes a file of the tree, replacing a symlink rather than following it.
  Result<> replace_tree_file(const std::string& path, std::string_view content, int mode = 0644) {
    return tree_.replace_file(path, content, mode);
  }

  Result<bool> exists(const std::string& path) {
    KILN_ASSIGN(std::optional<struct stat> st, tree_.lstat(path));
    return st.has_value();
  }

 private:
  const Plan& plan_;
  const TreeRoot& tree_;
  ChrootPaths paths_;
  CommandRunner& runner_;
  Reporter& reporter_;
  bool apt_updated_ = false;
};

// What a package manager run leaves behind that makes two bakes differ:
// caches, logs with times in them, backup copies.
Result<> remove_run_leftovers(const TreeRoot& tree, bool reproducible) {
  auto names_in = [&](const std::string& dir) {
    return tree.list_directory(dir).value_or(std::vector<std::string>{});
  };
  for (const std::string dir : {"var/lib/apt/lists", "var/cache/apt/archives"}) {
    for (const std::string& name : names_in(dir)) {
      KILN_ASSIGN(std::optional<struct stat> st, tree.lstat(dir + "/" + name));
      if (st && S_ISREG(st->st_mode)) KILN_TRY(tree.remove_all(dir + "/" + name));
    }
  }
  for (const char* file : {"var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin",
                           "var/cache/ldconfig/aux-cache", "var/log/apt/eipp.log.xz"})
    KILN_TRY(tree.remove_all(file));
  for (const std::string dir : {"var/cache/debconf", "var/lib/dpkg"})
    for (const std::string& name : names_in(dir))
      if (name.ends_with("-old")) KILN_TRY(tree.remove_all(dir + "/" + name));
  if (!reproducible) return {};
  for (const char* file : {"var/log/dpkg.log", "var/log/alternatives.log", "var/log/apt/history.log",
                           "var/log/apt/term.log"})
    KILN_TRY(tree.remove_all(file));
  return {};
}

// /proc, /sys, /dev and /tmp are mounted on by path in the child, where
// the host's resolution applies: each must be a real directory of the tree,
// never a symlink the rootfs made.
Result<> prepare_mount_points(const TreeRoot& tree) {
  for (const char* dir : {"proc", "sys", "dev", "tmp"}) {
    KILN_ASSIGN(std::optional<struct stat> st, tree.lstat(dir));
    if (!st) KILN_TRY(tree.make_directories(dir));
    else if (!S_ISDIR(st->st_mode))
      return fail(ErrorKind::kBadInput,
                  "the rootfs has /{} as something other than a directory; the in-image steps mount there", dir);
  }
  return {};
}

}  // namespace

Result<> customize_in_image(const Plan& plan, const TreeRoot& tree, CommandRunner& runner, Reporter& reporter) {
  KILN_TRY(prepare_mount_points(tree));
  std::string host_resolver = read_file("/etc/resolv.conf").value_or("");
  KILN_ASSIGN(auto resolver, TemporaryFile::install(tree, "etc/resolv.conf", host_resolver, 0644));
  KILN_ASSIGN(auto policy, TemporaryFile::install(tree, "usr/sbin/policy-rc.d",
                                                  "#!/bin/sh\n# kiln: no services start at bake time\nexit 101\n",
                                                  0755));
  Session session(plan, tree, runner, reporter);
  int index = 0;
  for (const CustomizeStep& step : plan.in_image_steps) {
    Result<> done = std::visit(
        [&](const auto& op) -> Result<> {
          using Op = std::decay_t<decltype(op)>;
          if constexpr (std::is_same_v<Op, InstallPackages>) return session.apt_install(op.packages);
          else if constexpr (std::is_same_v<Op, SetLocale>) return session.set_locale(op);
          else if constexpr (std::is_same_v<Op, RunCommand>) return session.run_command(op, index++);
          else return fail(ErrorKind::kFailed, "internal: an offline step reached the in-image stage");
        },
        step.operation);
    if (!done) {
      Error error = std::move(done).error();
      if (error.where.empty()) error.where = step.where;
      return std::unexpected(std::move(error));
    }
  }
  KILN_TRY(session.install_storage_support(plan.storage_support));
  KILN_TRY(policy.restore());
  KILN_TRY(resolver.restore());
  return remove_run_leftovers(tree, plan.reproducible);
}

Result<> run_in_image_steps(const Plan& plan, const fs::path& source_archive, const fs::path& out_tar,
                            const fs::path& work_dir, Reporter& reporter, CommandRunner& runner) {
  if (::geteuid() != 0)
    return fail(ErrorKind::kMissingTool,
                "customize.packages, customize.run and locales other than C.UTF-8 run programs "
                "inside the image, which needs root: run kiln as root, or move packages to "
                "bootstrap.packages");
  fs::path root = work_dir / "rootfs";
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return fail_errno("cannot create", root.string(), ec.value());
  reporter.note("unpacking the rootfs");
  KILN_TRY(extract_to_tree(source_archive, root));
  KILN_ASSIGN(TreeRoot tree, TreeRoot::open(root));
  KILN_TRY(customize_in_image(plan, tree, runner, reporter));
  reporter.note("packing the rootfs");
  return write_tree_as_tar(root, out_tar, plan.reproducible ? plan.timestamp : 0);
}

}  // namespace kiln
