#include "runtime/uml_sandbox.h"

#include <fcntl.h>
#include <linux/landlock.h>
#include <linux/mount.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace kiln {
namespace {

namespace fs = std::filesystem;

// Debian 12's headers stop at Landlock ABI 2; the kernel may be newer,
// and a right this kernel handles but no rule grants stays denied.
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif

constexpr uint64_t kRead = LANDLOCK_ACCESS_FS_READ_FILE;
constexpr uint64_t kRun = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE;
constexpr uint64_t kReadWrite = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE;
// A directory UML keeps files in: made, written, truncated, removed.
constexpr uint64_t kWorkDir = kReadWrite | LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
                              LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_SOCK |
                              LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR;

int landlock_abi() {
  return static_cast<int>(::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION));
}

// Every filesystem right this kernel's Landlock knows: all are denied
// unless a rule grants them.
uint64_t handled_rights(int abi) {
  uint64_t rights = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;
  if (abi >= 2) rights |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5) rights |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  return rights;
}

// The rights a rule on a file (not a directory) may carry.
constexpr uint64_t kFileRights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                 LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
                                 LANDLOCK_ACCESS_FS_IOCTL_DEV;

Result<> allow(int ruleset, const fs::path& path, uint64_t rights, uint64_t handled) {
  int fd = ::open(path.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return {};  // nothing there to allow (no /dev/net/tun, say)
    return fail_errno("cannot open for the UML sandbox", path.string(), errno);
  }
  struct stat st {};
  ::fstat(fd, &st);
  if (!S_ISDIR(st.st_mode)) rights &= kFileRights;
  if (rights & LANDLOCK_ACCESS_FS_WRITE_FILE) rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
  landlock_path_beneath_attr rule{rights & handled, fd};
  int added = static_cast<int>(::syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0));
  int saved = errno;
  ::close(fd);
  if (added != 0) return fail_errno("landlock_add_rule", path.string(), saved);
  return {};
}

}  // namespace

fs::path uml_memory_dir(const std::string& instance_id) {
  return fs::path("/dev/shm") / fmt::format("kiln-uml-{}", instance_id);
}

Result<> landlock_available() {
  int abi = landlock_abi();
  if (abi >= 1) return {};
  return fail(ErrorKind::kMissingTool,
              "the uml backend needs Landlock (Linux 5.13 or later, with landlock among the LSMs) to keep the "
              "guest from the host's files, which UML's hostfs would otherwise reach: {}",
              std::strerror(errno));
}

Result<UmlSandbox> UmlSandbox::prepare(const InstanceSpec& spec, const InstancePaths& paths,
                                       const std::vector<std::string>& programs) {
  KILN_TRY(landlock_available());
  uint64_t handled = handled_rights(landlock_abi());
  landlock_ruleset_attr attr{};
  attr.handled_access_fs = handled;
  UniqueFd ruleset(static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0)));
  if (!ruleset) return fail_errno("landlock_create_ruleset", spec.name, errno);

  UmlSandbox sandbox;
  // Guest memory is a file UML makes and unlinks at once in TMPDIR: a
  // directory of this instance's own, on tmpfs.
  sandbox.memory_dir_ = uml_memory_dir(spec.id);
  if (::mkdir(sandbox.memory_dir_.c_str(), 0700) != 0 && errno != EEXIST)
    return fail_errno("mkdir", sandbox.memory_dir_.string(), errno);
  sandbox.remove_memory_dir_ = std::shared_ptr<void>(nullptr, [dir = sandbox.memory_dir_](void*) {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  });

  // A rule needs its directory to exist: UML would make this one itself.
  std::error_code ec;
  fs::create_directories(paths.uml_dir, ec);
  if (ec) return fail_errno("mkdir", paths.uml_dir.string(), ec.value());
  std::vector<std::pair<fs::path, uint64_t>> rules = {
      {sandbox.memory_dir_, kWorkDir},
      {paths.uml_dir, kWorkDir},
      {paths.disk_dir, kWorkDir},
      {paths.seed, kRead},
      {"/etc/ld.so.cache", kRead},
      {"/lib/x86_64-linux-gnu", kRun},
      {"/lib64", kRun},
      {"/dev/null", kReadWrite},
      {"/dev/random", kRead},
      {"/dev/urandom", kRead},
      {"/dev/net/tun", kReadWrite | LANDLOCK_ACCESS_FS_IOCTL_DEV},
      // UML's start-up checks: the CPU's features, and SIGIO on a pty.
      {"/proc/cpuinfo", kRead},
      {"/dev/ptmx", kReadWrite | LANDLOCK_ACCESS_FS_IOCTL_DEV},
      {"/dev/pts", kReadWrite | LANDLOCK_ACCESS_FS_IOCTL_DEV},
  };
  sandbox.writable_ = {sandbox.memory_dir_, paths.uml_dir, paths.disk_dir};
  sandbox.own_mounts_ = ::geteuid() == 0;  // as a user, hostfs can change only that user's files
  for (const std::string& program : programs) rules.push_back({program, kRun});
  for (const DiskSpec& disk : spec.disks) rules.push_back({disk.base, kRead});
  for (const auto& [path, rights] : rules) KILN_TRY(allow(ruleset.get(), path, rights, handled));
  sandbox.ruleset_ = std::move(ruleset);
  return sandbox;
}

namespace {

int set_mount_attributes(const char* path, unsigned flags, const mount_attr& attr) {
  return static_cast<int>(::syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &attr, sizeof attr));
}

}  // namespace

bool UmlSandbox::enter() const {
  if (own_mounts_) {
    if (::unshare(CLONE_NEWNS) != 0) return false;
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return false;
    // Each writable directory becomes a mount of its own, so that it can
    // be left writable when everything else turns read-only.
    for (const auto& dir : writable_)
      if (::mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) return false;
    mount_attr read_only{};
    read_only.attr_set = MOUNT_ATTR_RDONLY;
    if (set_mount_attributes("/", AT_RECURSIVE, read_only) != 0) return false;
    mount_attr writable{};
    writable.attr_clr = MOUNT_ATTR_RDONLY;
    for (const auto& dir : writable_)
      if (set_mount_attributes(dir.c_str(), 0, writable) != 0) return false;
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return ::syscall(SYS_landlock_restrict_self, ruleset_.get(), 0) == 0;
}

}  // namespace kiln
