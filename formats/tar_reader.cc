#include "formats/tar_reader.h"

#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <memory>

namespace kiln {
namespace {

// libarchive reads the file in blocks of this size; large blocks mean fewer
// system calls and large data pieces for the ext4 writer.
constexpr size_t kReadBlockSize = 1 << 20;
// How often a header read may ask to be retried before giving up.
constexpr int kMaxRetries = 16;

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;

std::string archive_message(archive* a) {
  const char* text = archive_error_string(a);
  return text ? text : "unknown libarchive error";
}

// The rootfs formats kiln promises: tar and cpio, plain or compressed.
// Debian's libarchive has every one of these decompressors built in.
Result<ArchivePtr> new_reader(const std::string& name) {
  ArchivePtr a(archive_read_new());
  if (!a) return fail(ErrorKind::kFailed, "{}: cannot allocate an archive reader", name);
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  archive_read_support_format_cpio(a.get());
  for (auto support : {archive_read_support_filter_gzip, archive_read_support_filter_xz,
                       archive_read_support_filter_zstd, archive_read_support_filter_bzip2,
                       archive_read_support_filter_lzma, archive_read_support_filter_lz4}) {
    if (support(a.get()) == ARCHIVE_FATAL)
      return fail(ErrorKind::kFailed, "{}: libarchive: {}", name, archive_message(a.get()));
  }
  return a;
}

std::unexpected<Error> bad_path(const std::string& archive, std::string_view path,
                                std::string_view what) {
  return fail(ErrorKind::kBadInput,
              "{}: entry '{}' {}: it would write outside the image; "
              "re-create the archive with paths relative to the root (\"./etc/passwd\")",
              archive, path, what);
}

// "./usr//bin/" -> "usr/bin"; "." and "./" -> "" (the root).
Result<std::string> normalise(const std::string& archive, std::string_view raw,
                              std::string_view role) {
  if (raw.starts_with('/'))
    return bad_path(archive, raw, fmt::format("has an absolute {}", role));
  std::string out;
  size_t start = 0;
  while (start <= raw.size()) {
    size_t slash = raw.find('/', start);
    if (slash == std::string_view::npos) slash = raw.size();
    std::string_view part = raw.substr(start, slash - start);
    if (part == "..")
      return bad_path(archive, raw, fmt::format("has a '..' component in its {}", role));
    if (!part.empty() && part != ".") {
      if (!out.empty()) out += '/';
      out += part;
    }
    start = slash + 1;
  }
  return out;
}

Result<uint32_t> id_of(const std::string& archive, std::string_view path, int64_t value,
                       std::string_view what) {
  if (value < 0 || value > std::numeric_limits<uint32_t>::max())
    return fail(ErrorKind::kBadInput, "{}: entry '{}' has {} {}, outside 0..4294967295",
                archive, path, what, value);
  return static_cast<uint32_t>(value);
}

Result<EntryType> type_of(const std::string& archive, archive_entry* entry,
                          std::string_view path) {
  if (archive_entry_hardlink(entry) != nullptr) return EntryType::kHardlink;
  switch (archive_entry_filetype(entry)) {
    case AE_IFREG: return EntryType::kFile;
    case AE_IFDIR: return EntryType::kDirectory;
    case AE_IFLNK: return EntryType::kSymlink;
    case AE_IFCHR: return EntryType::kCharDevice;
    case AE_IFBLK: return EntryType::kBlockDevice;
    case AE_IFIFO: return EntryType::kFifo;
    case AE_IFSOCK: return EntryType::kSocket;
    default:
      return fail(ErrorKind::kBadInput, "{}: entry '{}' has an unknown file type (mode {:o})",
                  archive, path, archive_entry_mode(entry));
  }
}

// pax archives may carry the same attribute twice (SCHILY.xattr and
// LIBARCHIVE.xattr); the last one wins, in the place of the first.
void read_xattrs(archive_entry* entry, TarEntry& out) {
  archive_entry_xattr_reset(entry);
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  while (archive_entry_xattr_next(entry, &name, &value, &size) == ARCHIVE_OK) {
    if (name == nullptr) continue;
    std::string text(static_cast<const char*>(value), size);
    auto same = std::find_if(out.xattrs.begin(), out.xattrs.end(),
                             [&](const auto& xattr) { return xattr.first == name; });
    if (same != out.xattrs.end())
      same->second = std::move(text);
    else
      out.xattrs.emplace_back(name, std::move(text));
  }
}

// libarchive lists every regular file's data as regions; a single region
// covering the whole file is a file stored whole.
void read_sparse_map(archive_entry* entry, TarEntry& out) {
  if (archive_entry_sparse_reset(entry) <= 0) return;
  la_int64_t offset = 0;
  la_int64_t length = 0;
  std::vector<DataRegion> regions;
  while (archive_entry_sparse_next(entry, &offset, &length) == ARCHIVE_OK) {
    if (length <= 0 || offset < 0) continue;
    regions.push_back({static_cast<uint64_t>(offset), static_cast<uint64_t>(length)});
  }
  if (regions.size() == 1 && regions[0].offset == 0 && regions[0].length == out.size) return;
  out.sparse = true;
  out.data_regions = std::move(regions);
}

}  // namespace

struct TarReader::State {
  ArchivePtr archive;
  std::string name;
  std::string memory;  // the bytes of an in-memory archive, kept alive
  uint64_t total = 0;
  std::string path;  // the current entry, for errors while reading its data
  uint64_t data_end = 0;  // where the current entry's last data piece ended
};

TarReader::TarReader(std::unique_ptr<State> state) : state_(std::move(state)) {}
TarReader::TarReader(TarReader&&) noexcept = default;
TarReader& TarReader::operator=(TarReader&&) noexcept = default;
TarReader::~TarReader() = default;

Result<TarReader> TarReader::open(const std::filesystem::path& archive) {
  auto state = std::make_unique<State>();
  state->name = archive.string();
  struct stat st;
  if (::stat(archive.c_str(), &st) != 0) return fail_errno("cannot open archive", state->name, errno);
  if (S_ISDIR(st.st_mode))
    return fail(ErrorKind::kBadInput, "{}: is a directory, not an archive", state->name);
  state->total = static_cast<uint64_t>(st.st_size);
  KILN_ASSIGN(state->archive, new_reader(state->name));
  if (archive_read_open_filename(state->archive.get(), archive.c_str(), kReadBlockSize) !=
      ARCHIVE_OK)
    return fail(ErrorKind::kBadInput, "{}: not a readable tar or cpio archive: {}", state->name,
                archive_message(state->archive.get()));
  return TarReader(std::move(state));
}

Result<TarReader> TarReader::open_memory(std::string data, std::string name) {
  auto state = std::make_unique<State>();
  state->name = std::move(name);
  state->memory = std::move(data);
  state->total = state->memory.size();
  KILN_ASSIGN(state->archive, new_reader(state->name));
  if (archive_read_open_memory(state->archive.get(), state->memory.data(),
                               state->memory.size()) != ARCHIVE_OK)
    return fail(ErrorKind::kBadInput, "{}: not a readable tar or cpio archive: {}", state->name,
                archive_message(state->archive.get()));
  return TarReader(std::move(state));
}

Result<bool> TarReader::next(TarEntry& out) {
  archive* a = state_->archive.get();
  archive_entry* entry = nullptr;
  int rc = ARCHIVE_RETRY;
  for (int attempt = 0; rc == ARCHIVE_RETRY && attempt < kMaxRetries; ++attempt)
    rc = archive_read_next_header(a, &entry);
  if (rc == ARCHIVE_EOF) return false;
  // ARCHIVE_WARN still delivers a usable header (an odd but readable field).
  if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
    std::string after = state_->path.empty() ? "" : fmt::format(" after '{}'", state_->path);
    return fail(ErrorKind::kBadInput, "{}: cannot read the entry{}: {}", state_->name, after,
                archive_message(a));
  }

  const char* raw_path = archive_entry_pathname(entry);
  if (raw_path == nullptr)
    return fail(ErrorKind::kBadInput, "{}: an entry has no readable path name", state_->name);
  out = TarEntry{};
  KILN_ASSIGN(out.path, normalise(state_->name, raw_path, "path"));
  state_->path = raw_path;
  state_->data_end = 0;
  KILN_ASSIGN(out.type, type_of(state_->name, entry, raw_path));
  out.mode = archive_entry_perm(entry) & 07777;
  KILN_ASSIGN(out.uid, id_of(state_->name, raw_path, archive_entry_uid(entry), "owner"));
  KILN_ASSIGN(out.gid, id_of(state_->name, raw_path, archive_entry_gid(entry), "group"));
  if (archive_entry_mtime_is_set(entry)) {
    out.mtime = archive_entry_mtime(entry);
    out.mtime_nsec = static_cast<uint32_t>(archive_entry_mtime_nsec(entry));
  }
  la_int64_t size = archive_entry_size_is_set(entry) ? archive_entry_size(entry) : 0;
  out.size = size > 0 ? static_cast<uint64_t>(size) : 0;
  switch (out.type) {
    case EntryType::kHardlink: {
      KILN_ASSIGN(out.link_target,
                  normalise(state_->name, archive_entry_hardlink(entry), "hardlink target"));
      break;
    }
    case EntryType::kSymlink: {
      const char* target = archive_entry_symlink(entry);
      if (target == nullptr || *target == '\0')
        return fail(ErrorKind::kBadInput, "{}: symlink '{}' has no target", state_->name,
                    raw_path);
      out.link_target = target;
      break;
    }
    case EntryType::kCharDevice:
    case EntryType::kBlockDevice:
      out.rdev_major = static_cast<uint32_t>(archive_entry_rdevmajor(entry));
      out.rdev_minor = static_cast<uint32_t>(archive_entry_rdevminor(entry));
      break;
    case EntryType::kFile:
      read_sparse_map(entry, out);
      break;
    default:
      break;
  }
  if (out.type != EntryType::kFile && out.type != EntryType::kHardlink) out.size = 0;
  read_xattrs(entry, out);
  return true;
}

Result<bool> TarReader::read_data(DataChunk& chunk) {
  archive* a = state_->archive.get();
  for (;;) {
    const void* buffer = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int rc = archive_read_data_block(a, &buffer, &size, &offset);
    if (rc == ARCHIVE_EOF) return false;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
      return fail(ErrorKind::kBadInput, "{}: cannot read the data of '{}': {}", state_->name,
                  state_->path, archive_message(a));
    if (size == 0) continue;  // a sparse file's final hole
    // A corrupt sparse map can make pieces overlap or go backwards.
    if (offset < 0 || static_cast<uint64_t>(offset) < state_->data_end)
      return fail(ErrorKind::kBadInput, "{}: '{}' has overlapping data pieces (a corrupt sparse map)",
                  state_->name, state_->path);
    state_->data_end = static_cast<uint64_t>(offset) + size;
    chunk.data = static_cast<const char*>(buffer);
    chunk.size = size;
    chunk.offset = static_cast<uint64_t>(offset);
    return true;
  }
}

uint64_t TarReader::position() const {
  la_int64_t done = archive_filter_bytes(state_->archive.get(), -1);
  return done > 0 ? static_cast<uint64_t>(done) : 0;
}

uint64_t TarReader::total_size() const { return state_->total; }

const std::string& TarReader::name() const { return state_->name; }

}  // namespace kiln
