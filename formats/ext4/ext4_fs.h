// ext4 internals shared by the image API (ext4_image.cc), the archive
// importer (ext4_import.cc) and exporter (ext4_export.cc) and the sizing
// scan (ext4_sizing.cc): an open
// libext2fs filesystem with kiln errors, whole on-disk inodes, contiguous
// block allocation with large data writes, and directory blocks built in
// memory. Not part of the public API: only formats/ext4_*.cc include it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ext2fs/ext2fs.h>

#include "base/error.h"
#include "formats/ext4/ext4_image.h"
#include "formats/tree/tar_reader.h"

namespace kiln::ext4 {

// A symlink target shorter than the inode's block map (60 bytes) is stored
// in the inode itself ("fast symlink").
constexpr size_t kFastSymlinkMax = sizeof(ext2_inode::i_block);
// Longest run one initialised extent can describe.
constexpr uint32_t kMaxExtentLength = 32768;
constexpr size_t kMaxNameLength = EXT2_NAME_LEN;

// A libext2fs failure as an Error: "SUBJECT: WHAT: <libext2fs message>".
// Running out of blocks or inodes is ErrorKind::kNoSpace.
std::unexpected<Error> failure(errcode_t code, std::string_view subject, std::string_view what);

// One on-disk inode with its full size (256 bytes on kiln's filesystems),
// so the in-inode extended attributes and checksum survive a rewrite. The
// buffer always covers ext2_inode_large, even for 128-byte inodes.
class Inode {
 public:
  explicit Inode(size_t size)
      : words_((std::max(size, sizeof(ext2_inode_large)) + 7) / 8, 0), size_(size) {}
  ext2_inode_large* operator->() { return reinterpret_cast<ext2_inode_large*>(words_.data()); }
  const ext2_inode_large* operator->() const {
    return reinterpret_cast<const ext2_inode_large*>(words_.data());
  }
  ext2_inode* base() { return reinterpret_cast<ext2_inode*>(words_.data()); }
  const ext2_inode* base() const { return reinterpret_cast<const ext2_inode*>(words_.data()); }
  int size() const { return static_cast<int>(size_); }
  bool has_extra_fields() const { return size_ > EXT2_GOOD_OLD_INODE_SIZE; }

  uint32_t uid() const;
  uint32_t gid() const;
  void set_owner(uint32_t uid, uint32_t gid);
  // Sets access, change, modification and (where there is room) creation time.
  void set_times(int64_t seconds, uint32_t nanoseconds);
  int64_t mtime() const;
  uint32_t mtime_nsec() const;

 private:
  std::vector<uint64_t> words_;
  size_t size_;
};

// A run of a file: `length` blocks from logical block `logical` are stored
// from physical block `physical` on.
struct Extent {
  blk64_t logical = 0;
  blk64_t physical = 0;
  blk64_t length = 0;
};

// An open filesystem. Opened for writing, its superblock says "not clean"
// until close() succeeds, so an image left behind by a crash or an error
// never looks finished to e2fsck or the kernel.
class Filesystem {
 public:
  // `now` is stamped wherever libext2fs records a time (superblock write
  // time); 0 means "the filesystem's own creation time".
  static Result<std::unique_ptr<Filesystem>> open(const std::filesystem::path& image,
                                                  uint64_t offset, bool writable, int64_t now);
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;
  ~Filesystem();  // releases without writing anything more

  ext2_filsys get() const { return fs_; }
  // "root.img" or "disk.raw@1048576", for messages.
  const std::string& name() const { return name_; }
  bool writable() const { return writable_; }
  int64_t now() const { return now_; }
  uint32_t block_size() const { return fs_->blocksize; }
  size_t inode_size() const { return EXT2_INODE_SIZE(fs_->super); }
  bool has_extents() const { return ext2fs_has_feature_extents(fs_->super); }
  bool has_metadata_csum() const { return ext2fs_has_feature_metadata_csum(fs_->super); }

  Result<Inode> read_inode(ext2_ino_t ino, std::string_view path) const;
  Result<> write_inode(ext2_ino_t ino, Inode& inode, std::string_view path);
  // A fresh inode of the filesystem's size, zeroed, with its extra fields sized.
  Inode new_inode_buffer() const;
  // Takes the first free inode from the parent's group on, in order, so
  // imports allocate the same numbers every time.
  Result<ext2_ino_t> allocate_inode(ext2_ino_t parent, bool directory, std::string_view path);
  // Frees an unreferenced inode with its blocks and extended attribute block.
  Result<> release_inode(ext2_ino_t ino, std::string_view path);
  // Removes one link to a non-directory inode, releasing it at zero.
  Result<> drop_link(ext2_ino_t ino, std::string_view path);
  Result<> add_link(ext2_ino_t ino, std::string_view path);
  // Frees every block of the inode (in `inode`, which is written back).
  Result<> release_blocks(ext2_ino_t ino, Inode& inode, std::string_view path);
  // Makes `extents` the inode's block map and counts the blocks in i_blocks.
  // The caller writes `inode` afterwards.
  Result<> attach(ext2_ino_t ino, Inode& inode, const std::vector<Extent>& extents,
                  std::string_view path);
  Result<> set_xattrs(ext2_ino_t ino, const std::vector<std::pair<std::string, std::string>>& xattrs,
                      std::string_view path);

  // Allocates free blocks from the allocation cursor on and writes `count`
  // blocks of `data` there, appending the runs to `extents`.
  Result<> write_blocks(blk64_t logical, const char* data, blk64_t count,
                        std::vector<Extent>& extents, std::string_view path);

  // Writes everything out, marks the filesystem clean and closes it. With
  // kSync the image is on disk when close returns; kNoSync leaves that to
  // whoever publishes the file (a fresh image is not in place yet).
  enum class Flush { kSync, kNoSync };
  Result<> close(Flush flush = Flush::kSync);

 private:
  Filesystem(ext2_filsys fs, std::string name, bool writable, int64_t now);
  Result<> mark_in_use();

  ext2_filsys fs_ = nullptr;
  std::string name_;
  bool writable_ = false;
  int64_t now_ = 0;
  uint16_t clean_state_ = EXT2_VALID_FS;
  blk64_t goal_ = 0;  // where the next allocation starts looking
};

// Streams a file's content, holes included, into newly allocated blocks:
// whole blocks go straight from the caller's buffer to the image, partial
// blocks are assembled first; gaps of whole blocks stay holes.
class ContentWriter {
 public:
  // With `zero_blocks_as_holes`, a block of zeros is left unallocated, a
  // hole, as `mke2fs -d` does for the files it copies in.
  ContentWriter(Filesystem& fs, std::string_view path, bool zero_blocks_as_holes = false);
  // Offsets must not go backwards.
  Result<> write(uint64_t offset, const char* data, size_t size);
  Result<std::vector<Extent>> finish();

 private:
  Result<> flush_partial();
  // Writes whole blocks, skipping those of zeros when asked to.
  Result<> write_whole_blocks(blk64_t block, const char* data, blk64_t count);
  bool is_hole(const char* block) const;

  Filesystem& fs_;
  std::string_view path_;
  uint32_t block_size_;
  std::vector<char> partial_;
  blk64_t partial_block_ = 0;
  bool has_partial_ = false;
  uint64_t end_ = 0;
  std::vector<Extent> extents_;
  bool zero_blocks_as_holes_;
};

// A directory entry as kiln writes it.
struct DirEntry {
  std::string name;
  ext2_ino_t ino = 0;
  uint8_t file_type = EXT2_FT_UNKNOWN;
};

// Packs directory entries into blocks the way write_directory() does; used
// by sizing so that its count is exact.
class DirectoryPacker {
 public:
  DirectoryPacker(uint32_t block_size, bool checksums);
  void add(size_t name_length);
  uint64_t blocks() const { return blocks_; }

 private:
  uint32_t usable_;
  uint64_t blocks_ = 1;
  uint32_t used_ = 0;
};

// Builds the blocks of a linear directory ("." and ".." first), with
// checksum tails when the filesystem has metadata_csum.
std::vector<char> build_directory(const Filesystem& fs, ext2_ino_t self, ext2_ino_t parent,
                                  const std::vector<DirEntry>& entries);

// Stores a symlink target: in the inode below 60 bytes, else in a block.
Result<> write_symlink(Filesystem& fs, ext2_ino_t ino, Inode& inode, std::string_view target,
                       std::string_view path);
void set_device(Inode& inode, uint32_t major, uint32_t minor);

uint8_t file_type_of(EntryType type);
uint16_t mode_bits_of(EntryType type);

// Streams an archive into the filesystem (see Ext4Image::import).
Result<ImportStats> import_archive(Filesystem& fs, TarReader& reader, const ImportOptions& options);

// The entry type of an inode's mode (the inverse of mode_bits_of).
EntryType entry_type_of(uint16_t mode);

// A regular file's or a symlink's content, whole.
Result<std::string> read_content(const Filesystem& fs, ext2_ino_t ino, Inode& inode, std::string_view path);

// A directory's entries but "." and "..", in on-disk order.
struct NameList {
  std::vector<std::pair<std::string, ext2_ino_t>> entries;
};
Result<NameList> entries_of(const Filesystem& fs, ext2_ino_t directory, std::string_view path);

// Writes the whole filesystem to `archive` as a pax tar (ext4_export.cc).
Result<ExportStats> export_archive(const Filesystem& fs, const std::filesystem::path& archive,
                                   const std::function<void(uint64_t done, uint64_t total)>& progress);

}  // namespace kiln::ext4
