#include "base/tree_root.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace kiln {
namespace {

namespace fs = std::filesystem;

// The kernel answers EAGAIN when a rename elsewhere raced a ".." lookup;
// trying again is what openat2(2) asks of its callers.
constexpr int kMaxAttempts = 16;

// A descriptor, or -errno.
int open_beneath(int root, const std::string& path, uint64_t flags, mode_t mode) {
  struct open_how how = {};
  how.flags = flags | O_CLOEXEC;
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  const char* name = path.empty() ? "." : path.c_str();
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    long fd = ::syscall(SYS_openat2, root, name, &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    if (errno != EAGAIN) return -errno;
  }
  return -EAGAIN;
}

// "/usr//lib/" -> "usr/lib".
std::string normalised(std::string_view relative) {
  std::string out;
  size_t start = 0;
  while (start <= relative.size()) {
    size_t slash = relative.find('/', start);
    if (slash == std::string_view::npos) slash = relative.size();
    std::string_view part = relative.substr(start, slash - start);
    if (!part.empty()) {
      if (!out.empty()) out += '/';
      out += part;
    }
    start = slash + 1;
  }
  return out;
}

// Splits "a/b/c" into "a/b" and "c".
std::pair<std::string, std::string> split_last(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {"", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace

Result<TreeRoot> TreeRoot::open(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fail_errno("cannot open the tree", dir.string(), errno);
  UniqueFd owned(fd);
  struct open_how probe = {};
  probe.flags = O_PATH | O_CLOEXEC;
  probe.resolve = RESOLVE_IN_ROOT;
  long check = ::syscall(SYS_openat2, fd, ".", &probe, sizeof probe);
  if (check < 0 && errno == ENOSYS)
    return fail(ErrorKind::kMissingTool,
                "{}: this kernel has no openat2(), which kiln needs to write a tree without following its "
                "symlinks out of it: use Linux 5.6 or later",
                dir.string());
  if (check >= 0) ::close(static_cast<int>(check));
  return TreeRoot(dir, std::move(owned));
}

std::string TreeRoot::host_path(std::string_view relative) const {
  std::string inside = normalised(relative);
  return inside.empty() ? path_.string() : (path_ / inside).string();
}

Result<TreeRoot::Location> TreeRoot::locate(std::string_view relative) const {
  std::string inside = normalised(relative);
  auto [parent, name] = split_last(inside);
  if (name == "." || name == "..")
    return fail(ErrorKind::kBadInput, "{}: a path in a tree must end in a name, not '{}'", host_path(relative),
                name);
  int dir = open_beneath(fd(), parent, O_PATH | O_DIRECTORY, 0);
  if (dir < 0) {
    if (-dir == ENOENT || -dir == ENOTDIR)
      return fail(ErrorKind::kBadInput, "{}: its directory /{} is not in the tree {}{}", host_path(relative), parent,
                  path_.string(),
                  -dir == ENOTDIR ? " (something on the way is not a directory)" : "");
    return fail_errno("cannot open", host_path(parent), -dir);
  }
  return Location{UniqueFd(dir), name};
}

Result<TreeRoot::Location> TreeRoot::locate_creating(std::string_view relative, mode_t mode) const {
  std::string inside = normalised(relative);
  KILN_TRY(make_directories(split_last(inside).first, mode));
  return locate(inside);
}

Result<> TreeRoot::make_directories(std::string_view relative, mode_t mode) const {
  std::string inside = normalised(relative);
  int fd_or_error = open_beneath(fd(), inside, O_PATH | O_DIRECTORY, 0);
  if (fd_or_error >= 0) {
    ::close(fd_or_error);
    return {};
  }
  if (-fd_or_error != ENOENT)
    return fail_errno("cannot create the directory", host_path(inside),
                      -fd_or_error == ENOTDIR ? ENOTDIR : -fd_or_error);
  KILN_ASSIGN(Location at, locate_creating(inside, mode));
  if (::mkdirat(at.dir.get(), at.name.c_str(), mode) != 0 && errno != EEXIST)
    return fail_errno("cannot create the directory", host_path(inside), errno);
  // A name that exists but does not open as a directory is a file, or a
  // symlink that leads nowhere inside the tree.
  fd_or_error = open_beneath(fd(), inside, O_PATH | O_DIRECTORY, 0);
  if (fd_or_error >= 0) {
    ::close(fd_or_error);
    return {};
  }
  auto link = read_link(inside);
  if (link)
    return fail(ErrorKind::kBadInput,
                "/{} is a symlink to {}, which is no directory inside the tree {} (kiln never follows a link out of it)",
                inside, shown_value(*link), path_.string());
  return fail(ErrorKind::kBadInput, "/{} is not a directory in the tree {}", inside, path_.string());
}

Result<UniqueFd> TreeRoot::open_at(std::string_view relative, int flags, bool follow_final, mode_t mode) const {
  std::string inside = normalised(relative);
  int fd_or_error = open_beneath(fd(), inside, flags | (follow_final ? 0 : O_NOFOLLOW), mode);
  if (fd_or_error < 0) return fail_errno("cannot open", host_path(inside), -fd_or_error);
  return UniqueFd(fd_or_error);
}

Result<std::optional<struct stat>> TreeRoot::lstat(std::string_view relative) const {
  struct stat st;
  std::string inside = normalised(relative);
  if (inside.empty()) {
    if (::fstat(fd(), &st) != 0) return fail_errno("stat", path_.string(), errno);
    return st;
  }
  auto [parent, name] = split_last(inside);
  int dir = open_beneath(fd(), parent, O_PATH | O_DIRECTORY, 0);
  if (dir < 0) {
    if (-dir == ENOENT || -dir == ENOTDIR) return std::nullopt;
    return fail_errno("stat", host_path(inside), -dir);
  }
  UniqueFd owned(dir);
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return std::nullopt;
    return fail_errno("stat", host_path(inside), errno);
  }
  return st;
}

Result<std::string> TreeRoot::read_link(std::string_view relative) const {
  KILN_ASSIGN(Location at, locate(relative));
  std::string target(4096, '\0');
  ssize_t n = ::readlinkat(at.dir.get(), at.name.c_str(), target.data(), target.size());
  if (n < 0) return fail_errno("readlink", host_path(relative), errno);
  target.resize(static_cast<size_t>(n));
  return target;
}

Result<std::string> TreeRoot::read_file(std::string_view relative) const {
  KILN_ASSIGN(UniqueFd file, open_at(relative, O_RDONLY | O_NONBLOCK, true));
  struct stat st;
  if (::fstat(file.get(), &st) != 0) return fail_errno("stat", host_path(relative), errno);
  if (!S_ISREG(st.st_mode))
    return fail(ErrorKind::kBadInput, "{}: not a regular file", host_path(relative));
  return read_fd(file.get(), host_path(relative));
}

Result<std::vector<std::string>> TreeRoot::list_directory(std::string_view relative) const {
  KILN_ASSIGN(UniqueFd dir, open_at(relative, O_RDONLY | O_DIRECTORY, true));
  std::unique_ptr<DIR, int (*)(DIR*)> listing(::fdopendir(dir.get()), ::closedir);
  if (!listing) return fail_errno("cannot list", host_path(relative), errno);
  dir.release();
  std::vector<std::string> names;
  while (dirent* item = ::readdir(listing.get())) {
    std::string_view name = item->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<> TreeRoot::replace_file(std::string_view relative, std::string_view content, mode_t mode) const {
  KILN_ASSIGN(Location at, locate_creating(relative));
  struct stat st;
  if (::fstatat(at.dir.get(), at.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(st.st_mode)) return fail(ErrorKind::kBadInput, "{}: is a directory", host_path(relative));
    if (::unlinkat(at.dir.get(), at.name.c_str(), 0) != 0)
      return fail_errno("cannot replace", host_path(relative), errno);
  }
  int file = ::openat(at.dir.get(), at.name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (file < 0) return fail_errno("cannot create", host_path(relative), errno);
  UniqueFd owned(file);
  KILN_TRY(write_all(file, content.data(), content.size(), host_path(relative)));
  // The umask must not change what the caller asked for.
  if (::fchmod(file, mode) != 0) return fail_errno("chmod", host_path(relative), errno);
  return {};
}

Result<> TreeRoot::remove_all(std::string_view relative) const {
  std::string inside = normalised(relative);
  if (inside.empty()) return fail(ErrorKind::kFailed, "{}: refusing to remove a tree's root", path_.string());
  auto [parent, name] = split_last(inside);
  int dir = open_beneath(fd(), parent, O_PATH | O_DIRECTORY, 0);
  if (dir < 0) {
    if (-dir == ENOENT || -dir == ENOTDIR) return {};
    return fail_errno("cannot remove", host_path(inside), -dir);
  }
  UniqueFd owned(dir);
  return remove_all_at(dir, name, host_path(inside));
}

Result<> remove_all_at(int dir, const std::string& name, std::string_view what) {
  struct stat st;
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return fail_errno("cannot remove", what, errno);
  }
  if (S_ISDIR(st.st_mode)) {
    int inner = ::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (inner < 0) return fail_errno("cannot remove", what, errno);
    std::unique_ptr<DIR, int (*)(DIR*)> listing(::fdopendir(inner), ::closedir);
    if (!listing) {
      ::close(inner);
      return fail_errno("cannot remove", what, errno);
    }
    std::vector<std::string> names;
    while (dirent* item = ::readdir(listing.get())) {
      std::string_view child = item->d_name;
      if (child != "." && child != "..") names.emplace_back(child);
    }
    for (const std::string& child : names)
      KILN_TRY(remove_all_at(::dirfd(listing.get()), child, fmt::format("{}/{}", what, child)));
  }
  if (::unlinkat(dir, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0 && errno != ENOENT)
    return fail_errno("cannot remove", what, errno);
  return {};
}

Result<> set_xattr_at(int dir, const std::string& name, const std::string& attribute, std::string_view value,
                      std::string_view what) {
  std::string through_proc = fmt::format("/proc/self/fd/{}/{}", dir, name);
  if (::lsetxattr(through_proc.c_str(), attribute.c_str(), value.data(), value.size(), 0) != 0)
    return fail_errno("set xattr " + attribute, what, errno);
  return {};
}

}  // namespace kiln
