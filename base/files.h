// Files: the atomic-output and cleanup rules of kiln in one place. A final
// name only ever holds a complete file (written beside it, fsynced, renamed),
// and a temporary owned by a scope is gone when the scope is left, however it
// is left: success, error or Ctrl-C.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln {

namespace fs = std::filesystem;

// A directory removed with its contents on destruction unless kept.
class TempDir {
 public:
  // Creates PARENT/.PREFIX-XXXXXX (PARENT is created if missing).
  static Result<TempDir> create(const fs::path& parent, std::string_view prefix);
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&&) = delete;
  ~TempDir();

  const fs::path& path() const { return path_; }
  // Renames the directory to `target` (replacing an empty or missing target)
  // and stops owning it.
  Result<> commit(const fs::path& target);

 private:
  explicit TempDir(fs::path path) : path_(std::move(path)) {}
  fs::path path_;
};

// Swaps a finished directory into place at `target`: renamed over a missing
// or empty target, or exchanged atomically with an existing one, whose old
// contents are then removed: their names at once, the blocks of their big
// files in a detached child, so that the caller does not wait for the
// filesystem to free gigabytes. The directory gets the usual permissions
// (0755 less the umask); mkdtemp made it private.
Result<> install_directory(TempDir built, const fs::path& target);

// A file written under a temporary name beside its target, then renamed over
// it by commit(). Dropped without commit, the temporary is removed.
class AtomicFile {
 public:
  static Result<AtomicFile> create(const fs::path& target, int mode = 0644);
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  ~AtomicFile();

  int fd() const { return fd_; }
  const fs::path& temp_path() const { return temp_; }
  const fs::path& target() const { return target_; }
  Result<> write(std::string_view data);
  // kDurable: fsync, rename to the target, fsync the directory. kCache: a
  // file kiln can make again (a copy of what is elsewhere) is renamed into
  // place without the fsyncs: whole or absent under its name all the same,
  // but a power cut may lose it.
  enum class Durability { kDurable, kCache };
  Result<> commit(Durability durability = Durability::kDurable);

 private:
  AtomicFile(fs::path target, fs::path temp, int fd)
      : target_(std::move(target)), temp_(std::move(temp)), fd_(fd) {}
  fs::path target_;
  fs::path temp_;
  int fd_ = -1;
};

// An owned file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  ~UniqueFd();
  int get() const { return fd_; }
  int release();
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

Result<UniqueFd> open_file(const fs::path& path, int flags, int mode = 0644);
Result<std::string> read_file(const fs::path& path);
// Up to `size` bytes of `path` from `offset`: fewer where the file ends.
Result<std::string> read_file_range(const fs::path& path, uint64_t offset, size_t size);
// Reads what is left of an open file; `what` names it in errors.
Result<std::string> read_fd(int fd, std::string_view what);
Result<> write_file_atomic(const fs::path& path, std::string_view content, int mode = 0644);
Result<> write_all(int fd, const void* data, size_t size, std::string_view what);
Result<> pwrite_all(int fd, const void* data, size_t size, uint64_t offset,
                    std::string_view what);
Result<> fsync_directory(const fs::path& dir);

// Walks [offset, offset + length) of `fd` in order as runs of data and of
// holes (SEEK_DATA/SEEK_HOLE), so that callers pay only for the data: `data`
// gets each data run's offset and size, `hole` each hole's size, the one at
// the end included.
Result<> for_each_run(int fd, uint64_t offset, uint64_t length, std::string_view what,
                      const std::function<Result<>(uint64_t at, uint64_t size)>& data,
                      const std::function<void(uint64_t size)>& hole);

// Copies `length` bytes of src from src_offset to dst at dst_offset, skipping
// holes so sparse images stay sparse and the copy costs only the data. The
// destination range must already read as zeros (a fresh or truncated file).
Result<> copy_sparse(int src_fd, uint64_t src_offset, int dst_fd, uint64_t dst_offset,
                     uint64_t length, std::string_view what);

// Copies all of src into the empty file dst: a reflink where the
// filesystem shares blocks, else a sparse copy.
Result<> copy_whole_file(int src_fd, int dst_fd, std::string_view what);

// Changes a file all or nothing: `change` works on a copy of `file` made
// beside `output` (a reflink where the filesystem shares blocks, else a
// sparse copy), which becomes `output` only when `change` succeeded.
// `output` may be `file` itself. The copy keeps the file's mode.
Result<> change_on_copy(const fs::path& file, const fs::path& output,
                        const std::function<Result<>(const fs::path& copy)>& change);

// A name of one file in a directory, safe to join to it: not empty, not "."
// or "..", no '/', no '\\' and no control characters.
bool is_plain_file_name(std::string_view name);

// Removes a tree, ignoring a missing one; errors name the path.
Result<> remove_tree(const fs::path& path);

}  // namespace kiln
