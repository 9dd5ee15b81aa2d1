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
#include "builder/bootstrap.h"
#include "formats/dpkg_status.h"
#include "formats/rootfs_tree.h"

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
class TemporaryFile {
 public:
  static Result<TemporaryFile> install(const fs::path& path, std::string_view content, int mode) {
    TemporaryFile file(path);
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) {
      if (S_ISLNK(st.st_mode)) {
        file.symlink_target_ = fs::read_symlink(path);
      } else if (S_ISREG(st.st_mode)) {
        KILN_ASSIGN(file.content_, read_file(path));
        file.mode_ = st.st_mode & 07777;
      }
      // Never write through a link: it may point outside the tree.
      std::error_code ec;
      fs::remove(path, ec);
    }
    KILN_ASSIGN(UniqueFd fd, open_file(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode));
    KILN_TRY(write_all(fd.get(), content.data(), content.size(), path.string()));
    return file;
  }

  Result<> restore() {
    std::error_code ec;
    fs::remove(path_, ec);
    if (symlink_target_) {
      fs::create_symlink(*symlink_target_, path_, ec);
      if (ec) return fail_errno("cannot restore", path_.string(), ec.value());
    } else if (content_) {
      KILN_ASSIGN(UniqueFd fd, open_file(path_, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode_));
      KILN_TRY(write_all(fd.get(), content_->data(), content_->size(), path_.string()));
    }
    return {};
  }

 private:
  explicit TemporaryFile(fs::path path) : path_(std::move(path)) {}
  fs::path path_;
  std::optional<fs::path> symlink_target_;
  std::optional<std::string> content_;
  int mode_ = 0644;
};

class Session {
 public:
  Session(const Plan& plan, fs::path root, Reporter& reporter)
      : plan_(plan), root_(std::move(root)), paths_(paths_for(root_)), reporter_(reporter) {}

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
    auto done = kiln::run(command);
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
    std::vector<std::string> argv = {"apt-get", "-q", "-y", "--no-install-recommends", "install"};
    argv.insert(argv.end(), packages.begin(), packages.end());
    return run(argv, "customize.packages: apt-get install");
  }

  Result<> set_locale(const SetLocale& op) {
    if (!fs::exists(root_ / "usr/sbin/locale-gen")) KILN_TRY(apt_install({"locales"}));
    std::string locale = op.locale;
    auto dot = locale.find('.');
    std::string charset = dot == std::string::npos ? "ISO-8859-1" : locale.substr(dot + 1);
    std::string line = locale + " " + charset;
    fs::path locale_gen = root_ / "etc/locale.gen";
    std::string text;
    if (auto existing = read_file(locale_gen)) text = *existing;
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
    std::string status = read_file(root_ / "var/lib/dpkg/status").value_or("");
    std::vector<InstalledPackage> installed = installed_packages(status);
    for (const std::string& package : support.packages)
      if (std::none_of(installed.begin(), installed.end(),
                       [&](const InstalledPackage& p) { return p.name == package; }))
        missing.push_back(package);
    if (!missing.empty()) KILN_TRY(apt_install(missing));
    for (const auto& [path, content] : support.files) KILN_TRY(replace_tree_file(path.substr(1), content));
    std::error_code ec;
    bool has_kernel = false;
    for (const auto& entry : fs::directory_iterator(root_ / "boot", ec))
      if (entry.path().filename().string().starts_with("vmlinuz-")) has_kernel = true;
    if (!has_kernel) return {};
    if (!fs::exists(root_ / "usr/sbin/update-initramfs"))
      return fail(ErrorKind::kBadInput,
                  "storage.layout \"{}\"{} needs the image's initramfs rebuilt, but it has no update-initramfs: add "
                  "\"initramfs-tools\" to bootstrap.packages",
                  plan_.recipe->storage.layout.value, plan_.recipe->storage.encrypted() ? " (encrypted)" : "");
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
    KILN_TRY(replace_tree_file(inside.substr(1), script, 0755));
    reporter_.note("run script " + op.script_file.string());
    auto done = run({inside}, fmt::format("customize.run: script {}", op.script_file.string()));
    std::error_code ec;
    fs::remove(root_ / inside.substr(1), ec);
    return done;
  }

  // Writes a file of the tree, replacing a symlink rather than following it.
  Result<> replace_tree_file(const std::string& relative, std::string_view content, int mode = 0644) {
    fs::path path = root_ / relative;
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) fs::remove(path, ec);
    KILN_ASSIGN(UniqueFd fd, open_file(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode));
    return write_all(fd.get(), content.data(), content.size(), path.string());
  }

 private:
  const Plan& plan_;
  fs::path root_;
  ChrootPaths paths_;
  Reporter& reporter_;
  bool apt_updated_ = false;
};

// What a package manager run leaves behind that makes two bakes differ:
// caches, logs with times in them, backup copies.
void remove_run_leftovers(const fs::path& root, bool reproducible) {
  std::error_code ec;
  for (const char* dir : {"var/lib/apt/lists", "var/cache/apt/archives"}) {
    for (const auto& entry : fs::directory_iterator(root / dir, ec))
      if (entry.is_regular_file(ec)) fs::remove(entry.path(), ec);
  }
  for (const char* file : {"var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin",
                           "var/cache/ldconfig/aux-cache", "var/log/apt/eipp.log.xz"})
    fs::remove(root / file, ec);
  for (const char* dir : {"var/cache/debconf", "var/lib/dpkg"}) {
    for (const auto& entry : fs::directory_iterator(root / dir, ec))
      if (entry.path().filename().string().ends_with("-old")) fs::remove(entry.path(), ec);
  }
  if (!reproducible) return;
  for (const char* file : {"var/log/dpkg.log", "var/log/alternatives.log", "var/log/apt/history.log",
                           "var/log/apt/term.log"})
    fs::remove(root / file, ec);
}

}  // namespace

Result<> run_in_image_steps(const Plan& plan, const fs::path& source_archive, const fs::path& out_tar,
                            const fs::path& work_dir, Reporter& reporter) {
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
  for (const char* dir : {"proc", "sys", "dev", "tmp"}) fs::create_directories(root / dir, ec);

  std::string host_resolver = read_file("/etc/resolv.conf").value_or("");
  KILN_ASSIGN(auto resolver, TemporaryFile::install(root / "etc/resolv.conf", host_resolver, 0644));
  KILN_ASSIGN(auto policy, TemporaryFile::install(root / "usr/sbin/policy-rc.d",
                                                  "#!/bin/sh\n# kiln: no services start at bake time\nexit 101\n",
                                                  0755));
  Session session(plan, root, reporter);
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
  remove_run_leftovers(root, plan.reproducible);
  reporter.note("packing the rootfs");
  return write_tree_as_tar(root, out_tar, plan.reproducible ? plan.timestamp : 0);
}

}  // namespace kiln
