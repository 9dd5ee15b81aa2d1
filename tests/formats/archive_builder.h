// ArchiveBuilder: writes small archives with libarchive inside a test, so
// reader and ext4 tests can hold every entry type (sparse files, devices,
// hardlinks, xattrs) in any format and compression without fixture files.
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace kiln::testing {

enum class ArchiveFormat { kPax, kGnuTar, kUstar, kCpioNewc, kCpioOdc };
enum class ArchiveFilter { kNone, kGzip, kXz, kZstd };

// What an entry carries besides its type and content.
struct EntryMeta {
  uint32_t mode = 0644;
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime = 1600000000;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

class ArchiveBuilder {
 public:
  explicit ArchiveBuilder(ArchiveFormat format = ArchiveFormat::kPax,
                          ArchiveFilter filter = ArchiveFilter::kNone)
      : archive_(archive_write_new(), archive_write_free) {
    archive* a = archive_.get();
    switch (format) {
      case ArchiveFormat::kPax: archive_write_set_format_pax(a); break;
      case ArchiveFormat::kGnuTar: archive_write_set_format_gnutar(a); break;
      case ArchiveFormat::kUstar: archive_write_set_format_ustar(a); break;
      case ArchiveFormat::kCpioNewc: archive_write_set_format_cpio_newc(a); break;
      case ArchiveFormat::kCpioOdc: archive_write_set_format_cpio_odc(a); break;
    }
    switch (filter) {
      case ArchiveFilter::kNone: break;
      case ArchiveFilter::kGzip: archive_write_add_filter_gzip(a); break;
      case ArchiveFilter::kXz: archive_write_add_filter_xz(a); break;
      case ArchiveFilter::kZstd: archive_write_add_filter_zstd(a); break;
    }
    // Tests build tiny archives; no padding to 10 KiB records for cpio.
    archive_write_set_bytes_in_last_block(a, 1);
    check(archive_write_open(a, this, nullptr, append, nullptr), "open");
  }
  ArchiveBuilder(const ArchiveBuilder&) = delete;
  ArchiveBuilder& operator=(const ArchiveBuilder&) = delete;

  ArchiveBuilder& file(const std::string& path, const std::string& content, EntryMeta meta = {}) {
    Entry entry = make(path, AE_IFREG, meta);
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(content.size()));
    write(entry, content);
    return *this;
  }

  // A sparse file of `size` bytes holding `pieces` (offset, data) and
  // holes everywhere else (pax only: it carries the sparse map).
  ArchiveBuilder& sparse_file(const std::string& path, uint64_t size,
                              const std::vector<std::pair<uint64_t, std::string>>& pieces,
                              EntryMeta meta = {}) {
    Entry entry = make(path, AE_IFREG, meta);
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(size));
    for (const auto& [offset, piece] : pieces)
      archive_entry_sparse_add_entry(entry.get(), static_cast<la_int64_t>(offset),
                                     static_cast<la_int64_t>(piece.size()));
    check(archive_write_header(archive_.get(), entry.get()), path);
    // libarchive takes the whole logical content and leaves the holes out.
    constexpr uint64_t kWindow = 1 << 20;
    std::string window;
    for (uint64_t start = 0; start < size; start += kWindow) {
      window.assign(std::min(kWindow, size - start), '\0');
      for (const auto& [offset, piece] : pieces) {
        uint64_t from = std::max(offset, start);
        uint64_t to = std::min(offset + piece.size(), start + window.size());
        if (from < to) window.replace(from - start, to - from, piece, from - offset, to - from);
      }
      if (archive_write_data(archive_.get(), window.data(), window.size()) !=
          static_cast<la_ssize_t>(window.size()))
        ADD_FAILURE() << "libarchive: writing " << path << ": " << archive_error_string(archive_.get());
    }
    return *this;
  }

  ArchiveBuilder& directory(const std::string& path, EntryMeta meta = {}) {
    if (meta.mode == 0644) meta.mode = 0755;
    Entry entry = make(path, AE_IFDIR, meta);
    write(entry, "");
    return *this;
  }

  ArchiveBuilder& symlink(const std::string& path, const std::string& target, EntryMeta meta = {}) {
    meta.mode = 0777;
    Entry entry = make(path, AE_IFLNK, meta);
    archive_entry_set_symlink(entry.get(), target.c_str());
    write(entry, "");
    return *this;
  }

  ArchiveBuilder& hardlink(const std::string& path, const std::string& target, EntryMeta meta = {}) {
    Entry entry = make(path, AE_IFREG, meta);
    archive_entry_set_hardlink(entry.get(), target.c_str());
    archive_entry_set_size(entry.get(), 0);
    write(entry, "");
    return *this;
  }

  ArchiveBuilder& device(const std::string& path, bool block, uint32_t major, uint32_t minor,
                         EntryMeta meta = {}) {
    Entry entry = make(path, block ? AE_IFBLK : AE_IFCHR, meta);
    archive_entry_set_rdevmajor(entry.get(), major);
    archive_entry_set_rdevminor(entry.get(), minor);
    write(entry, "");
    return *this;
  }

  ArchiveBuilder& fifo(const std::string& path, EntryMeta meta = {}) {
    Entry entry = make(path, AE_IFIFO, meta);
    write(entry, "");
    return *this;
  }

  // cpio only: tar has no socket type.
  ArchiveBuilder& socket(const std::string& path, EntryMeta meta = {}) {
    Entry entry = make(path, AE_IFSOCK, meta);
    write(entry, "");
    return *this;
  }

  // cpio's way of storing hardlinks: the same inode number under several
  // names, the data with the last one.
  ArchiveBuilder& cpio_linked_file(const std::vector<std::string>& names, const std::string& content,
                                   int64_t inode, EntryMeta meta = {}) {
    for (size_t i = 0; i < names.size(); ++i) {
      Entry entry = make(names[i], AE_IFREG, meta);
      archive_entry_set_ino(entry.get(), inode);
      archive_entry_set_nlink(entry.get(), static_cast<unsigned>(names.size()));
      bool last = i + 1 == names.size();
      archive_entry_set_size(entry.get(), last ? static_cast<la_int64_t>(content.size()) : 0);
      write(entry, last ? content : "");
    }
    return *this;
  }

  // Finishes the archive and returns its bytes.
  std::string bytes() {
    if (archive_) {
      check(archive_write_close(archive_.get()), "close");
      archive_.reset();
    }
    return bytes_;
  }

  std::filesystem::path write_to(const std::filesystem::path& path) {
    std::string data = bytes();
    std::ofstream out(path, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    return path;
  }

 private:
  using Entry = std::unique_ptr<archive_entry, decltype(&archive_entry_free)>;

  static la_ssize_t append(archive*, void* self, const void* data, size_t size) {
    static_cast<ArchiveBuilder*>(self)->bytes_.append(static_cast<const char*>(data), size);
    return static_cast<la_ssize_t>(size);
  }

  Entry make(const std::string& path, unsigned type, const EntryMeta& meta) {
    Entry entry(archive_entry_new(), archive_entry_free);
    archive_entry_set_pathname(entry.get(), path.c_str());
    archive_entry_set_filetype(entry.get(), type);
    archive_entry_set_perm(entry.get(), meta.mode);
    archive_entry_set_uid(entry.get(), meta.uid);
    archive_entry_set_gid(entry.get(), meta.gid);
    archive_entry_set_mtime(entry.get(), meta.mtime, 0);
    archive_entry_set_size(entry.get(), 0);  // cpio wants a size on every entry
    for (const auto& [name, value] : meta.xattrs)
      archive_entry_xattr_add_entry(entry.get(), name.c_str(), value.data(), value.size());
    return entry;
  }

  void write(Entry& entry, const std::string& data) {
    check(archive_write_header(archive_.get(), entry.get()), archive_entry_pathname(entry.get()));
    if (!data.empty() && archive_write_data(archive_.get(), data.data(), data.size()) !=
                             static_cast<la_ssize_t>(data.size()))
      ADD_FAILURE() << "libarchive: writing data: " << archive_error_string(archive_.get());
  }

  void check(int rc, const std::string& what) {
    if (rc != ARCHIVE_OK)
      ADD_FAILURE() << "libarchive: " << what << ": " << archive_error_string(archive_.get());
  }

  std::unique_ptr<archive, decltype(&archive_write_free)> archive_;
  std::string bytes_;
};

}  // namespace kiln::testing
