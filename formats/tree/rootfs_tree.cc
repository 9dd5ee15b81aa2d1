#include "formats/tree/rootfs_tree.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/files.h"
#include "base/interrupt.h"
#include "base/tree_root.h"
#include "formats/tree/archive_data.h"
#include "formats/tree/tar_reader.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// Writes the current entry's data to a new file at `at` (never through a
// name already there) made with `mode` (less the umask), holes as holes.
// With skip_zero_blocks, 4 KiB blocks of zeros become holes too: a disk
// image stored whole stays sparse.
Result<> write_entry_data(TarReader& reader, const TreeRoot::Location& at, const TarEntry& entry,
                          const std::string& host, mode_t mode, bool skip_zero_blocks,
                          const std::function<void()>& after_chunk = {}) {
  int fd = ::openat(at.dir.get(), at.name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return fail_errno("cannot create", host, errno);
  UniqueFd file(fd);
  constexpr size_t kBlock = 4096;
  static const std::string kZeros(kBlock, '\0');
  DataChunk chunk;
  while (true) {
    KILN_TRY(check_interrupted());  // a disk image's data is minutes of work
    KILN_ASSIGN(bool more, reader.read_data(chunk));
    if (!more) break;
    if (after_chunk) after_chunk();
    if (!skip_zero_blocks) {
      KILN_TRY(pwrite_all(fd, chunk.data, chunk.size, chunk.offset, host));
      continue;
    }
    // Runs of data between zero blocks, each written in one call.
    size_t run = 0;
    for (size_t at_byte = 0; at_byte < chunk.size; at_byte += kBlock) {
      size_t length = std::min(kBlock, chunk.size - at_byte);
      if (std::memcmp(chunk.data + at_byte, kZeros.data(), length) != 0) continue;
      if (at_byte > run) KILN_TRY(pwrite_all(fd, chunk.data + run, at_byte - run, chunk.offset + run, host));
      run = at_byte + length;
    }
    if (chunk.size > run) KILN_TRY(pwrite_all(fd, chunk.data + run, chunk.size - run, chunk.offset + run, host));
  }
  if (::ftruncate(fd, static_cast<off_t>(entry.size)) != 0) return fail_errno("truncate", host, errno);
  return {};
}

const char* entry_kind(EntryType type) {
  switch (type) {
    case EntryType::kFile: return "regular file";
    case EntryType::kDirectory: return "directory";
    case EntryType::kSymlink: return "symlink";
    case EntryType::kHardlink: return "hard link";
    case EntryType::kCharDevice: return "character device";
    case EntryType::kBlockDevice: return "block device";
    case EntryType::kFifo: return "FIFO";
    case EntryType::kSocket: return "socket";
  }
  return "entry";
}

// What an entry becomes on the host: every call goes through the entry's
// directory, resolved inside the tree, and never follows the entry's own
// name, so no symlink the archive made can take a write out of the tree.
class TreeExtractor {
 public:
  TreeExtractor(TarReader& reader, const TreeRoot& root) : reader_(reader), root_(root) {}

  Result<> run() {
    // Directory metadata goes last: creating children changes their times.
    std::vector<TarEntry> directories;
    TarEntry entry;
    while (true) {
      KILN_TRY(check_interrupted());
      KILN_ASSIGN(bool more, reader_.next(entry));
      if (!more) break;
      if (entry.path.empty()) {
        if (entry.type != EntryType::kDirectory)
          return fail(ErrorKind::kBadInput, "{}: the root entry is not a directory", reader_.name());
        directories.push_back(entry);
        continue;
      }
      if (auto made = place(entry); !made)
        return std::unexpected(std::move(made).error().with_context(
            fmt::format("{}: entry {}", reader_.name(), shown_value(entry.path))));
      if (entry.type == EntryType::kDirectory) directories.push_back(entry);
    }
    for (auto it = directories.rbegin(); it != directories.rend(); ++it) {
      KILN_ASSIGN(TreeRoot::Location at, root_.locate(it->path));
      KILN_TRY(apply_metadata(at, *it));
    }
    return {};
  }

 private:
  Result<> place(const TarEntry& entry) {
    KILN_ASSIGN(TreeRoot::Location at, root_.locate_creating(entry.path));
    KILN_TRY(create(at, entry));
    if (entry.type == EntryType::kDirectory || entry.type == EntryType::kHardlink) return {};
    return apply_metadata(at, entry);
  }

  Result<> create(const TreeRoot::Location& at, const TarEntry& entry) {
    int dir = at.dir.get();
    const char* name = at.name.c_str();
    std::string host = root_.host_path(entry.path);
    KILN_TRY(clear(at, entry.type, host));
    int rc = 0;
    switch (entry.type) {
      case EntryType::kDirectory:
        rc = ::mkdirat(dir, name, 0700);
        if (rc != 0 && errno == EEXIST) rc = 0;
        break;
      case EntryType::kFile: return write_data(at, entry, host);
      case EntryType::kSymlink: rc = ::symlinkat(entry.link_target.c_str(), dir, name); break;
      case EntryType::kHardlink: {
        // The source is found the same way: inside the tree, its own name
        // not followed, so a link never reaches a host file.
        KILN_ASSIGN(TreeRoot::Location source, root_.locate(entry.link_target));
        rc = ::linkat(source.dir.get(), source.name.c_str(), dir, name, 0);
        break;
      }
      case EntryType::kCharDevice:
      case EntryType::kBlockDevice:
      case EntryType::kFifo:
      case EntryType::kSocket:
        rc = ::mknodat(dir, name, node_type(entry.type) | 0600, makedev(entry.rdev_major, entry.rdev_minor));
        break;
    }
    if (rc != 0) return fail_errno("cannot create", host, errno);
    return {};
  }

  static mode_t node_type(EntryType type) {
    switch (type) {
      case EntryType::kCharDevice: return S_IFCHR;
      case EntryType::kBlockDevice: return S_IFBLK;
      case EntryType::kFifo: return S_IFIFO;
      default: return S_IFSOCK;
    }
  }

  // Removes whatever an earlier entry put at the name, as tar does; a
  // directory stays for a directory.
  static Result<> clear(const TreeRoot::Location& at, EntryType incoming, const std::string& host) {
    struct stat st;
    if (::fstatat(at.dir.get(), at.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return {};
    if (S_ISDIR(st.st_mode) && incoming == EntryType::kDirectory) return {};
    return remove_all_at(at.dir.get(), at.name, host);
  }

  Result<> write_data(const TreeRoot::Location& at, const TarEntry& entry, const std::string& host) {
    return write_entry_data(reader_, at, entry, host, 0600, /*skip_zero_blocks=*/false);
  }

  Result<> apply_metadata(const TreeRoot::Location& at, const TarEntry& entry) {
    int dir = at.dir.get();
    // The root's own entry names no child: "." is the directory itself.
    const std::string name = at.name.empty() ? "." : at.name;
    std::string host = root_.host_path(entry.path);
    if (::fchownat(dir, name.c_str(), entry.uid, entry.gid, AT_SYMLINK_NOFOLLOW) != 0)
      return fail_errno("chown", host, errno);
    // glibc's fchmodat(AT_SYMLINK_NOFOLLOW) acts on the name itself and
    // refuses only symlinks, which have no mode.
    if (entry.type != EntryType::kSymlink && ::fchmodat(dir, name.c_str(), entry.mode, AT_SYMLINK_NOFOLLOW) != 0)
      return fail_errno("chmod", host, errno);
    for (const auto& [attribute, value] : entry.xattrs) KILN_TRY(set_xattr_at(dir, name, attribute, value, host));
    struct timespec times[2] = {{entry.mtime, static_cast<long>(entry.mtime_nsec)},
                                {entry.mtime, static_cast<long>(entry.mtime_nsec)}};
    if (::utimensat(dir, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) return fail_errno("set times", host, errno);
    return {};
  }

  TarReader& reader_;
  const TreeRoot& root_;
};

}  // namespace

Result<> extract_to_tree(const fs::path& archive, const fs::path& dir) {
  KILN_ASSIGN(TarReader reader, TarReader::open(archive));
  KILN_ASSIGN(TreeRoot root, TreeRoot::open(dir));
  return TreeExtractor(reader, root).run();
}

Result<std::vector<std::string>> extract_regular_files(const fs::path& archive, const fs::path& dir,
                                                       const std::function<void(uint64_t, uint64_t)>& progress) {
  KILN_ASSIGN(TarReader reader, TarReader::open(archive));
  KILN_ASSIGN(TreeRoot root, TreeRoot::open(dir));
  std::vector<std::string> files;
  TarEntry entry;
  while (true) {
    KILN_TRY(check_interrupted());
    KILN_ASSIGN(bool more, reader.next(entry));
    if (!more) break;
    if (progress) progress(reader.position(), reader.total_size());
    if (entry.path.empty()) continue;  // "./"
    const std::string shown = shown_value(entry.path);
    if (entry.type != EntryType::kFile && entry.type != EntryType::kDirectory)
      return fail(ErrorKind::kBadInput, "{}: entry {} is a {}; kiln takes only regular files (and directories) from it",
                  reader.name(), shown, entry_kind(entry.type));
    auto at = root.locate_creating(entry.path, 0700);
    if (!at)
      return std::unexpected(std::move(at).error().with_context(fmt::format("{}: entry {}", reader.name(), shown)));
    struct stat st;
    bool exists = ::fstatat(at->dir.get(), at->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (entry.type == EntryType::kDirectory) {
      if (exists && S_ISDIR(st.st_mode)) continue;
      if (!exists && ::mkdirat(at->dir.get(), at->name.c_str(), 0700) == 0) continue;
    }
    if (exists)
      return fail(ErrorKind::kBadInput, "{}: entry {} appears twice (or as a file and a directory)", reader.name(),
                  shown);
    if (entry.type == EntryType::kDirectory) return fail_errno("cannot create", root.host_path(entry.path), errno);
    auto report = [&] {
      if (progress) progress(reader.position(), reader.total_size());
    };
    if (auto written = write_entry_data(reader, *at, entry, root.host_path(entry.path), 0644,
                                        /*skip_zero_blocks=*/true, report);
        !written)
      return std::unexpected(
          std::move(written).error().with_context(fmt::format("{}: entry {}", reader.name(), shown)));
    files.push_back(entry.path);
  }
  return files;
}

namespace {

struct ArchiveWriter {
  archive* handle = archive_write_new();
  ~ArchiveWriter() { archive_write_free(handle); }
};

struct EntryHandle {
  archive_entry* handle = archive_entry_new();
  ~EntryHandle() { archive_entry_free(handle); }
};

Result<std::vector<std::pair<std::string, std::string>>> read_xattrs(const fs::path& path) {
  std::vector<std::pair<std::string, std::string>> out;
  ssize_t size = ::llistxattr(path.c_str(), nullptr, 0);
  if (size <= 0) return out;
  std::string names(static_cast<size_t>(size), '\0');
  size = ::llistxattr(path.c_str(), names.data(), names.size());
  if (size < 0) return fail_errno("list xattrs", path.string(), errno);
  names.resize(static_cast<size_t>(size));
  for (size_t start = 0; start < names.size();) {
    std::string name = names.c_str() + start;
    start += name.size() + 1;
    ssize_t length = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (length < 0) return fail_errno("read xattr " + name, path.string(), errno);
    std::string value(static_cast<size_t>(length), '\0');
    length = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (length < 0) return fail_errno("read xattr " + name, path.string(), errno);
    value.resize(static_cast<size_t>(length));
    out.emplace_back(std::move(name), std::move(value));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The data ranges of a file, from SEEK_DATA/SEEK_HOLE.
std::vector<std::pair<uint64_t, uint64_t>> data_ranges(int fd, uint64_t size) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  uint64_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) break;
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) hole = static_cast<off_t>(size);
    ranges.emplace_back(data, static_cast<uint64_t>(hole) - data);
    pos = static_cast<uint64_t>(hole);
  }
  return ranges;
}

class TreePacker {
 public:
  TreePacker(archive* out, fs::path root, int64_t clamp, bool tar)
      : out_(out), root_(std::move(root)), clamp_(clamp), tar_(tar) {}

  Result<> pack(const std::string& relative) {
    KILN_TRY(check_interrupted());
    fs::path path = relative.empty() ? root_ : root_ / relative;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return fail_errno("stat", path.string(), errno);
    EntryHandle entry;
    archive_entry_set_pathname(entry.handle, relative.empty() ? "./" : ("./" + relative).c_str());
    archive_entry_set_mode(entry.handle, st.st_mode);
    archive_entry_set_uid(entry.handle, st.st_uid);
    archive_entry_set_gid(entry.handle, st.st_gid);
    int64_t mtime = st.st_mtim.tv_sec;
    long nsec = st.st_mtim.tv_nsec;
    if (clamp_ && mtime >= clamp_) {
      mtime = clamp_;
      nsec = 0;
    }
    archive_entry_set_mtime(entry.handle, mtime, nsec);
    if (tar_) {
      KILN_ASSIGN(auto xattrs, read_xattrs(path));
      for (const auto& [name, value] : xattrs)
        archive_entry_xattr_add_entry(entry.handle, name.c_str(), value.data(), value.size());
    } else {
      // cpio readers gather entries of one inode number with nlink > 1 as hard
      // links: every entry gets its own number, and files are single links
      // (links are copies here).
      archive_entry_set_ino64(entry.handle, ++inodes_);
      archive_entry_set_nlink(entry.handle, S_ISDIR(st.st_mode) ? st.st_nlink : 1);
      // cpio headers always carry a size; a file's is set when its data is.
      archive_entry_set_size(entry.handle, 0);
    }

    if (tar_ && S_ISREG(st.st_mode) && st.st_nlink > 1) {
      auto [it, first] = links_.try_emplace({st.st_dev, st.st_ino}, relative);
      if (!first) {
        archive_entry_set_hardlink(entry.handle, ("./" + it->second).c_str());
        archive_entry_set_size(entry.handle, 0);
        return write_header(entry.handle, path);
      }
    }
    if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
      if (n < 0) return fail_errno("readlink", path.string(), errno);
      target.resize(static_cast<size_t>(n));
      archive_entry_set_symlink(entry.handle, target.c_str());
      return write_header(entry.handle, path);
    }
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      archive_entry_set_rdevmajor(entry.handle, major(st.st_rdev));
      archive_entry_set_rdevminor(entry.handle, minor(st.st_rdev));
    }
    if (S_ISREG(st.st_mode)) return pack_file(entry.handle, path, st);
    KILN_TRY(write_header(entry.handle, path));
    if (S_ISDIR(st.st_mode)) return pack_children(relative, path);
    return {};
  }

 private:
  Result<> write_header(archive_entry* entry, const fs::path& path) {
    if (archive_write_header(out_, entry) != ARCHIVE_OK)
      return fail(ErrorKind::kFailed, "{}: cannot write the archive header: {}", path.string(),
                  archive_error_string(out_));
    return {};
  }

  Result<> pack_file(archive_entry* entry, const fs::path& path, const struct stat& st) {
    KILN_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY));
    uint64_t size = static_cast<uint64_t>(st.st_size);
    archive_entry_set_size(entry, static_cast<la_int64_t>(size));
    auto ranges = data_ranges(fd.get(), size);
    bool sparse = tar_ && static_cast<uint64_t>(st.st_blocks) * 512 < size;
    if (sparse)
      for (const auto& [offset, length] : ranges) archive_entry_sparse_add_entry(entry, offset, length);
    KILN_TRY(write_header(entry, path));
    auto read = [&](uint64_t offset, char* buffer, size_t want) -> Result<size_t> {
      ssize_t n = ::pread(fd.get(), buffer, want, static_cast<off_t>(offset));
      if (n < 0) return fail_errno("read", path.string(), errno);
      return static_cast<size_t>(n);
    };
    KILN_TRY(write_archive_data(out_, size, ranges, read, path.string()));
    return {};
  }

  Result<> pack_children(const std::string& relative, const fs::path& path) {
    std::vector<std::string> names;
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(path.c_str()), ::closedir);
    if (!dir) return fail_errno("cannot open directory", path.string(), errno);
    while (dirent* item = ::readdir(dir.get())) {
      std::string_view name = item->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    std::sort(names.begin(), names.end());
    for (const std::string& name : names)
      KILN_TRY(pack(relative.empty() ? name : relative + "/" + name));
    return {};
  }

  archive* out_;
  fs::path root_;
  int64_t clamp_;
  bool tar_;  // pax tar; otherwise cpio newc
  int64_t inodes_ = 0;  // cpio inode numbers handed out
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
};

}  // namespace

Result<> write_tree_as_tar(const fs::path& dir, const fs::path& out, int64_t clamp_mtime) {
  return write_tree_as_archive(dir, out, {}, clamp_mtime);
}

Result<> write_tree_as_archive(const fs::path& dir, const fs::path& out, ArchiveForm form, int64_t clamp_mtime) {
  KILN_ASSIGN(AtomicFile file, AtomicFile::create(out));
  ArchiveWriter writer;
  bool tar = form.format == ArchiveFormat::kPaxTar;
  if (tar) archive_write_set_format_pax_restricted(writer.handle);
  else archive_write_set_format_cpio_newc(writer.handle);
  switch (form.compression) {
    case ArchiveCompression::kNone: break;
    case ArchiveCompression::kGzip: archive_write_add_filter_gzip(writer.handle); break;
    case ArchiveCompression::kXz: archive_write_add_filter_xz(writer.handle); break;
    case ArchiveCompression::kZstd: archive_write_add_filter_zstd(writer.handle); break;
  }
  archive_write_set_bytes_in_last_block(writer.handle, 1);
  if (archive_write_open_fd(writer.handle, file.fd()) != ARCHIVE_OK)
    return fail(ErrorKind::kFailed, "{}: {}", out.string(), archive_error_string(writer.handle));
  TreePacker packer(writer.handle, dir, clamp_mtime, tar);
  KILN_TRY(packer.pack(""));
  if (archive_write_close(writer.handle) != ARCHIVE_OK)
    return fail(ErrorKind::kFailed, "{}: {}", out.string(), archive_error_string(writer.handle));
  return file.commit();
}

Result<ArchiveForm> archive_form_of(const fs::path& path) {
  std::unique_ptr<archive, int (*)(archive*)> reader(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(reader.get());
  archive_read_support_format_tar(reader.get());
  archive_read_support_format_gnutar(reader.get());
  archive_read_support_format_cpio(reader.get());
  archive_entry* entry = nullptr;
  if (archive_read_open_filename(reader.get(), path.c_str(), 1 << 16) != ARCHIVE_OK ||
      archive_read_next_header(reader.get(), &entry) != ARCHIVE_OK)
    return fail(ErrorKind::kBadInput, "{}: not a tar or cpio archive kiln can read ({})", path.string(),
                archive_error_string(reader.get()));
  ArchiveForm form;
  int format = archive_format(reader.get()) & ARCHIVE_FORMAT_BASE_MASK;
  if (format == ARCHIVE_FORMAT_CPIO) form.format = ArchiveFormat::kCpioNewc;
  else if (format == ARCHIVE_FORMAT_TAR) form.format = ArchiveFormat::kPaxTar;
  else return fail(ErrorKind::kBadInput, "{}: {} archives cannot be rewritten; kiln writes tar and cpio",
                   path.string(), archive_format_name(reader.get()));
  switch (archive_filter_code(reader.get(), 0)) {
    case ARCHIVE_FILTER_NONE: break;
    case ARCHIVE_FILTER_GZIP: form.compression = ArchiveCompression::kGzip; break;
    case ARCHIVE_FILTER_XZ: form.compression = ArchiveCompression::kXz; break;
    case ARCHIVE_FILTER_ZSTD: form.compression = ArchiveCompression::kZstd; break;
    default:
      return fail(ErrorKind::kBadInput, "{}: {} compression cannot be rewritten; kiln writes gzip, xz and zstd",
                  path.string(), archive_filter_name(reader.get(), 0));
  }
  return form;
}

}  // namespace kiln
