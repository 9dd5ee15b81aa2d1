// FileTree: one view of a filesystem tree, whether it is a directory on the
// host or an ext2/3/4 image opened with libext2fs, so that kiln's patches
// (formats/tree/tree_patch.h) are made and applied the same way on both, and an
// image never needs a mount.
//
// Paths are absolute inside the tree ("/etc/passwd"). Symlinks on the way
// are followed inside the tree, the way a chroot would see them: an
// absolute target starts again at the tree's root and ".." stops there, so
// nothing outside the tree is ever read or written.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "formats/ext4/ext4_image.h"
#include "formats/tree/tar_reader.h"

namespace kiln {

struct TreeNode {
  EntryType type = EntryType::kFile;
  uint32_t mode = 0;  // permission bits (07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  std::string link_target;  // for a symlink
  int64_t mtime = 0;
};

struct TreeAttributes {
  uint32_t mode = 0644;
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime = 0;
};

class FileTree {
 public:
  virtual ~FileTree() = default;

  // "the image /var/images/fido-etc", "the directory /tmp/etc": for messages.
  virtual std::string describe() const = 0;

  // Does not follow a final symlink; nullopt when nothing is there.
  virtual Result<std::optional<TreeNode>> stat(std::string_view path) = 0;
  // A regular file's content.
  virtual Result<std::string> read_file(std::string_view path) = 0;
  // Names in a directory, sorted, without "." and "..".
  virtual Result<std::vector<std::string>> list_directory(std::string_view path) = 0;

  // Creates the file or replaces its content; an existing regular file keeps
  // its mode and owner, a symlink or special file there is replaced.
  virtual Result<> write_file(std::string_view path, std::string_view content, const TreeAttributes& attributes) = 0;
  // Creates a directory, or gives an existing one the attributes.
  virtual Result<> make_directory(std::string_view path, const TreeAttributes& attributes) = 0;
  // Creates or replaces a symlink (mode ignored).
  virtual Result<> make_symlink(std::string_view path, std::string_view target, const TreeAttributes& attributes) = 0;
  // Removes a file, symlink, special file or empty directory.
  virtual Result<> remove(std::string_view path) = 0;
  // Act on the path itself, never on a final symlink's target.
  virtual Result<> set_mode(std::string_view path, uint32_t mode) = 0;
  virtual Result<> set_owner(std::string_view path, uint32_t uid, uint32_t gid) = 0;
};

// A directory on the host. Changing owners needs root, as for tar.
Result<std::unique_ptr<FileTree>> open_directory_tree(const std::filesystem::path& root);

// An image opened by the caller, who closes it when done; `name` is the
// image file's name for messages.
std::unique_ptr<FileTree> ext4_tree(Ext4Image& image, std::string name);

// Whether a file starts like an ext2/3/4 filesystem (its superblock magic).
Result<bool> is_ext_image(const std::filesystem::path& file);

}  // namespace kiln
