#include "base/files.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/close_range.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <vector>

namespace kiln {

TempDir::TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) {
  other.path_.clear();
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

Result<TempDir> TempDir::create(const fs::path& given_parent, std::string_view prefix) {
  // "d.luks".parent_path() is empty: the current directory.
  const fs::path parent = given_parent.empty() ? fs::path(".") : given_parent;
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) return fail_errno("cannot create directory", parent.string(), ec.value());
  std::string pattern = (parent / fmt::format(".{}-XXXXXX", prefix)).string();
  if (::mkdtemp(pattern.data()) == nullptr)
    return fail_errno("cannot create temporary directory", parent.string(), errno);
  return TempDir(fs::path(pattern));
}

Result<> TempDir::commit(const fs::path& target) {
  std::error_code ec;
  fs::remove(target, ec);  // only succeeds on an empty directory or a file
  if (::rename(path_.c_str(), target.c_str()) != 0)
    return fail_errno("cannot rename into place", target.string(), errno);
  path_.clear();
  return fsync_directory(target.parent_path().empty() ? "." : target.parent_path());
}

namespace {

// In a child of a fork: closes every descriptor but `keep` (sorted).
void close_all_but(const std::vector<int>& keep) {
  unsigned from = 0;
  for (int fd : keep) {
    if (static_cast<unsigned>(fd) > from) ::syscall(SYS_close_range, from, static_cast<unsigned>(fd) - 1, 0);
    from = static_cast<unsigned>(fd) + 1;
  }
  ::syscall(SYS_close_range, from, ~0U, 0);
}

// Removes a replaced output. Its disk images take a noticeable part of a
// second to free (ext4 releases their extents when the last reference
// goes), which the caller need not wait for: a detached child holds the big
// files open while the tree is unlinked here, then drops them, so the blocks
// are freed in the child. No name is left behind either way, and if the
// child is killed the kernel closes its files and frees them just the same.
void remove_replaced_tree(const fs::path& dir) {
  constexpr uintmax_t kBig = 64 << 20;
  std::vector<int> held;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::error_code ignored;
    if (!it->is_regular_file(ignored) || it->file_size(ignored) < kBig || ignored) continue;
    int fd = ::open(it->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) held.push_back(fd);
  }
  int gate[2] = {-1, -1};
  if (!held.empty() && ::pipe2(gate, O_CLOEXEC) == 0) {
    pid_t child = ::fork();
    if (child == 0) {
      if (::fork() != 0) _exit(0);  // the grandchild is init's to reap
      std::vector<int> keep = held;
      keep.push_back(gate[0]);
      std::sort(keep.begin(), keep.end());
      close_all_but(keep);  // no lock or socket of the caller's outlives it here
      char byte;
      while (::read(gate[0], &byte, 1) < 0 && errno == EINTR) {
      }
      _exit(0);
    }
    if (child > 0) ::waitpid(child, nullptr, 0);
    ::close(gate[0]);
  }
  fs::remove_all(dir, ec);
  for (int fd : held) ::close(fd);
  if (gate[1] >= 0) ::close(gate[1]);
}

}  // namespace

Result<> install_directory(TempDir built, const fs::path& target) {
  mode_t mask = ::umask(0);
  ::umask(mask);
  if (::chmod(built.path().c_str(), 0755 & ~mask) != 0) return fail_errno("chmod", built.path().string(), errno);
  std::error_code ec;
  if (fs::exists(target, ec) && !fs::is_empty(target, ec)) {
    if (::renameat2(AT_FDCWD, built.path().c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) != 0)
      return fail_errno("cannot replace", target.string(), errno);
    // `built` now holds the old contents.
    remove_replaced_tree(built.path());
    return fsync_directory(target.parent_path().empty() ? "." : target.parent_path());
  }
  return built.commit(target);
}

Result<AtomicFile> AtomicFile::create(const fs::path& target, int mode) {
  fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::string pattern = (dir / fmt::format(".{}.kiln-XXXXXX", target.filename().string())).string();
  int fd = ::mkostemp(pattern.data(), O_CLOEXEC);
  if (fd < 0) return fail_errno("cannot create", pattern, errno);
  ::fchmod(fd, mode);
  return AtomicFile(target, fs::path(pattern), fd);
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : target_(std::move(other.target_)), temp_(std::move(other.temp_)), fd_(other.fd_) {
  other.fd_ = -1;
  other.temp_.clear();
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!temp_.empty()) ::unlink(temp_.c_str());
}

Result<> AtomicFile::write(std::string_view data) {
  return write_all(fd_, data.data(), data.size(), temp_.string());
}

Result<> AtomicFile::commit(Durability durability) {
  bool durable = durability == Durability::kDurable;
  if (durable && ::fsync(fd_) != 0) return fail_errno("fsync", target_.string(), errno);
  ::close(fd_);
  fd_ = -1;
  if (::rename(temp_.c_str(), target_.c_str()) != 0)
    return fail_errno("cannot rename into place", target_.string(), errno);
  temp_.clear();
  if (!durable) return {};
  return fsync_directory(target_.parent_path().empty() ? "." : target_.parent_path());
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

int UniqueFd::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

Result<UniqueFd> open_file(const fs::path& path, int flags, int mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return fail_errno("cannot open", path.string(), errno);
  return UniqueFd(fd);
}

Result<std::string> read_file(const fs::path& path) {
  KILN_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY));
  return read_fd(fd.get(), path.string());
}

Result<std::string> read_file_range(const fs::path& path, uint64_t offset, size_t size) {
  KILN_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY));
  std::string out(size, '\0');
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::pread(fd.get(), out.data() + got, size - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("cannot read", path.string(), errno);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

Result<std::string> read_fd(int fd, std::string_view what) {
  std::string out;
  char buffer[65536];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("cannot read", what, errno);
    }
    if (n == 0) break;
    out.append(buffer, n);
  }
  return out;
}

Result<> write_file_atomic(const fs::path& path, std::string_view content, int mode) {
  KILN_ASSIGN(AtomicFile file, AtomicFile::create(path, mode));
  KILN_TRY(file.write(content));
  return file.commit();
}

Result<> write_all(int fd, const void* data, size_t size, std::string_view what) {
  auto* bytes = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, bytes, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("cannot write", what, errno);
    }
    bytes += n;
    size -= n;
  }
  return {};
}

Result<> pwrite_all(int fd, const void* data, size_t size, uint64_t offset,
                    std::string_view what) {
  auto* bytes = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::pwrite(fd, bytes, size, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("cannot write", what, errno);
    }
    bytes += n;
    size -= n;
    offset += n;
  }
  return {};
}

Result<> fsync_directory(const fs::path& dir) {
  KILN_ASSIGN(UniqueFd fd, open_file(dir, O_RDONLY | O_DIRECTORY));
  if (::fsync(fd.get()) != 0) return fail_errno("fsync", dir.string(), errno);
  return {};
}

Result<> for_each_run(int fd, uint64_t offset, uint64_t length, std::string_view what,
                      const std::function<Result<>(uint64_t at, uint64_t size)>& data,
                      const std::function<void(uint64_t size)>& hole) {
  const uint64_t end = offset + length;
  uint64_t pos = offset;
  while (pos < end) {
    off_t found = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (found < 0 && errno != ENXIO) return fail_errno("seek", what, errno);
    uint64_t data_start = found < 0 ? end : std::min<uint64_t>(static_cast<uint64_t>(found), end);
    if (data_start > pos) hole(data_start - pos);
    if (data_start >= end) break;
    off_t found_hole = ::lseek(fd, found, SEEK_HOLE);
    if (found_hole < 0) return fail_errno("seek", what, errno);
    uint64_t data_end = std::min<uint64_t>(static_cast<uint64_t>(found_hole), end);
    KILN_TRY(data(data_start, data_end - data_start));
    pos = data_end;
  }
  return {};
}

namespace {

// One chunk of a copy by pread and pwrite, advancing both offsets as
// copy_file_range does; returns the bytes copied, 0 at the end of the
// source, -1 with errno set.
ssize_t copy_through_buffer(int src_fd, loff_t& in, int dst_fd, loff_t& out, uint64_t size, std::string_view what) {
  static thread_local std::vector<char> buffer(1 << 20);
  ssize_t n = ::pread(src_fd, buffer.data(), std::min<uint64_t>(size, buffer.size()), in);
  if (n <= 0) return n;
  if (!pwrite_all(dst_fd, buffer.data(), static_cast<size_t>(n), static_cast<uint64_t>(out), what)) {
    if (errno == 0) errno = EIO;
    return -1;
  }
  in += n;
  out += n;
  return n;
}

}  // namespace

Result<> copy_sparse(int src_fd, uint64_t src_offset, int dst_fd, uint64_t dst_offset,
                     uint64_t length, std::string_view what) {
  auto copy = [&](uint64_t at, uint64_t size) -> Result<> {
    loff_t in = static_cast<loff_t>(at);
    loff_t out = static_cast<loff_t>(dst_offset + (at - src_offset));
    while (size > 0) {
      ssize_t n = ::copy_file_range(src_fd, &in, dst_fd, &out, size, 0);
      if (n < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)) {
        // Between filesystems of different kinds (tmpfs to ext4) the kernel
        // refuses; the bytes go through user space instead.
        n = copy_through_buffer(src_fd, in, dst_fd, out, size, what);
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail_errno("copy", what, errno);
      }
      if (n == 0) return fail(ErrorKind::kFailed, "{}: unexpected end of file while copying", what);
      size -= static_cast<uint64_t>(n);
    }
    return {};
  };
  return for_each_run(src_fd, src_offset, length, what, copy, [](uint64_t) {});
}

Result<> copy_whole_file(int src_fd, int dst_fd, std::string_view what) {
  if (::ioctl(dst_fd, FICLONE, src_fd) == 0) return {};
  struct stat st;
  if (::fstat(src_fd, &st) != 0) return fail_errno("stat", what, errno);
  KILN_TRY(copy_sparse(src_fd, 0, dst_fd, 0, static_cast<uint64_t>(st.st_size), what));
  if (::ftruncate(dst_fd, st.st_size) != 0) return fail_errno("truncate", what, errno);
  return {};
}

Result<> change_on_copy(const fs::path& file, const fs::path& output,
                        const std::function<Result<>(const fs::path& copy)>& change) {
  KILN_ASSIGN(UniqueFd in, open_file(file, O_RDONLY));
  struct stat st;
  if (::fstat(in.get(), &st) != 0) return fail_errno("stat", file.string(), errno);
  KILN_ASSIGN(AtomicFile copy, AtomicFile::create(output, static_cast<int>(st.st_mode & 07777)));
  KILN_TRY(copy_whole_file(in.get(), copy.fd(), file.string()));
  KILN_TRY(change(copy.temp_path()));
  return copy.commit();
}

bool is_plain_file_name(std::string_view name) {
  if (name.empty() || name == "." || name == "..") return false;
  return std::none_of(name.begin(), name.end(), [](char c) {
    return c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

Result<> remove_tree(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return fail_errno("cannot remove", path.string(), ec.value());
  return {};
}

}  // namespace kiln
