// TreeRoot: a host directory that kiln writes a whole tree into (an unpacked
// archive, a patched directory, a rootfs being customised in a chroot), with
// every path resolved beneath it by the kernel.
//
// The tree's contents come from outside (archives, patches, packages), so
// its symlinks are hostile until proven otherwise: `./etc -> /etc` followed
// by `./etc/passwd` must land in the tree, not on the host. Every lookup
// here goes through openat2(RESOLVE_IN_ROOT) from the root's descriptor, so
// symlinks on the way are followed the way a chroot sees them (an absolute
// target starts again at the root, ".." stops there) and nothing outside the
// directory is ever read, written or removed, whatever the tree holds and
// whatever changes under us. The last component of a path is never
// followed unless a call says so; symlinks themselves stay as the tree
// wrote them.
//
// Paths are relative to the root; a leading "/" is allowed and means the
// same ("/etc/passwd" and "etc/passwd"). "" and "/" are the root itself.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/files.h"

namespace kiln {

class TreeRoot {
 public:
  // The directory must exist.
  static Result<TreeRoot> open(const std::filesystem::path& dir);

  const std::filesystem::path& path() const { return path_; }
  int fd() const { return fd_.get(); }
  // "ROOT/etc/passwd", for messages.
  std::string host_path(std::string_view relative) const;

  // The directory holding a path's last component, and that component.
  // For the root itself, `name` is empty and `dir` is the root.
  struct Location {
    UniqueFd dir;  // an O_PATH descriptor, for the *at() calls
    std::string name;
  };
  // The parent must already exist (as a directory, after following
  // symlinks inside the tree).
  Result<Location> locate(std::string_view relative) const;
  // Creates missing parents first (owned by root, `mode`); an existing
  // non-directory on the way is an error.
  Result<Location> locate_creating(std::string_view relative, mode_t mode = 0755) const;

  // Opens a path; the last component is not followed unless `follow_final`.
  Result<UniqueFd> open_at(std::string_view relative, int flags, bool follow_final, mode_t mode = 0) const;

  // Never follows a final symlink; nullopt when nothing is there (or a
  // parent is missing).
  Result<std::optional<struct stat>> lstat(std::string_view relative) const;
  Result<std::string> read_link(std::string_view relative) const;
  // Follows a final symlink inside the tree, like cat and ls.
  Result<std::string> read_file(std::string_view relative) const;
  Result<std::vector<std::string>> list_directory(std::string_view relative) const;

  // Creates the path and its parents as directories (mkdir -p), in the tree.
  Result<> make_directories(std::string_view relative, mode_t mode = 0755) const;
  // Writes a regular file with this content and mode, replacing whatever
  // non-directory was there (a symlink is replaced, never written through).
  Result<> replace_file(std::string_view relative, std::string_view content, mode_t mode) const;
  // Removes a path and, for a directory, everything below it; a missing path
  // is not an error. Symlinks are removed, never followed.
  Result<> remove_all(std::string_view relative) const;

 private:
  TreeRoot(std::filesystem::path path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::filesystem::path path_;
  UniqueFd fd_;
};

// Removes `name` in the directory `dir` and, for a directory, all below it,
// without following any symlink. A missing name is not an error.
Result<> remove_all_at(int dir, const std::string& name, std::string_view what);

// Sets an extended attribute on `name` in `dir` itself (not on a symlink's
// target), for every file type: Linux has no lsetxattrat(), so the name is
// reached through the directory's /proc/self/fd link.
Result<> set_xattr_at(int dir, const std::string& name, const std::string& attribute, std::string_view value,
                      std::string_view what);

}  // namespace kiln
