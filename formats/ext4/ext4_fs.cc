#include "formats/ext4/ext4_fs.h"

#include <sys/statvfs.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <limits>
#include <mutex>

namespace kiln::ext4 {
namespace {

// Largest run handed to one allocation and one write: keeps the 32-bit
// block counts of the libext2fs calls far from overflowing.
constexpr blk64_t kMaxRunBlocks = 1 << 20;
// The checksum tail at the end of every directory block (metadata_csum).
constexpr uint32_t kDirTailSize = sizeof(ext2_dir_entry_tail);

bool is_no_space(errcode_t code) {
  return code == EXT2_ET_BLOCK_ALLOC_FAIL || code == EXT2_ET_INODE_ALLOC_FAIL || code == ENOSPC ||
         code == EDQUOT;
}

// ext4 stores seconds as a signed 32-bit field plus two "epoch" bits in the
// extra field, and nanoseconds above them.
void encode_time(int64_t seconds, uint32_t nanoseconds, __u32& base, __u32* extra) {
  base = static_cast<uint32_t>(seconds);
  if (extra == nullptr) return;
  int64_t epoch = (seconds - static_cast<int32_t>(static_cast<uint32_t>(seconds))) >> 32;
  *extra = (static_cast<uint32_t>(epoch) & EXT4_EPOCH_MASK) | (nanoseconds << EXT4_EPOCH_BITS);
}

// Whether the inode's extra area (i_extra_isize bytes after the first 128)
// covers a field ending at `end`.
bool extra_covers(const Inode& inode, size_t end) {
  return inode.has_extra_fields() &&
         EXT2_GOOD_OLD_INODE_SIZE + static_cast<size_t>(inode->i_extra_isize) >= end;
}

// Where the extra time fields end inside an inode.
constexpr size_t kAtimeExtraEnd = offsetof(ext2_inode_large, i_atime_extra) + sizeof(__u32);
constexpr size_t kMtimeExtraEnd = offsetof(ext2_inode_large, i_mtime_extra) + sizeof(__u32);
constexpr size_t kCrtimeExtraEnd = offsetof(ext2_inode_large, i_crtime_extra) + sizeof(__u32);

void append_run(std::vector<Extent>& extents, blk64_t logical, blk64_t physical, blk64_t count) {
  while (count > 0) {
    if (!extents.empty()) {
      Extent& last = extents.back();
      if (last.logical + last.length == logical && last.physical + last.length == physical &&
          last.length < kMaxExtentLength) {
        blk64_t take = std::min<blk64_t>(count, kMaxExtentLength - last.length);
        last.length += take;
        logical += take;
        physical += take;
        count -= take;
        continue;
      }
    }
    blk64_t take = std::min<blk64_t>(count, kMaxExtentLength);
    extents.push_back({logical, physical, take});
    logical += take;
    physical += take;
    count -= take;
  }
}

// A directory entry: 8 bytes of header, then the name, padded to 4 bytes.
size_t directory_record_length(size_t name_length) { return (8 + name_length + 3) & ~size_t{3}; }

struct XattrHandleCloser {
  void operator()(ext2_xattr_handle* handle) const { ext2fs_xattrs_close(&handle); }
};

}  // namespace

// `subject` is "IMAGE" or "IMAGE@OFFSET".
static bool host_disk_full(std::string_view subject) {
  std::filesystem::path image(subject.substr(0, subject.rfind('@') == std::string_view::npos ? subject.size()
                                                                                                : subject.rfind('@')));
  struct statvfs st;
  std::filesystem::path dir = image.parent_path().empty() ? std::filesystem::path(".") : image.parent_path();
  return ::statvfs(dir.c_str(), &st) == 0 && st.f_bavail * st.f_frsize < (1u << 20);
}

std::unexpected<Error> failure(errcode_t code, std::string_view subject, std::string_view what) {
  // libext2fs registers its message table only in e2fsprogs' programs.
  static std::once_flag messages;
  std::call_once(messages, [] { initialize_ext2_error_table(); });
  const char* text = error_message(code);
  if (code == EXT2_ET_INODE_ALLOC_FAIL)
    return fail(ErrorKind::kNoSpace, "{}: {}: no free inode left; give the filesystem a larger size",
                subject, what);
  if (is_no_space(code))
    return fail(ErrorKind::kNoSpace, "{}: {}: the filesystem is full; give it a larger size",
                subject, what);
  if (code == EXT2_ET_EA_NO_SPACE)
    return fail(ErrorKind::kBadInput, "{}: {}: the extended attributes do not fit in one block",
                subject, what);
  // A short write is how libext2fs reports the host's disk filling up.
  if (code == EXT2_ET_SHORT_WRITE && host_disk_full(subject)) {
    auto error = fail(ErrorKind::kNoSpace, "{}: {}: No space left on device (the disk holding the image is full)",
                      subject, what);
    error.error().host_disk_full = true;
    return error;
  }
  return fail(ErrorKind::kFailed, "{}: {}: {}", subject, what, text);
}

uint32_t Inode::uid() const {
  return (*this)->i_uid | static_cast<uint32_t>((*this)->osd2.linux2.l_i_uid_high) << 16;
}

uint32_t Inode::gid() const {
  return (*this)->i_gid | static_cast<uint32_t>((*this)->osd2.linux2.l_i_gid_high) << 16;
}

void Inode::set_owner(uint32_t uid, uint32_t gid) {
  (*this)->i_uid = static_cast<__u16>(uid & 0xffff);
  (*this)->osd2.linux2.l_i_uid_high = static_cast<__u16>(uid >> 16);
  (*this)->i_gid = static_cast<__u16>(gid & 0xffff);
  (*this)->osd2.linux2.l_i_gid_high = static_cast<__u16>(gid >> 16);
}

void Inode::set_times(int64_t seconds, uint32_t nanoseconds) {
  auto& raw = *(*this).operator->();
  bool extra = extra_covers(*this, kAtimeExtraEnd);
  if (!extra) {
    // Without the extra fields only the signed 32-bit range exists.
    seconds = std::clamp<int64_t>(seconds, std::numeric_limits<int32_t>::min(),
                                  std::numeric_limits<int32_t>::max());
  }
  encode_time(seconds, nanoseconds, raw.i_atime, extra ? &raw.i_atime_extra : nullptr);
  encode_time(seconds, nanoseconds, raw.i_ctime, extra ? &raw.i_ctime_extra : nullptr);
  encode_time(seconds, nanoseconds, raw.i_mtime, extra ? &raw.i_mtime_extra : nullptr);
  if (extra_covers(*this, kCrtimeExtraEnd))
    encode_time(seconds, nanoseconds, raw.i_crtime, &raw.i_crtime_extra);
}

uint32_t Inode::mtime_nsec() const {
  if (!extra_covers(*this, kMtimeExtraEnd)) return 0;
  return (*this)->i_mtime_extra >> EXT4_EPOCH_BITS;
}

int64_t Inode::mtime() const {
  int64_t seconds = static_cast<int32_t>((*this)->i_mtime);
  if (extra_covers(*this, kMtimeExtraEnd))
    seconds += static_cast<int64_t>((*this)->i_mtime_extra & EXT4_EPOCH_MASK) << 32;
  return seconds;
}

Filesystem::Filesystem(ext2_filsys fs, std::string name, bool writable, int64_t now)
    : fs_(fs), name_(std::move(name)), writable_(writable), now_(now) {
  fs_->now = static_cast<time_t>(now_);
}

Filesystem::~Filesystem() {
  if (fs_ != nullptr) ext2fs_free(fs_);
}

Result<std::unique_ptr<Filesystem>> Filesystem::open(const std::filesystem::path& image,
                                                     uint64_t offset, bool writable,
                                                     int64_t now) {
  std::string name = offset == 0 ? image.string() : fmt::format("{}@{}", image.string(), offset);
  struct stat st;
  if (::stat(image.c_str(), &st) != 0) return fail_errno("cannot open image", image.string(), errno);
  std::string io_options = offset == 0 ? "" : fmt::format("offset={}", offset);
  int flags = EXT2_FLAG_64BITS | (writable ? EXT2_FLAG_RW : 0);
  ext2_filsys fs = nullptr;
  errcode_t rc = ext2fs_open2(image.c_str(), io_options.empty() ? nullptr : io_options.c_str(),
                              flags, 0, 0, unix_io_manager, &fs);
  if (rc == EXT2_ET_BAD_MAGIC || rc == EXT2_ET_SHORT_READ)
    return fail(ErrorKind::kBadInput, "{}: no ext2/ext3/ext4 filesystem there", name);
  if (rc != 0) return failure(rc, name, "cannot open the filesystem");
  // Reopening and editing stays reproducible: libext2fs's own time stamps
  // get the filesystem's creation time instead of the clock.
  if (now == 0) now = fs->super->s_mkfs_time != 0 ? fs->super->s_mkfs_time : fs->super->s_wtime;
  std::unique_ptr<Filesystem> out(new Filesystem(fs, name, writable, now));
  if (writable) {
    if (ext2fs_has_feature_journal_needs_recovery(fs->super))
      return fail(ErrorKind::kBadInput,
                  "{}: the journal holds unfinished changes (was it in use?); "
                  "run `e2fsck -fy` on it first",
                  name);
    if (ext2fs_has_feature_inline_data(fs->super) || ext2fs_has_feature_casefold(fs->super) ||
        ext2fs_has_feature_encrypt(fs->super))
      return fail(ErrorKind::kBadInput,
                  "{}: kiln does not write filesystems with inline_data, casefold or encrypt",
                  name);
    KILN_TRY(out->mark_in_use());
  }
  if ((rc = ext2fs_read_bitmaps(fs)) != 0) return failure(rc, name, "cannot read the bitmaps");
  return out;
}

Result<> Filesystem::mark_in_use() {
  clean_state_ = fs_->super->s_state;
  fs_->super->s_state &= ~EXT2_VALID_FS;
  ext2fs_mark_super_dirty(fs_);
  // Only the primary superblock: nothing else has changed yet.
  fs_->flags |= EXT2_FLAG_SUPER_ONLY | EXT2_FLAG_MASTER_SB_ONLY;
  errcode_t rc = ext2fs_flush2(fs_, EXT2_FLAG_FLUSH_NO_SYNC);
  fs_->flags &= ~(EXT2_FLAG_SUPER_ONLY | EXT2_FLAG_MASTER_SB_ONLY);
  if (rc != 0) return failure(rc, name_, "cannot write the superblock");
  ext2fs_mark_super_dirty(fs_);
  return {};
}

Result<> Filesystem::close(Flush flush) {
  if (fs_ == nullptr) return {};
  if (writable_) {
    fs_->super->s_state = clean_state_;
    ext2fs_mark_super_dirty(fs_);
  }
  errcode_t rc = ext2fs_close2(fs_, flush == Flush::kSync ? 0 : EXT2_FLAG_FLUSH_NO_SYNC);
  if (rc != 0) return failure(rc, name_, "cannot write the filesystem out");
  fs_ = nullptr;
  return {};
}

Result<Inode> Filesystem::read_inode(ext2_ino_t ino, std::string_view path) const {
  Inode inode(inode_size());
  if (errcode_t rc = ext2fs_read_inode_full(fs_, ino, inode.base(), inode.size()); rc != 0)
    return failure(rc, name_, fmt::format("cannot read the inode of {}", path));
  return inode;
}

Result<> Filesystem::write_inode(ext2_ino_t ino, Inode& inode, std::string_view path) {
  if (errcode_t rc = ext2fs_write_inode_full(fs_, ino, inode.base(), inode.size()); rc != 0)
    return failure(rc, name_, fmt::format("cannot write the inode of {}", path));
  return {};
}

Inode Filesystem::new_inode_buffer() const {
  Inode inode(inode_size());
  if (inode.has_extra_fields())
    inode->i_extra_isize = sizeof(ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
  return inode;
}

Result<ext2_ino_t> Filesystem::allocate_inode(ext2_ino_t parent, bool directory,
                                              std::string_view path) {
  ext2_ino_t ino = 0;
  errcode_t rc = ext2fs_new_inode(fs_, parent, directory ? LINUX_S_IFDIR : LINUX_S_IFREG,
                                  nullptr, &ino);
  if (rc != 0) return failure(rc, name_, fmt::format("no inode left for {}", path));
  ext2fs_inode_alloc_stats2(fs_, ino, +1, directory ? 1 : 0);
  return ino;
}

namespace {

// Collects every block an inode owns (data and mapping blocks) as runs.
int collect_block(ext2_filsys, blk64_t* block, e2_blkcnt_t, blk64_t, int, void* runs_pointer) {
  auto& runs = *static_cast<std::vector<std::pair<blk64_t, blk64_t>>*>(runs_pointer);
  if (!runs.empty() && runs.back().first + runs.back().second == *block) ++runs.back().second;
  else runs.emplace_back(*block, 1);
  return 0;
}

}  // namespace

Result<> Filesystem::release_blocks(ext2_ino_t ino, Inode& inode, std::string_view path) {
  if (!ext2fs_inode_has_valid_blocks2(fs_, inode.base())) return {};
  // Freed blocks are zeroed: what a removed file held (an ssh host key, an
  // old /etc/shadow) must not stay readable in the image, and a free block's
  // bytes must not depend on history, or rebakes would differ.
  std::vector<std::pair<blk64_t, blk64_t>> runs;
  if (errcode_t rc = ext2fs_block_iterate3(fs_, ino, BLOCK_FLAG_READ_ONLY, nullptr, collect_block, &runs); rc != 0)
    return failure(rc, name_, fmt::format("cannot list the blocks of {}", path));
  if (errcode_t rc = ext2fs_punch(fs_, ino, inode.base(), nullptr, 0, ~0ULL); rc != 0)
    return failure(rc, name_, fmt::format("cannot free the blocks of {}", path));
  for (const auto& [start, count] : runs)
    if (errcode_t rc = io_channel_zeroout(fs_->io, start, count); rc != 0)
      return failure(rc, name_, fmt::format("cannot clear the freed blocks of {}", path));
  return {};
}

Result<> Filesystem::release_inode(ext2_ino_t ino, std::string_view path) {
  KILN_ASSIGN(Inode inode, read_inode(ino, path));
  KILN_TRY(release_blocks(ino, inode, path));
  if (ext2fs_file_acl_block(fs_, inode.base()) != 0) {
    if (errcode_t rc = ext2fs_free_ext_attr(fs_, ino, inode.operator->()); rc != 0)
      return failure(rc, name_, fmt::format("cannot free the extended attributes of {}", path));
  }
  bool directory = LINUX_S_ISDIR(inode->i_mode);
  inode->i_links_count = 0;
  inode->i_dtime = static_cast<__u32>(now_);
  KILN_TRY(write_inode(ino, inode, path));
  ext2fs_inode_alloc_stats2(fs_, ino, -1, directory ? 1 : 0);
  return {};
}

Result<> Filesystem::drop_link(ext2_ino_t ino, std::string_view path) {
  KILN_ASSIGN(Inode inode, read_inode(ino, path));
  if (inode->i_links_count <= 1) return release_inode(ino, path);
  inode->i_links_count--;
  return write_inode(ino, inode, path);
}

Result<> Filesystem::add_link(ext2_ino_t ino, std::string_view path) {
  KILN_ASSIGN(Inode inode, read_inode(ino, path));
  if (inode->i_links_count >= EXT2_LINK_MAX)
    return fail(ErrorKind::kBadInput, "{}: {} would have more than {} hard links", name_, path,
                EXT2_LINK_MAX);
  inode->i_links_count++;
  return write_inode(ino, inode, path);
}

Result<> Filesystem::attach(ext2_ino_t ino, Inode& inode, const std::vector<Extent>& extents,
                            std::string_view path) {
  blk64_t data_blocks = 0;
  for (const Extent& extent : extents) data_blocks += extent.length;
  std::memset(inode->i_block, 0, sizeof(inode->i_block));
  constexpr size_t kInodeExtents =
      (sizeof(ext2_inode::i_block) - sizeof(ext3_extent_header)) / sizeof(ext3_extent);

  if (has_extents() && extents.size() <= kInodeExtents) {
    // The common case: the whole map fits in the inode, no tree blocks.
    inode->i_flags |= EXT4_EXTENTS_FL;
    auto* header = reinterpret_cast<ext3_extent_header*>(inode->i_block);
    header->eh_magic = EXT3_EXT_MAGIC;
    header->eh_entries = static_cast<__u16>(extents.size());
    header->eh_max = kInodeExtents;
    header->eh_depth = 0;
    auto* entry = reinterpret_cast<ext3_extent*>(header + 1);
    for (const Extent& extent : extents) {
      entry->ee_block = static_cast<__u32>(extent.logical);
      entry->ee_len = static_cast<__u16>(extent.length);
      entry->ee_start_hi = static_cast<__u16>(extent.physical >> 32);
      entry->ee_start = static_cast<__u32>(extent.physical);
      ++entry;
    }
  } else if (has_extents()) {
    // A tree: libext2fs splits nodes and allocates index blocks. It writes
    // the inode as the root changes, so the inode must be valid on disk.
    inode->i_flags |= EXT4_EXTENTS_FL;
    KILN_TRY(write_inode(ino, inode, path));
    ext2_extent_handle_t handle = nullptr;
    errcode_t rc = ext2fs_extent_open2(fs_, ino, inode.base(), &handle);
    for (size_t i = 0; rc == 0 && i < extents.size(); ++i) {
      ext2fs_extent extent{extents[i].physical, extents[i].logical,
                           static_cast<__u32>(extents[i].length), 0};
      rc = ext2fs_extent_insert(handle, EXT2_EXTENT_INSERT_AFTER, &extent);
      if (rc == 0) rc = ext2fs_extent_fix_parents(handle);
    }
    if (handle != nullptr) ext2fs_extent_free(handle);
    if (rc != 0) return failure(rc, name_, fmt::format("cannot map the blocks of {}", path));
  } else {
    // ext2/ext3 block maps: libext2fs allocates the indirect blocks.
    inode->i_flags &= ~EXT4_EXTENTS_FL;
    KILN_TRY(write_inode(ino, inode, path));
    for (const Extent& extent : extents) {
      for (blk64_t i = 0; i < extent.length; ++i) {
        blk64_t physical = extent.physical + i;
        errcode_t rc = ext2fs_bmap2(fs_, ino, inode.base(), nullptr, BMAP_SET | BMAP_ALLOC,
                                    extent.logical + i, nullptr, &physical);
        if (rc != 0) return failure(rc, name_, fmt::format("cannot map the blocks of {}", path));
      }
    }
  }
  if (errcode_t rc = ext2fs_iblk_add_blocks(fs_, inode.base(), data_blocks); rc != 0)
    return failure(rc, name_, fmt::format("cannot count the blocks of {}", path));
  return {};
}

Result<> Filesystem::set_xattrs(ext2_ino_t ino,
                                const std::vector<std::pair<std::string, std::string>>& xattrs,
                                std::string_view path) {
  if (xattrs.empty()) return {};
  ext2_xattr_handle* raw = nullptr;
  errcode_t rc = ext2fs_xattrs_open(fs_, ino, &raw);
  if (rc != 0) return failure(rc, name_, fmt::format("cannot open the attributes of {}", path));
  std::unique_ptr<ext2_xattr_handle, XattrHandleCloser> handle(raw);
  if ((rc = ext2fs_xattrs_read(raw)) != 0)
    return failure(rc, name_, fmt::format("cannot read the attributes of {}", path));
  for (const auto& [key, value] : xattrs) {
    if ((rc = ext2fs_xattr_set(raw, key.c_str(), value.data(), value.size())) != 0)
      return failure(rc, name_, fmt::format("cannot set attribute {} of {}", key, path));
  }
  return {};
}

Result<> Filesystem::write_blocks(blk64_t logical, const char* data, blk64_t count,
                                  std::vector<Extent>& extents, std::string_view path) {
  while (count > 0) {
    blk64_t start = 0;
    blk64_t got = 0;
    errcode_t rc = ext2fs_new_range(fs_, 0, goal_, std::min(count, kMaxRunBlocks), nullptr,
                                    &start, &got);
    if (rc != 0) return failure(rc, name_, fmt::format("no space left for {}", path));
    got = std::min({got, count, kMaxRunBlocks});
    ext2fs_block_alloc_stats_range(fs_, start, static_cast<blk_t>(got), +1);
    rc = io_channel_write_blk64(fs_->io, start, static_cast<int>(got), data);
    if (rc != 0) return failure(rc, name_, fmt::format("cannot write the data of {}", path));
    append_run(extents, logical, start, got);
    goal_ = start + got;
    logical += got;
    data += got * fs_->blocksize;
    count -= got;
  }
  return {};
}

ContentWriter::ContentWriter(Filesystem& fs, std::string_view path, bool zero_blocks_as_holes)
    : fs_(fs),
      path_(path),
      block_size_(fs.block_size()),
      partial_(block_size_),
      zero_blocks_as_holes_(zero_blocks_as_holes) {}

bool ContentWriter::is_hole(const char* block) const {
  // All bytes equal the first, and the first is zero.
  return zero_blocks_as_holes_ && block[0] == 0 && std::memcmp(block, block + 1, block_size_ - 1) == 0;
}

Result<> ContentWriter::write_whole_blocks(blk64_t block, const char* data, blk64_t count) {
  blk64_t run = 0;  // blocks of data before `block` not yet written
  for (blk64_t i = 0; i < count; ++i) {
    if (!is_hole(data + i * block_size_)) {
      ++run;
      continue;
    }
    if (run > 0) KILN_TRY(fs_.write_blocks(block + i - run, data + (i - run) * block_size_, run, extents_, path_));
    run = 0;
  }
  if (run == 0) return {};
  return fs_.write_blocks(block + count - run, data + (count - run) * block_size_, run, extents_, path_);
}

Result<> ContentWriter::write(uint64_t offset, const char* data, size_t size) {
  if (offset < end_)
    return fail(ErrorKind::kBadInput, "{}: {}: data pieces out of order (offset {} after {})",
                fs_.name(), path_, offset, end_);
  end_ = offset + size;
  while (size > 0) {
    blk64_t block = offset / block_size_;
    size_t within = offset % block_size_;
    if (has_partial_ && block != partial_block_) KILN_TRY(flush_partial());
    if (!has_partial_ && within == 0 && size >= block_size_) {
      blk64_t count = size / block_size_;
      KILN_TRY(write_whole_blocks(block, data, count));
      size_t done = count * block_size_;
      data += done;
      offset += done;
      size -= done;
      continue;
    }
    if (!has_partial_) {
      std::fill(partial_.begin(), partial_.end(), '\0');
      partial_block_ = block;
      has_partial_ = true;
    }
    size_t take = std::min<size_t>(size, block_size_ - within);
    std::memcpy(partial_.data() + within, data, take);
    data += take;
    offset += take;
    size -= take;
  }
  return {};
}

Result<> ContentWriter::flush_partial() {
  has_partial_ = false;
  return write_whole_blocks(partial_block_, partial_.data(), 1);
}

Result<std::vector<Extent>> ContentWriter::finish() {
  if (has_partial_) KILN_TRY(flush_partial());
  return std::move(extents_);
}

DirectoryPacker::DirectoryPacker(uint32_t block_size, bool checksums)
    : usable_(block_size - (checksums ? kDirTailSize : 0)) {
  add(1);  // "."
  add(2);  // ".."
}

void DirectoryPacker::add(size_t name_length) {
  auto length = static_cast<uint32_t>(directory_record_length(name_length));
  if (used_ + length > usable_) {
    ++blocks_;
    used_ = 0;
  }
  used_ += length;
}

std::vector<char> build_directory(const Filesystem& fs, ext2_ino_t self, ext2_ino_t parent,
                                  const std::vector<DirEntry>& entries) {
  ext2_filsys raw = fs.get();
  const uint32_t block_size = fs.block_size();
  const bool checksums = fs.has_metadata_csum();
  const bool file_types = ext2fs_has_feature_filetype(raw->super);
  const uint32_t usable = block_size - (checksums ? kDirTailSize : 0);
  std::vector<char> out(block_size, '\0');
  size_t block = 0;     // offset of the current block in `out`
  uint32_t used = 0;    // bytes used in the current block
  uint32_t last = 0;    // offset of the last entry in the current block

  auto seal_block = [&] {
    auto* entry = reinterpret_cast<ext2_dir_entry*>(out.data() + block + last);
    ext2fs_set_rec_len(raw, usable - last, entry);
    if (!checksums) return;
    ext2fs_initialize_dirent_tail(
        raw, reinterpret_cast<ext2_dir_entry_tail*>(out.data() + block + usable));
    ext2fs_dir_block_csum_set(raw, self, reinterpret_cast<ext2_dir_entry*>(out.data() + block));
  };
  auto put = [&](std::string_view name, ext2_ino_t ino, uint8_t type) {
    auto length = static_cast<uint32_t>(directory_record_length(name.size()));
    if (used + length > usable) {
      seal_block();
      block = out.size();
      out.resize(out.size() + block_size, '\0');
      used = 0;
    }
    auto* entry = reinterpret_cast<ext2_dir_entry*>(out.data() + block + used);
    entry->inode = ino;
    ext2fs_set_rec_len(raw, length, entry);
    ext2fs_dirent_set_name_len(entry, static_cast<int>(name.size()));
    ext2fs_dirent_set_file_type(entry, file_types ? type : EXT2_FT_UNKNOWN);
    std::memcpy(entry->name, name.data(), name.size());
    last = used;
    used += length;
  };

  put(".", self, EXT2_FT_DIR);
  put("..", parent, EXT2_FT_DIR);
  for (const DirEntry& entry : entries) put(entry.name, entry.ino, entry.file_type);
  seal_block();
  return out;
}

Result<> write_symlink(Filesystem& fs, ext2_ino_t ino, Inode& inode, std::string_view target,
                       std::string_view path) {
  if (target.empty() || target.size() >= fs.block_size())
    return fail(ErrorKind::kBadInput, "{}: symlink {} needs a target of 1 to {} bytes, not {}",
                fs.name(), path, fs.block_size() - 1, target.size());
  if (target.size() < kFastSymlinkMax) {
    std::memcpy(inode->i_block, target.data(), target.size());
  } else {
    ContentWriter writer(fs, path);
    KILN_TRY(writer.write(0, target.data(), target.size()));
    KILN_ASSIGN(std::vector<Extent> extents, writer.finish());
    KILN_TRY(fs.attach(ino, inode, extents, path));
  }
  if (errcode_t rc = ext2fs_inode_size_set(fs.get(), inode.base(), target.size()); rc != 0)
    return failure(rc, fs.name(), fmt::format("cannot set the size of {}", path));
  return {};
}

void set_device(Inode& inode, uint32_t major, uint32_t minor) {
  // The kernel's encoding: the old 8:8 form in i_block[0] when it fits,
  // else the new 12:20 form in i_block[1].
  if (major < 256 && minor < 256) {
    inode->i_block[0] = (major << 8) | minor;
  } else {
    inode->i_block[1] = (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xffu) << 12);
  }
}

uint8_t file_type_of(EntryType type) {
  switch (type) {
    case EntryType::kFile:
    case EntryType::kHardlink: return EXT2_FT_REG_FILE;
    case EntryType::kDirectory: return EXT2_FT_DIR;
    case EntryType::kSymlink: return EXT2_FT_SYMLINK;
    case EntryType::kCharDevice: return EXT2_FT_CHRDEV;
    case EntryType::kBlockDevice: return EXT2_FT_BLKDEV;
    case EntryType::kFifo: return EXT2_FT_FIFO;
    case EntryType::kSocket: return EXT2_FT_SOCK;
  }
  return EXT2_FT_UNKNOWN;
}

uint16_t mode_bits_of(EntryType type) {
  switch (type) {
    case EntryType::kFile:
    case EntryType::kHardlink: return LINUX_S_IFREG;
    case EntryType::kDirectory: return LINUX_S_IFDIR;
    case EntryType::kSymlink: return LINUX_S_IFLNK;
    case EntryType::kCharDevice: return LINUX_S_IFCHR;
    case EntryType::kBlockDevice: return LINUX_S_IFBLK;
    case EntryType::kFifo: return LINUX_S_IFIFO;
    case EntryType::kSocket: return LINUX_S_IFSOCK;
  }
  return 0;
}

EntryType entry_type_of(uint16_t mode) {
  if (LINUX_S_ISDIR(mode)) return EntryType::kDirectory;
  if (LINUX_S_ISLNK(mode)) return EntryType::kSymlink;
  if (LINUX_S_ISCHR(mode)) return EntryType::kCharDevice;
  if (LINUX_S_ISBLK(mode)) return EntryType::kBlockDevice;
  if (LINUX_S_ISFIFO(mode)) return EntryType::kFifo;
  if (LINUX_S_ISSOCK(mode)) return EntryType::kSocket;
  return EntryType::kFile;
}

Result<std::string> read_content(const Filesystem& fs, ext2_ino_t ino, Inode& inode,
                                 std::string_view path) {
  uint64_t size = EXT2_I_SIZE(inode.base());
  if (LINUX_S_ISLNK(inode->i_mode) && ext2fs_is_fast_symlink(inode.base()))
    return std::string(reinterpret_cast<const char*>(inode->i_block),
                       std::min<uint64_t>(size, ext4::kFastSymlinkMax));
  ext2_file_t file = nullptr;
  errcode_t rc = ext2fs_file_open2(fs.get(), ino, inode.base(), 0, &file);
  if (rc != 0) return failure(rc, fs.name(), fmt::format("cannot open {}", path));
  std::string out(size, '\0');
  size_t done = 0;
  while (rc == 0 && done < size) {
    unsigned int got = 0;
    auto want = static_cast<unsigned int>(std::min<uint64_t>(size - done, 1 << 20));
    rc = ext2fs_file_read(file, out.data() + done, want, &got);
    if (got == 0) break;
    done += got;
  }
  ext2fs_file_close(file);
  if (rc != 0) return failure(rc, fs.name(), fmt::format("cannot read {}", path));
  out.resize(done);
  return out;
}

namespace {

int collect_name(ext2_ino_t, int, ext2_dir_entry* dirent, int, int, char*, void* data) {
  std::string name(dirent->name, ext2fs_dirent_name_len(dirent));
  if (name != "." && name != "..")
    static_cast<NameList*>(data)->entries.emplace_back(std::move(name), dirent->inode);
  return 0;
}

}  // namespace

Result<NameList> entries_of(const Filesystem& fs, ext2_ino_t directory, std::string_view path) {
  NameList list;
  if (errcode_t rc = ext2fs_dir_iterate2(fs.get(), directory, 0, nullptr, collect_name, &list);
      rc != 0)
    return failure(rc, fs.name(), fmt::format("cannot read directory {}", path));
  return list;
}

}  // namespace kiln::ext4
