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
#include "base/uuid.h"
#include "formats/tree/tar_reader.h"

namespace kiln {

struct Ext4Options {
  uint64_t size_bytes = 0;    // filesystem size, a multiple of the block size
  uint64_t offset_bytes = 0;  // where it starts inside the image file
  std::string fs_type = "ext4";  // "ext4", "ext3" or "ext2"
  std::string label;
  Uuid uuid;
  Uuid hash_seed;
  // Filesystem creation time, positive; every time mke2fs and libext2fs
  // record is this one, and inode times later than it are clamped to it
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
  std::string type;   // "ext4", "ext3" or "ext2", by its features, as blkid tells them
  std::string uuid;   // as blkid shows it
  std::string label;  // "" when it has none
};

struct ImportOptions {
  // Called now and then with the archive position and size.
  std::function<void(uint64_t done, uint64_t total)> progress;
  // Picks entries: false leaves one out. It may rewrite the entry's path
  // (and a hardlink's target), e.g. to import one subtree of the archive as
  // a whole filesystem of its own (a volume mounted at /srv).
  std::function<bool(TarEntry& entry)> select;
};

struct ImportStats {
  uint64_t entries = 0;
  uint64_t data_bytes = 0;
};

struct ExportStats {
  uint64_t entries = 0;
  uint64_t data_bytes = 0;
};

// The smallest filesystem of a type: mke2fs leaves the journal out below
// 2048 blocks, so an ext3 or ext4 that small would silently be an ext2.
uint64_t ext4_minimum_size(std::string_view fs_type);

class Ext4Image {
 public:
  // Creates (or extends, sparse) `image` and formats a filesystem at
  // [offset, offset + size) of it, with mke2fs under a configuration kiln
  // writes (the host's /etc/mke2fs.conf plays no part). The features are
  // Debian 12's ext4 defaults; ext3 and ext2 are the older subsets.
  static Result<Ext4Image> format(const std::filesystem::path& image, const Ext4Options& options);
  // Opens an existing filesystem at `offset_bytes` of `image`. Times that
  // libext2fs records are the filesystem's creation time, so edits stay
  // reproducible.
  static Result<Ext4Image> open(const std::filesystem::path& image, uint64_t offset_bytes = 0,
                                bool writable = true);
  // The smallest filesystem size (a multiple of 1 MiB) that holds everything
  // in `archive` with these options (size_bytes and offset_bytes ignored):
  // for "does not fit" messages and automatic sizing. It reads headers only
  // and asks mke2fs for the overhead of a few candidate sizes.
  static Result<uint64_t> minimum_size(const std::filesystem::path& archive,
                                       const Ext4Options& options);

  Ext4Image(Ext4Image&&) noexcept;
  Ext4Image& operator=(Ext4Image&&) noexcept;
  // Without close(), nothing more is written: the superblock keeps saying
  // "not clean" (it does from the moment a writable image is opened), so a
  // half-written image never passes for a finished one.
  ~Ext4Image();

  // Streams every entry of the archive into the filesystem, with tar's
  // semantics: missing parents are created (0755, root), a later entry
  // replaces an earlier one at the same path. Running out of blocks or
  // inodes is an ErrorKind::kNoSpace error. After a failed import the image
  // is unusable: every later call, close() included, fails.
  Result<ImportStats> import(TarReader& reader, const ImportOptions& options = {});

  // The inverse of import: the whole filesystem written to `archive` as a
  // pax tar that import (or GNU tar) reads back to the same tree: owners,
  // modes, nanosecond mtimes, xattrs and POSIX ACLs, symlinks, hard links,
  // device nodes and fifos; holes stay holes. lost+found and sockets are
  // left out, as tar leaves them. Entries come in sorted order, so the same
  // filesystem gives the same archive. `progress` hears the inodes done of
  // those in use.
  Result<ExportStats> export_archive(const std::filesystem::path& archive,
                                     const std::function<void(uint64_t done, uint64_t total)>& progress = {});

  // Path-level operations. Paths are absolute inside the filesystem;
  // symlinks on the way are followed inside the image. Errors name the path
  // ("/etc/foo: no such file or directory in the image root.img").
  // stat does not follow a final symlink; nullopt when nothing is there.
  Result<std::optional<Ext4Stat>> stat(std::string_view path);
  // Follows a final symlink, like cat.
  Result<std::string> read_file(std::string_view path);
  // The same content written to `fd` (from offset 0, then sized to the
  // file), extent by extent through a small buffer: for large files (a
  // kernel, an initrd), which read_file would hold in memory whole.
  Result<> copy_file_to(std::string_view path, int fd);
  // Follows a final symlink, like ls; sorted, without "." and "..".
  Result<std::vector<std::string>> list_directory(std::string_view path);
  // Creates the file, or replaces the content of an existing one (keeping its
  // owner, mode and attributes; the mtime comes from `attributes`). A symlink
  // or special file at the path is replaced, never written through.
  Result<> write_file(std::string_view path, std::string_view content, const Ext4Attributes& attributes);
  // The parent must exist; an existing directory just takes the attributes.
  Result<> make_directory(std::string_view path, const Ext4Attributes& attributes);
  // Creates or replaces a symlink, like ln -sf; its mode is always 0777.
  Result<> make_symlink(std::string_view path, std::string_view target, const Ext4Attributes& attributes);
  // Removes a file, symlink or empty directory; `recursive` removes a tree.
  Result<> remove(std::string_view path, bool recursive = false);
  // These act on the path itself, not on a final symlink's target.
  // Symlinks have no mode of their own, so set_mode refuses them.
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
