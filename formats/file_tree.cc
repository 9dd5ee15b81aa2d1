#include "formats/file_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <deque>

#include "base/files.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// How many symlinks one lookup may pass through (Linux's limit).
constexpr int kMaxSymlinkHops = 40;

std::deque<std::string> components(std::string_view path) {
  std::deque<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end > start) out.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

EntryType type_of(mode_t mode) {
  if (S_ISDIR(mode)) return EntryType::kDirectory;
  if (S_ISLNK(mode)) return EntryType::kSymlink;
  if (S_ISCHR(mode)) return EntryType::kCharDevice;
  if (S_ISBLK(mode)) return EntryType::kBlockDevice;
  if (S_ISFIFO(mode)) return EntryType::kFifo;
  if (S_ISSOCK(mode)) return EntryType::kSocket;
  return EntryType::kFile;
}

Result<std::string> read_link(const fs::path& path) {
  std::string target(4096, '\0');
  ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
  if (n < 0) return fail_errno("readlink", path.string(), errno);
  target.resize(static_cast<size_t>(n));
  return target;
}

Result<> set_times(const fs::path& path, int64_t mtime) {
  struct timespec times[2] = {{mtime, 0}, {mtime, 0}};
  if (::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
    return fail_errno("set times", path.string(), errno);
  return {};
}

class DirectoryTree final : public FileTree {
 public:
  explicit DirectoryTree(fs::path root) : root_(std::move(root)) {}

  std::string describe() const override { return "the directory " + root_.string(); }

  Result<std::optional<TreeNode>> stat(std::string_view path) override {
    KILN_ASSIGN(fs::path host, resolve(path, false));
    struct stat st;
    if (::lstat(host.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) return std::nullopt;
      return fail_errno("stat", host.string(), errno);
    }
    TreeNode node{type_of(st.st_mode), static_cast<uint32_t>(st.st_mode & 07777), st.st_uid, st.st_gid,
                  static_cast<uint64_t>(st.st_size), {}};
    if (node.type == EntryType::kSymlink) {
      KILN_ASSIGN(node.link_target, read_link(host));
    }
    return node;
  }

  Result<std::string> read_file(std::string_view path) override {
    KILN_ASSIGN(fs::path host, resolve(path, true));
    KILN_ASSIGN(UniqueFd fd, open_file(host, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return fail_errno("stat", host.string(), errno);
    if (!S_ISREG(st.st_mode)) return fail(ErrorKind::kBadInput, "{}: not a regular file in {}", path, describe());
    return kiln::read_file(host);
  }

  Result<std::vector<std::string>> list_directory(std::string_view path) override {
    KILN_ASSIGN(fs::path host, resolve(path, true));
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(host.c_str()), ::closedir);
    if (!dir) return fail_errno("cannot open directory", host.string(), errno);
    std::vector<std::string> names;
    while (dirent* item = ::readdir(dir.get())) {
      std::string_view name = item->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  Result<> write_file(std::string_view path, std::string_view content, const TreeAttributes& attributes) override {
    KILN_ASSIGN(fs::path host, resolve(path, false));
    struct stat st;
    bool exists = ::lstat(host.c_str(), &st) == 0;
    if (exists && S_ISDIR(st.st_mode)) return fail(ErrorKind::kBadInput, "{}: is a directory in {}", path, describe());
    if (exists && !S_ISREG(st.st_mode)) {
      if (::unlink(host.c_str()) != 0) return fail_errno("cannot replace", host.string(), errno);
      exists = false;
    }
    if (exists) {
      KILN_ASSIGN(UniqueFd fd, open_file(host, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC));
      KILN_TRY(write_all(fd.get(), content.data(), content.size(), host.string()));
      return set_times(host, attributes.mtime);
    }
    KILN_ASSIGN(UniqueFd fd, open_file(host, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    KILN_TRY(write_all(fd.get(), content.data(), content.size(), host.string()));
    if (::fchown(fd.get(), attributes.uid, attributes.gid) != 0) return fail_errno("chown", host.string(), errno);
    if (::fchmod(fd.get(), attributes.mode & 07777) != 0) return fail_errno("chmod", host.string(), errno);
    return set_times(host, attributes.mtime);
  }

  Result<> make_directory(std::string_view path, const TreeAttributes& attributes) override {
    KILN_ASSIGN(fs::path host, resolve(path, false));
    if (::mkdir(host.c_str(), 0700) != 0 && errno != EEXIST) return fail_errno("mkdir", host.string(), errno);
    struct stat st;
    if (::lstat(host.c_str(), &st) != 0) return fail_errno("stat", host.string(), errno);
    if (!S_ISDIR(st.st_mode))
      return fail(ErrorKind::kBadInput, "{}: exists in {} and is not a directory", path, describe());
    if (::lchown(host.c_str(), attributes.uid, attributes.gid) != 0) return fail_errno("chown", host.string(), errno);
    if (::chmod(host.c_str(), attributes.mode & 07777) != 0) return fail_errno("chmod", host.string(), errno);
    return set_times(host, attributes.mtime);
  }

  Result<> make_symlink(std::string_view path, std::string_view target, const TreeAttributes& attributes) override {
    KILN_ASSIGN(fs::path host, resolve(path, false));
    struct stat st;
    if (::lstat(host.c_str(), &st) == 0) {
      if (S_ISDIR(st.st_mode)) return fail(ErrorKind::kBadInput, "{}: is a directory in {}", path, describe());
      if (::unlink(host.c_str()) != 0) return fail_errno("cannot replace", host.string(), errno);
    }
    if (::symlink(std::string(target).c_str(), host.c_str()) != 0) return fail_errno("symlink", host.string(), errno);
    if (::lchown(host.c_str(), attributes.uid, attributes.gid) != 0) return fail_errno("chown", host.string(), errno);
    return set_times(host, attributes.mtime);
  }

  Result<> remove(std::string_view path) override {
    KILN_ASSIGN(fs::path host, resolve(path, false));
    struct stat st;
    if (::lstat(host.c_str(), &st) != 0) return fail_errno("cannot remove", host.string(), errno);
    if (S_ISDIR(st.st_mode) ? ::rmdir(host.c_str()) != 0 : ::unlink(host.c_str()) != 0)
      return fail_errno("cannot remove", host.string(), errno);
    return {};
  }

  Result<> set_mode(std::string_view path, uint32_t mode) override {
    KILN_ASSIGN(fs::path host, resolve(path, false));
    struct stat st;
    if (::lstat(host.c_str(), &st) != 0) return fail_errno("stat", host.string(), errno);
    if (S_ISLNK(st.st_mode))
      return fail(ErrorKind::kBadInput, "{}: is a symlink in {}; symlinks have no mode", path, describe());
    if (::chmod(host.c_str(), mode & 07777) != 0) return fail_errno("chmod", host.string(), errno);
    return {};
  }

  Result<> set_owner(std::string_view path, uint32_t uid, uint32_t gid) override {
    KILN_ASSIGN(fs::path host, resolve(path, false));
    if (::lchown(host.c_str(), uid, gid) != 0) return fail_errno("chown", host.string(), errno);
    return {};
  }

 private:
  // The host path of `path`, with every symlink on the way (and the last
  // one when `follow_final`) resolved inside the root.
  Result<fs::path> resolve(std::string_view path, bool follow_final) const {
    if (!path.starts_with('/'))
      return fail(ErrorKind::kBadInput, "{}: paths inside a tree must be absolute (\"/etc/...\")", path);
    std::deque<std::string> pending = components(path);
    std::vector<std::string> done;
    int hops = 0;
    auto host_of = [&](const std::vector<std::string>& parts) {
      fs::path out = root_;
      for (const std::string& part : parts) out /= part;
      return out;
    };
    while (!pending.empty()) {
      std::string name = std::move(pending.front());
      pending.pop_front();
      if (name == ".") continue;
      if (name == "..") {
        if (!done.empty()) done.pop_back();
        continue;
      }
      done.push_back(name);
      if (pending.empty() && !follow_final) break;
      fs::path host = host_of(done);
      struct stat st;
      if (::lstat(host.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) continue;
      if (++hops > kMaxSymlinkHops)
        return fail(ErrorKind::kBadInput, "{}: too many levels of symbolic links in {}", path, describe());
      KILN_ASSIGN(std::string target, read_link(host));
      done.pop_back();
      if (target.starts_with('/')) done.clear();
      std::deque<std::string> more = components(target);
      pending.insert(pending.begin(), more.begin(), more.end());
    }
    return host_of(done);
  }

  fs::path root_;
};

TreeNode node_of(const Ext4Stat& st) {
  return {st.type, st.mode, st.uid, st.gid, st.size, st.symlink_target};
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
  return std::make_unique<DirectoryTree>(fs::absolute(root));
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
