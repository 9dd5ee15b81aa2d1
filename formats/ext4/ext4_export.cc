// The archive exporter: a filesystem written out as a pax tar, the inverse
// of ext4_import.cc, so that a bake can start from an image's root
// (bootstrap.from a kiln image directory) without mounting it.
//
// The walk is depth-first with each directory's names sorted, so one
// filesystem always gives one archive. An inode with several links is
// written once, at its first path; its other paths are hard links to it.
// Holes are found from the block map and written as a sparse entry
// (formats/tree/archive_data.h).
#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <map>
#include <memory>

#include "base/interrupt.h"
#include "formats/ext4/ext4_fs.h"
#include "formats/tree/archive_data.h"

namespace kiln::ext4 {
namespace {

namespace fs = std::filesystem;

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using EntryPtr = std::unique_ptr<archive_entry, EntryDeleter>;

struct XattrNames {
  std::vector<std::string> names;
};

int collect_xattr_name(char* name, char*, size_t, void* data) {
  static_cast<XattrNames*>(data)->names.emplace_back(name);
  return 0;
}

class Exporter {
 public:
  Exporter(const Filesystem& fs, archive* out, std::function<void(uint64_t, uint64_t)> progress)
      : fs_(fs), out_(out), progress_(std::move(progress)),
        in_use_(fs.get()->super->s_inodes_count - fs.get()->super->s_free_inodes_count) {}

  Result<> run() { return pack(EXT2_ROOT_INO, ""); }
  ExportStats stats() const { return stats_; }

 private:
  Result<> pack(ext2_ino_t ino, const std::string& relative) {
    KILN_TRY(check_interrupted());
    const std::string shown = "/" + relative;
    KILN_ASSIGN(Inode inode, fs_.read_inode(ino, shown));
    const uint16_t mode = inode->i_mode;
    if (LINUX_S_ISSOCK(mode)) return {};
    EntryPtr entry(archive_entry_new());
    archive_entry_set_pathname(entry.get(), relative.empty() ? "./" : ("./" + relative).c_str());
    archive_entry_set_mode(entry.get(), mode);
    archive_entry_set_uid(entry.get(), inode.uid());
    archive_entry_set_gid(entry.get(), inode.gid());
    archive_entry_set_mtime(entry.get(), inode.mtime(), inode.mtime_nsec());
    KILN_TRY(add_xattrs(entry.get(), ino, shown));
    ++stats_.entries;
    if (progress_ && stats_.entries % 256 == 0) progress_(stats_.entries, in_use_);

    if (!LINUX_S_ISDIR(mode) && inode->i_links_count > 1) {
      auto [it, first] = links_.try_emplace(ino, relative);
      if (!first) {
        archive_entry_set_hardlink(entry.get(), ("./" + it->second).c_str());
        archive_entry_set_size(entry.get(), 0);
        return write_header(entry.get(), shown);
      }
    }
    if (LINUX_S_ISLNK(mode)) {
      KILN_ASSIGN(std::string target, read_content(fs_, ino, inode, shown));
      archive_entry_set_symlink(entry.get(), target.c_str());
      return write_header(entry.get(), shown);
    }
    if (LINUX_S_ISCHR(mode) || LINUX_S_ISBLK(mode)) {
      auto [major, minor] = device_of(inode);
      archive_entry_set_rdevmajor(entry.get(), major);
      archive_entry_set_rdevminor(entry.get(), minor);
    }
    if (LINUX_S_ISREG(mode)) return pack_file(entry.get(), ino, inode, shown);
    KILN_TRY(write_header(entry.get(), shown));
    if (LINUX_S_ISDIR(mode)) return pack_children(ino, relative);
    return {};
  }

  Result<> pack_children(ext2_ino_t ino, const std::string& relative) {
    KILN_ASSIGN(NameList list, entries_of(fs_, ino, "/" + relative));
    std::sort(list.entries.begin(), list.entries.end());
    for (const auto& [name, child] : list.entries) {
      // mke2fs's, which every ext filesystem has and a rootfs archive does not.
      if (relative.empty() && name == "lost+found") continue;
      KILN_TRY(pack(child, relative.empty() ? name : relative + "/" + name));
    }
    return {};
  }

  // The kernel's encoding, as set_device writes it.
  static std::pair<uint32_t, uint32_t> device_of(const Inode& inode) {
    uint32_t old_form = inode->i_block[0];
    if (old_form != 0) return {(old_form >> 8) & 0xff, old_form & 0xff};
    uint32_t new_form = inode->i_block[1];
    return {(new_form & 0xfff00) >> 8, (new_form & 0xff) | ((new_form >> 12) & 0xfff00)};
  }

  Result<> add_xattrs(archive_entry* entry, ext2_ino_t ino, const std::string& shown) {
    ext2_xattr_handle* handle = nullptr;
    errcode_t rc = ext2fs_xattrs_open(fs_.get(), ino, &handle);
    if (rc == 0) rc = ext2fs_xattrs_read(handle);
    XattrNames names;
    if (rc == 0) rc = ext2fs_xattrs_iterate(handle, collect_xattr_name, &names);
    std::sort(names.names.begin(), names.names.end());
    for (const std::string& name : names.names) {
      if (rc != 0) break;
      // xattr_get gives POSIX ACLs in the Linux xattr format tar stores.
      void* value = nullptr;
      size_t size = 0;
      rc = ext2fs_xattr_get(handle, name.c_str(), &value, &size);
      if (rc != 0) break;
      archive_entry_xattr_add_entry(entry, name.c_str(), value, size);
      ext2fs_free_mem(&value);
    }
    if (handle != nullptr) ext2fs_xattrs_close(&handle);
    if (rc != 0) return failure(rc, fs_.name(), fmt::format("cannot read the attributes of {}", shown));
    return {};
  }

  // The file's data as runs of blocks (offset, length in bytes), holes left out.
  Result<std::vector<std::pair<uint64_t, uint64_t>>> data_runs(ext2_ino_t ino, Inode& inode, uint64_t size,
                                                               const std::string& shown) {
    std::vector<std::pair<uint64_t, uint64_t>> runs;
    const uint64_t block = fs_.block_size();
    const blk64_t blocks = (size + block - 1) / block;
    for (blk64_t logical = 0; logical < blocks; ++logical) {
      blk64_t physical = 0;
      if (errcode_t rc = ext2fs_bmap2(fs_.get(), ino, inode.base(), nullptr, 0, logical, nullptr, &physical); rc != 0)
        return failure(rc, fs_.name(), fmt::format("cannot map the blocks of {}", shown));
      if (physical == 0) continue;
      uint64_t offset = logical * block, length = std::min<uint64_t>(block, size - offset);
      if (!runs.empty() && runs.back().first + runs.back().second == offset)
        runs.back().second += length;
      else
        runs.emplace_back(offset, length);
    }
    return runs;
  }

  Result<> pack_file(archive_entry* entry, ext2_ino_t ino, Inode& inode, const std::string& shown) {
    const uint64_t size = EXT2_I_SIZE(inode.base());
    archive_entry_set_size(entry, static_cast<la_int64_t>(size));
    KILN_ASSIGN(auto runs, data_runs(ino, inode, size, shown));
    uint64_t stored = 0;
    for (const auto& run : runs) stored += run.second;
    if (stored < size)
      for (const auto& [offset, length] : runs) archive_entry_sparse_add_entry(entry, offset, length);
    KILN_TRY(write_header(entry, shown));
    ext2_file_t file = nullptr;
    errcode_t rc = ext2fs_file_open2(fs_.get(), ino, inode.base(), 0, &file);
    if (rc != 0) return failure(rc, fs_.name(), fmt::format("cannot open {}", shown));
    std::unique_ptr<ext2_file, errcode_t (*)(ext2_file_t)> closer(file, ext2fs_file_close);
    auto read = [&](uint64_t offset, char* buffer, size_t want) -> Result<size_t> {
      unsigned int got = 0;
      errcode_t rc = ext2fs_file_llseek(file, offset, EXT2_SEEK_SET, nullptr);
      if (rc == 0) rc = ext2fs_file_read(file, buffer, static_cast<unsigned int>(want), &got);
      if (rc != 0) return failure(rc, fs_.name(), fmt::format("cannot read {}", shown));
      return got;
    };
    KILN_ASSIGN(uint64_t data, write_archive_data(out_, size, runs, read, fs_.name() + ":" + shown));
    stats_.data_bytes += data;
    return {};
  }

  Result<> write_header(archive_entry* entry, const std::string& shown) {
    if (archive_write_header(out_, entry) != ARCHIVE_OK)
      return fail(ErrorKind::kFailed, "cannot write the archive header of {}: {}", shown, archive_error_string(out_));
    return {};
  }

  const Filesystem& fs_;
  archive* out_;
  std::function<void(uint64_t, uint64_t)> progress_;
  uint64_t in_use_;
  ExportStats stats_;
  std::map<ext2_ino_t, std::string> links_;
};

}  // namespace

Result<ExportStats> export_archive(const Filesystem& fs, const fs::path& path,
                                   const std::function<void(uint64_t, uint64_t)>& progress) {
  std::unique_ptr<archive, ArchiveDeleter> out(archive_write_new());
  if (archive_write_set_format_pax_restricted(out.get()) != ARCHIVE_OK ||
      archive_write_open_filename(out.get(), path.c_str()) != ARCHIVE_OK)
    return fail(ErrorKind::kFailed, "{}: cannot create the archive: {}", path.string(), archive_error_string(out.get()));
  Exporter exporter(fs, out.get(), progress);
  KILN_TRY(exporter.run());
  if (archive_write_close(out.get()) != ARCHIVE_OK)
    return fail(ErrorKind::kFailed, "{}: cannot finish the archive: {}", path.string(), archive_error_string(out.get()));
  return exporter.stats();
}

}  // namespace kiln::ext4
