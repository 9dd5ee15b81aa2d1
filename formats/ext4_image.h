// Ext4Image: an ext2/3/4 filesystem inside an image file, written through
// libext2fs with no mount, no loop device and no unpacked tree. It formats a
// filesystem at a byte range of a file (a partition of disk.raw, or all of
// root.img), streams a rootfs archive into it, and offers the path-level
// operations that offline customisation needs (read, write, mkdir, symlink,
// remove, chmod, chown, xattrs).
//
// Output is deterministic: the same archive and options give the same bytes,
// because identifiers, the hash seed and every timestamp come from the options
// and inodes are allocated in archive order.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "crypto/uuid.h"
#include "formats/tar_reader.h"

namespace kiln {

struct Ext4Options {
  uint64_t size_bytes = 0;    // filesystem size, a multiple of the block size
  uint64_t offset_bytes = 0;  // where it starts inside the image file
  std::string fs_type = "ext4";  // "ext4", "ext3" or "ext2"
  std::string label;
  Uuid uuid;
  Uuid hash_seed;
  // Filesystem creation time; inode times later than this are clamped to it
  // (SOURCE_DATE_EPOCH semantics).
  int64_t timestamp = 0;
};

// Attributes for something created by a path-level operation.
struct Ext4Attributes {
  uint32_t mode = 0644;  // permission bits only
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime = 0;
};

struct Ext4Stat {
  EntryType type = EntryType::kFile;
  uint32_t mode = 0;  // permission bits
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  uint32_t links = 0;
  int64_t mtime = 0;
  std::string symlink_target;
};

struct Ext4Usage {
  uint64_t block_size = 0;
  uint64_t blocks_total = 0;
  uint64_t blocks_free = 0;
  uint64_t inodes_total = 0;
  uint64_t inodes_free = 0;
};

struct ImportOptions {
  // Called now and then with the archive position and size.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

struct ImportStats {
  uint64_t entries = 0;
  uint64_t data_bytes = 0;
};

class Ext4Image {
 public:
  // Creates (or extends, sparse) `image` and formats a filesystem at
  // [offset, offset + size) of it.
  static Result<Ext4Image> format(const std::filesystem::path& image, const Ext4Options& options);
  // Opens an existing filesystem at `offset_bytes` of `image`.
  static Result<Ext4Image> open(const std::filesystem::path& image, uint64_t offset_bytes = 0,
                                bool writable = true);
  // The smallest filesystem size (a multiple of 1 MiB) that holds everything
  // in `archive` with these options (size_bytes ignored): for "does not fit"
  // messages and automatic sizing.
  static Result<uint64_t> minimum_size(const std::filesystem::path& archive,
                                       const Ext4Options& options);

  Ext4Image(Ext4Image&&) noexcept;
  Ext4Image& operator=(Ext4Image&&) noexcept;
  ~Ext4Image();  // closes without flushing if close() was not called

  // Streams every entry of the archive into the filesystem. Running out of
  // blocks or inodes is an ErrorKind::kNoSpace error.
  Result<ImportStats> import(TarReader& reader, const ImportOptions& options = {});

  // Path-level operations. Paths are absolute inside the filesystem.
  // stat does not follow a final symlink; nullopt when nothing is there.
  Result<std::optional<Ext4Stat>> stat(std::string_view path);
  Result<std::string> read_file(std::string_view path);
  Result<std::vector<std::string>> list_directory(std::string_view path);
  // Creates the file, or replaces the content of an existing one (keeping its
  // owner and mode).
  Result<> write_file(std::string_view path, std::string_view content, const Ext4Attributes& attributes);
  Result<> make_directory(std::string_view path, const Ext4Attributes& attributes);
  Result<> make_symlink(std::string_view path, std::string_view target, const Ext4Attributes& attributes);
  // Removes a file, symlink or empty directory; `recursive` removes a tree.
  Result<> remove(std::string_view path, bool recursive = false);
  Result<> set_mode(std::string_view path, uint32_t mode);
  Result<> set_owner(std::string_view path, uint32_t uid, uint32_t gid);
  Result<std::optional<std::string>> get_xattr(std::string_view path, std::string_view name);
  Result<> set_xattr(std::string_view path, std::string_view name, std::string_view value);

  Ext4Usage usage() const;
  // Writes everything out and closes; the image is complete only after this.
  Result<> close();

 private:
  struct State;
  explicit Ext4Image(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace kiln
