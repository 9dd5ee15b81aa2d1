#include "formats/tree/file_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/files.h"
#include "base/tree_root.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

EntryType type_of(mode_t mode) {
  if (S_ISDIR(mode)) return EntryType::kDirectory;
  if (S_ISLNK(mode)) return EntryType::kSymlink;
  if (S_ISCHR(mode)) return EntryType::kCharDevice;
  if (S_ISBLK(mode)) return EntryType::kBlockDevice;
  if (S_ISFIFO(mode)) return EntryType::kFifo;
  if (S_ISSOCK(mode)) return EntryType::kSocket;
  return EntryType::kFile;
}

Result<> check_absolute(std::string_view path) {
  if (!path.starts_with('/'))
    return fail(ErrorKind::kBadInput, "{}: paths inside a tree must be absolute (\"/etc/...\")", path);
  return {};
}

// Every path goes through TreeRoot, which resolves it inside the directory
// as a chroot would; the final name is acted on itself.
class DirectoryTree final : public FileTree {
 public:
  explicit DirectoryTree(TreeRoot root) : root_(std::move(root)) {}

  std::string describe() const override { return "the directory " + root_.path().string(); }

  Result<std::optional<TreeNode>> stat(std::string_view path) override {
    KILN_TRY(check_absolute(path));
    KILN_ASSIGN(std::optional<struct stat> st, root_.lstat(path));
    if (!st) return std::nullopt;
    TreeNode node{type_of(st->st_mode), static_cast<uint32_t>(st->st_mode & 07777), st->st_uid, st->st_gid,
                  static_cast<uint64_t>(st->st_size), {}, st->st_mtim.tv_sec};
    if (node.type == EntryType::kSymlink) {
      KILN_ASSIGN(node.link_target, root_.read_link(path));
    }
    return node;
  }

  Result<std::string> read_file(std::string_view path) override {
    KILN_TRY(check_absolute(path));
    return root_.read_file(path);
  }

  Result<std::vector<std::string>> list_directory(std::string_view path) override {
    KILN_TRY(check_absolute(path));
    return root_.list_directory(path);
  }

  Result<> write_file(std::string_view path, std::string_view content, const TreeAttributes& attributes) override {
    KILN_ASSIGN(TreeRoot::Location at, locate(path));
    std::string host = root_.host_path(path);
    struct stat st;
    bool exists = ::fstatat(at.dir.get(), at.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (exists && S_ISDIR(st.st_mode)) return fail(ErrorKind::kBadInput, "{}: is a directory in {}", path, describe());
    if (exists && !S_ISREG(st.st_mode)) {
      if (::unlinkat(at.dir.get(), at.name.c_str(), 0) != 0) return fail_errno("cannot replace", host, errno);
      exists = false;
    }
    int flags = exists ? O_WRONLY | O_TRUNC : O_WRONLY | O_CREAT | O_EXCL;
    int fd = ::openat(at.dir.get(), at.name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return fail_errno("cannot open", host, errno);
    UniqueFd file(fd);
    KILN_TRY(write_all(fd, content.data(), content.size(), host));
    if (!exists) {
      if (::fchown(fd, attributes.uid, attributes.gid) != 0) return fail_errno("chown", host, errno);
      if (::fchmod(fd, attributes.mode & 07777) != 0) return fail_errno("chmod", host, errno);
    }
    return set_times(at, attributes.mtime, host);
  }

  Result<> make_directory(std::string_view path, const TreeAttributes& attributes) override {
    KILN_ASSIGN(TreeRoot::Location at, locate(path));
    std::string host = root_.host_path(path);
    const char* name = at.name.empty() ? "." : at.name.c_str();
    if (::mkdirat(at.dir.get(), name, 0700) != 0 && errno != EEXIST) return fail_errno("mkdir", host, errno);
    struct stat st;
    if (::fstatat(at.dir.get(), name, &st, AT_SYMLINK_NOFOLLOW) != 0) return fail_errno("stat", host, errno);
    if (!S_ISDIR(st.st_mode))
      return fail(ErrorKind::kBadInput, "{}: exists in {} and is not a directory", path, describe());
    if (::fchownat(at.dir.get(), name, attributes.uid, attributes.gid, AT_SYMLINK_NOFOLLOW) != 0)
      return fail_errno("chown", host, errno);
    if (::fchmodat(at.dir.get(), name, attributes.mode & 07777, AT_SYMLINK_NOFOLLOW) != 0)
      return fail_errno("chmod", host, errno);
    return set_times(at, attributes.mtime, host);
  }

  Result<> make_symlink(std::string_view path, std::string_view target, const TreeAttributes& attributes) override {
    KILN_ASSIGN(TreeRoot::Location at, locate(path));
    std::string host = root_.host_path(path);
    struct stat st;
    if (::fstatat(at.dir.get(), at.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISDIR(st.st_mode)) return fail(ErrorKind::kBadInput, "{}: is a directory in {}", path, describe());
      if (::unlinkat(at.dir.get(), at.name.c_str(), 0) != 0) return fail_errno("cannot replace", host, errno);
    }
    if (::symlinkat(std::string(target).c_str(), at.dir.get(), at.name.c_str()) != 0)
      return fail_errno("symlink", host, errno);
    if (::fchownat(at.dir.get(), at.name.c_str(), attributes.uid, attributes.gid, AT_SYMLINK_NOFOLLOW) != 0)
      return fail_errno("chown", host, errno);
    return set_times(at, attributes.mtime, host);
  }

  Result<> remove(std::string_view path) override {
    KILN_ASSIGN(TreeRoot::Location at, locate(path));
    struct stat st;
    if (::fstatat(at.dir.get(), at.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        ::unlinkat(at.dir.get(), at.name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0)
      return fail_errno("cannot remove", root_.host_path(path), errno);
    return {};
  }

  Result<> set_mode(std::string_view path, uint32_t mode) override {
    KILN_ASSIGN(TreeRoot::Location at, locate(path));
    const char* name = at.name.empty() ? "." : at.name.c_str();
    struct stat st;
    if (::fstatat(at.dir.get(), name, &st, AT_SYMLINK_NOFOLLOW) != 0)
      return fail_errno("stat", root_.host_path(path), errno);
    if (S_ISLNK(st.st_mode))
      return fail(ErrorKind::kBadInput, "{}: is a symlink in {}; symlinks have no mode", path, describe());
    if (::fchmodat(at.dir.get(), name, mode & 07777, AT_SYMLINK_NOFOLLOW) != 0)
      return fail_errno("chmod", root_.host_path(path), errno);
    return {};
  }

  Result<> set_owner(std::string_view path, uint32_t uid, uint32_t gid) override {
    KILN_ASSIGN(TreeRoot::Location at, locate(path));
    const char* name = at.name.empty() ? "." : at.name.c_str();
    if (::fchownat(at.dir.get(), name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
      return fail_errno("chown", root_.host_path(path), errno);
    return {};
  }

 private:
  Result<TreeRoot::Location> locate(std::string_view path) const {
    KILN_TRY(check_absolute(path));
    return root_.locate(path);
  }

  static Result<> set_times(const TreeRoot::Location& at, int64_t mtime, const std::string& host) {
    struct timespec times[2] = {{mtime, 0}, {mtime, 0}};
    if (::utimensat(at.dir.get(), at.name.empty() ? "." : at.name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
      return fail_errno("set times", host, errno);
    return {};
  }

  TreeRoot root_;
};

TreeNode node_of(const Ext4Stat& st) {
  return {st.type, st.mode, st.uid, st.gid, st.size, st.symlink_target, st.mtime};
}

Ext4Attributes ext4_attributes(const TreeAttributes& a) { return {a.mode, a.uid, a.gid, a.mtime}; }

class Ext4Tree final : public FileTree {
 public:
  Ext4Tree(Ext4Image& image, std::string name) : image_(image), name_(std::move(name)) {}

  std::string describe() const override { return "the image " + name_; }

  Result<std::optional<TreeNode>> stat(std::string_view path) override {
    KILN_ASSIGN(std::optional<Ext4Stat> st, image_.stat(path));
    if (!st) return std::nullopt;
    return node_of(*st);
  }
  Result<std::string> read_file(std::string_view path) override { return image_.read_file(path); }
  Result<std::vector<std::string>> list_directory(std::string_view path) override {
    return image_.list_directory(path);
  }
  Result<> write_file(std::string_view path, std::string_view content, const TreeAttributes& attributes) override {
    return image_.write_file(path, content, ext4_attributes(attributes));
  }
  Result<> make_directory(std::string_view path, const TreeAttributes& attributes) override {
    return image_.make_directory(path, ext4_attributes(attributes));
  }
  Result<> make_symlink(std::string_view path, std::string_view target, const TreeAttributes& attributes) override {
    return image_.make_symlink(path, target, ext4_attributes(attributes));
  }
  Result<> remove(std::string_view path) override { return image_.remove(path, false); }
  Result<> set_mode(std::string_view path, uint32_t mode) override { return image_.set_mode(path, mode); }
  Result<> set_owner(std::string_view path, uint32_t uid, uint32_t gid) override {
    return image_.set_owner(path, uid, gid);
  }

 private:
  Ext4Image& image_;
  std::string name_;
};

}  // namespace

Result<std::unique_ptr<FileTree>> open_directory_tree(const fs::path& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return fail(ErrorKind::kBadInput, "{}: no such directory", root.string());
  KILN_ASSIGN(TreeRoot opened, TreeRoot::open(fs::absolute(root)));
  return std::make_unique<DirectoryTree>(std::move(opened));
}

std::unique_ptr<FileTree> ext4_tree(Ext4Image& image, std::string name) {
  return std::make_unique<Ext4Tree>(image, std::move(name));
}

Result<bool> is_ext_image(const fs::path& file) {
  KILN_ASSIGN(UniqueFd fd, open_file(file, O_RDONLY | O_CLOEXEC));
  // The superblock starts at byte 1024; its magic 0xEF53 is at offset 56.
  unsigned char magic[2] = {0, 0};
  ssize_t n = ::pread(fd.get(), magic, sizeof magic, 1024 + 56);
  if (n < 0) return fail_errno("read", file.string(), errno);
  return n == 2 && magic[0] == 0x53 && magic[1] == 0xEF;
}

}  // namespace kiln
