#include "formats/tree/tar_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>

#include "base/files.h"
#include "base/subprocess.h"
#include "formats/tree/cpio_header_check.h"

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

// The compressions kiln promises. Debian's libarchive decompresses each of
// them itself, except lzop, which it hands to the lzop program.
constexpr std::array kFilters = {
    archive_read_support_filter_gzip,  archive_read_support_filter_xz,
    archive_read_support_filter_zstd,  archive_read_support_filter_bzip2,
    archive_read_support_filter_lzma,  archive_read_support_filter_lz4,
    archive_read_support_filter_lzip,  archive_read_support_filter_compress,
    archive_read_support_filter_lzop,
};

// A compression libarchive may read through a program, and how to tell it.
struct ProgramCompression {
  std::string_view name;
  std::string_view magic;
  std::string_view program;
};
constexpr std::array kProgramCompressions = {
    ProgramCompression{"lzop", std::string_view("\x89LZO\0\r\n\x1a\n", 9), "lzop"},
};

// Compressions and archive formats kiln does not read, named by their first
// bytes instead of a bare "not an archive".
constexpr std::array kUnreadFormats = {
    std::pair<std::string_view, std::string_view>{"lrzip", "LRZI"},
    std::pair<std::string_view, std::string_view>{"grzip", "GRZipII"},
    std::pair<std::string_view, std::string_view>{"7-Zip", "7z\xbc\xaf\x27\x1c"},
    std::pair<std::string_view, std::string_view>{"zip", "PK\x03\x04"},
};

// Stage one: undoes the compression (any number of layers) and hands out
// the plain stream as the data of a single "raw" entry.
Result<ArchivePtr> new_decompressor(const std::string& name) {
  ArchivePtr a(archive_read_new());
  if (!a) return fail(ErrorKind::kFailed, "{}: cannot allocate an archive reader", name);
  archive_read_support_format_raw(a.get());
  for (auto support : kFilters) {
    if (support(a.get()) == ARCHIVE_FATAL)
      return fail(ErrorKind::kFailed, "{}: libarchive: {}", name, archive_message(a.get()));
  }
  return a;
}

// Stage two: the tar and cpio readers, fed the plain stream by kiln.
Result<ArchivePtr> new_format_reader(const std::string& name) {
  ArchivePtr a(archive_read_new());
  if (!a) return fail(ErrorKind::kFailed, "{}: cannot allocate an archive reader", name);
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  archive_read_support_format_cpio(a.get());
  // libarchive reads an entry named "._NAME" whole into memory as Mac OS
  // metadata for NAME, however large its header says it is; in a Linux
  // rootfs it is an ordinary file.
  if (archive_read_set_format_option(a.get(), "tar", "mac-ext", nullptr) != ARCHIVE_OK)
    return fail(ErrorKind::kFailed, "{}: libarchive: {}", name, archive_message(a.get()));
  return a;
}

// Refuses, by name, a compression whose program is missing, before
// libarchive fails to start it with a message about neither.
Result<> check_compression_program(const std::string& name, std::string_view head) {
  for (const ProgramCompression& compression : kProgramCompressions) {
    if (!head.starts_with(compression.magic)) continue;
    auto program = find_program(compression.program);
    if (!program)
      return fail(ErrorKind::kMissingTool,
                  "{}: the archive is compressed with {}, which is read through the program "
                  "{}: {}",
                  name, compression.name, compression.program, program.error().message);
  }
  return {};
}

// What an archive that is no tar or cpio is, where the first bytes say.
std::string not_an_archive(const std::string& name, std::string_view head,
                           std::string_view compression, const std::string& why) {
  for (const auto& [format, magic] : kUnreadFormats) {
    if (head.starts_with(magic))
      return fmt::format("{}: the archive is a {} file, which kiln does not read; kiln reads tar "
                         "and cpio, compressed with gzip, xz, zstd, bzip2, lzma, lz4, lzip, "
                         "compress or lzop",
                         name, format);
  }
  std::string through = compression.empty() ? "" : fmt::format(" (after {} decompression)", compression);
  return fmt::format("{}: not a readable tar or cpio archive{}: {}", name, through, why);
}

// The length of the valid UTF-8 sequence at `at` that is a printable
// character (not a C1 control), or 0.
size_t printable_utf8(std::string_view text, size_t at) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  unsigned char lead = byte(at);
  size_t length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc2 ? 2 : 0;
  if (length == 0 || lead > 0xf4 || at + length > text.size()) return 0;
  uint32_t code = lead & (0x7f >> length);
  for (size_t i = 1; i < length; ++i) {
    if ((byte(at + i) & 0xc0) != 0x80) return 0;
    code = (code << 6) | (byte(at + i) & 0x3f);
  }
  bool overlong = (length == 3 && code < 0x800) || (length == 4 && code < 0x10000);
  bool surrogate = code >= 0xd800 && code <= 0xdfff;
  bool c1_control = code >= 0x80 && code <= 0x9f;
  if (overlong || surrogate || c1_control || code > 0x10ffff) return 0;
  return length;
}

// How error messages quote a name from the archive.
std::string in_quotes(std::string_view name) { return fmt::format("'{}'", printable_name(name)); }

std::unexpected<Error> bad_path(const std::string& archive, std::string_view path,
                                std::string_view what) {
  return fail(ErrorKind::kBadInput,
              "{}: entry {} {}: it would write outside the image; "
              "re-create the archive with paths relative to the root (\"./etc/passwd\")",
              archive, in_quotes(path), what);
}

// "./usr//bin/" -> "usr/bin"; "." and "./" -> "" (the root). An empty name
// is refused: "" is no way to say the root, and tar would not write one.
Result<std::string> normalise(const std::string& archive, std::string_view raw,
                              std::string_view role) {
  if (raw.empty())
    return fail(ErrorKind::kBadInput, "{}: an entry has an empty {} (the root is named \".\")",
                archive, role);
  if (raw.size() > kMaxNameBytes)
    return fail(ErrorKind::kBadInput, "{}: entry {} has a {} of {} bytes; kiln reads at most {}",
                archive, in_quotes(raw), role, raw.size(), kMaxNameBytes);
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
    return fail(ErrorKind::kBadInput, "{}: entry {} has {} {}, outside 0..4294967295",
                archive, in_quotes(path), what, value);
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
      return fail(ErrorKind::kBadInput, "{}: entry {} has an unknown file type (mode {:o})",
                  archive, in_quotes(path), archive_entry_mode(entry));
  }
}

// POSIX.1e ACL entry tags in the Linux xattr format (linux/posix_acl.h).
constexpr uint16_t kAclUserObj = 0x01, kAclUser = 0x02, kAclGroupObj = 0x04, kAclGroup = 0x08,
                   kAclMask = 0x10, kAclOther = 0x20;

struct AclEntry {
  uint16_t tag = 0;
  uint16_t permissions = 0;
  uint32_t id = 0;
  auto operator<=>(const AclEntry&) const = default;
};

Result<uint16_t> linux_acl_tag(const std::string& archive, std::string_view path, int tag) {
  switch (tag) {
    case ARCHIVE_ENTRY_ACL_USER_OBJ: return kAclUserObj;
    case ARCHIVE_ENTRY_ACL_USER: return kAclUser;
    case ARCHIVE_ENTRY_ACL_GROUP_OBJ: return kAclGroupObj;
    case ARCHIVE_ENTRY_ACL_GROUP: return kAclGroup;
    case ARCHIVE_ENTRY_ACL_MASK: return kAclMask;
    case ARCHIVE_ENTRY_ACL_OTHER: return kAclOther;
    default:
      return fail(ErrorKind::kBadInput, "{}: entry {} has an ACL entry with tag {}, which POSIX ACLs lack",
                  archive, in_quotes(path), tag);
  }
}

// One of the entry's POSIX ACLs (`type` access or default), sorted as the
// kernel keeps them; empty when there is none beyond the mode.
Result<std::vector<AclEntry>> read_acl(const std::string& archive, archive_entry* entry,
                                       std::string_view path, int type) {
  std::vector<AclEntry> acl;
  if (archive_entry_acl_reset(entry, type) <= 0) return acl;
  int got_type = 0, permissions = 0, tag = 0, id = 0;
  const char* name = nullptr;
  while (archive_entry_acl_next(entry, type, &got_type, &permissions, &tag, &id, &name) ==
         ARCHIVE_OK) {
    KILN_ASSIGN(uint16_t linux_tag, linux_acl_tag(archive, path, tag));
    bool qualified = linux_tag == kAclUser || linux_tag == kAclGroup;
    if (qualified && id < 0)
      return fail(ErrorKind::kBadInput,
                  "{}: entry {} has an ACL entry for '{}' without a numeric id; kiln does not "
                  "look names up",
                  archive, in_quotes(path), printable_name(name ? name : ""));
    acl.push_back({linux_tag, static_cast<uint16_t>(permissions & 07),
                   qualified ? static_cast<uint32_t>(id) : 0xffffffffu});
  }
  std::sort(acl.begin(), acl.end());
  return acl;
}

// struct posix_acl_xattr_header and its entries, little-endian.
std::string linux_acl_xattr(const std::vector<AclEntry>& acl) {
  std::string out;
  auto put = [&out](uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xff);
  };
  put(2, 4);  // POSIX_ACL_XATTR_VERSION
  for (const AclEntry& entry : acl) {
    put(entry.tag, 2);
    put(entry.permissions, 2);
    put(entry.id, 4);
  }
  return out;
}

void set_xattr(TarEntry& out, std::string name, std::string value) {
  auto same = std::find_if(out.xattrs.begin(), out.xattrs.end(),
                           [&](const auto& xattr) { return xattr.first == name; });
  if (same != out.xattrs.end())
    same->second = std::move(value);
  else
    out.xattrs.emplace_back(std::move(name), std::move(value));
}

// The entry's POSIX ACLs as the xattrs Linux keeps them in. libarchive
// folds the ACL's group entry into the mode's group bits; with a mask, stat()
// shows the mask there instead, as the archiving tar saw it.
Result<> read_acls(const std::string& archive, archive_entry* entry, std::string_view path,
                   TarEntry& out) {
  if (archive_entry_acl_types(entry) & ARCHIVE_ENTRY_ACL_TYPE_NFS4)
    return fail(ErrorKind::kBadInput,
                "{}: entry {} carries an NFSv4 ACL, which Linux filesystems cannot hold",
                archive, in_quotes(path));
  KILN_ASSIGN(std::vector<AclEntry> access,
              read_acl(archive, entry, path, ARCHIVE_ENTRY_ACL_TYPE_ACCESS));
  KILN_ASSIGN(std::vector<AclEntry> defaults,
              read_acl(archive, entry, path, ARCHIVE_ENTRY_ACL_TYPE_DEFAULT));
  if (!access.empty()) {
    set_xattr(out, "system.posix_acl_access", linux_acl_xattr(access));
    auto mask = std::find_if(access.begin(), access.end(),
                             [](const AclEntry& e) { return e.tag == kAclMask; });
    if (mask != access.end()) out.mode = (out.mode & ~070u) | (uint32_t{mask->permissions} << 3);
  }
  if (!defaults.empty()) set_xattr(out, "system.posix_acl_default", linux_acl_xattr(defaults));
  return {};
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
    set_xattr(out, name, std::string(static_cast<const char*>(value), size));
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

// The plain (decompressed) stream as libarchive's tar and cpio readers get
// it: through kiln's callback, which checks it first.
struct Stream {
  ArchivePtr decompressor;
  std::string name;
  CpioHeaderCheck cpio;
  // Why the stream stopped; libarchive may answer a failed read with a
  // message of its own ("truncated archive") that would hide it.
  std::optional<Error> error;
  uint64_t delivered = 0;  // plain bytes handed to the tar/cpio reader
};

la_ssize_t read_stream(archive* reader, void* client, const void** buffer) {
  auto* stream = static_cast<Stream*>(client);
  for (;;) {
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int rc = archive_read_data_block(stream->decompressor.get(), &block, &size, &offset);
    if (rc == ARCHIVE_EOF) return 0;
    Result<> checked;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
      checked = fail(ErrorKind::kBadInput, "{}: cannot decompress the archive: {}", stream->name,
                     archive_message(stream->decompressor.get()));
    else if (size == 0)
      continue;
    else
      checked = stream->cpio.check(stream->name, static_cast<const char*>(block), size);
    if (!checked) {
      stream->error = checked.error();
      archive_set_error(reader, EINVAL, "%s", stream->error->message.c_str());
      return -1;
    }
    *buffer = block;
    stream->delivered += size;
    return static_cast<la_ssize_t>(size);
  }
}

// "gzip", "lzip", "gzip, then xz", or "" for a plain stream.
std::string compression_of(archive* decompressor) {
  std::string out;
  for (int i = archive_filter_count(decompressor) - 1; i >= 0; --i) {
    if (archive_filter_code(decompressor, i) == ARCHIVE_FILTER_NONE) continue;
    if (!out.empty()) out += ", then ";
    out += archive_filter_name(decompressor, i);
  }
  return out;
}

Result<std::string> symlink_target(const std::string& archive, archive_entry* entry,
                                   std::string_view path) {
  const char* target = archive_entry_symlink(entry);
  if (target == nullptr || *target == '\0')
    return fail(ErrorKind::kBadInput, "{}: symlink {} has no target", archive, in_quotes(path));
  if (std::strlen(target) > kMaxLinkTargetBytes)
    return fail(ErrorKind::kBadInput, "{}: symlink {} has a target of {} bytes; kiln reads at most {}",
                archive, in_quotes(path), std::strlen(target), kMaxLinkTargetBytes);
  return target;
}

// Everything in the header but the path, which the caller has normalised.
Result<> read_header(const std::string& archive, archive_entry* entry, std::string_view raw_path,
                     TarEntry& out) {
  KILN_ASSIGN(out.type, type_of(archive, entry, raw_path));
  out.mode = archive_entry_perm(entry) & 07777;
  KILN_ASSIGN(out.uid, id_of(archive, raw_path, archive_entry_uid(entry), "owner"));
  KILN_ASSIGN(out.gid, id_of(archive, raw_path, archive_entry_gid(entry), "group"));
  if (archive_entry_mtime_is_set(entry)) {
    out.mtime = archive_entry_mtime(entry);
    out.mtime_nsec = static_cast<uint32_t>(archive_entry_mtime_nsec(entry));
  }
  la_int64_t size = archive_entry_size_is_set(entry) ? archive_entry_size(entry) : 0;
  out.size = size > 0 ? static_cast<uint64_t>(size) : 0;
  switch (out.type) {
    case EntryType::kHardlink: {
      KILN_ASSIGN(out.link_target, normalise(archive, archive_entry_hardlink(entry), "hardlink target"));
      break;
    }
    case EntryType::kSymlink: {
      KILN_ASSIGN(out.link_target, symlink_target(archive, entry, raw_path));
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
  return read_acls(archive, entry, raw_path, out);
}

}  // namespace

std::string printable_name(std::string_view name) {
  // Pieces of the shown name, one per byte or character of the raw one.
  std::vector<std::string> pieces;
  size_t width = 0;
  for (size_t at = 0; at < name.size();) {
    auto byte = static_cast<unsigned char>(name[at]);
    size_t length = byte >= 0x80 ? printable_utf8(name, at) : 1;
    if (byte == '\\')
      pieces.emplace_back("\\\\");
    else if (byte < 0x20 || byte == 0x7f || length == 0)
      pieces.push_back(fmt::format("\\x{:02x}", byte));
    else
      pieces.emplace_back(name.substr(at, length));
    width += pieces.back().size();
    at += length == 0 ? 1 : length;
  }
  constexpr size_t kMaxWidth = 100, kHead = 60, kTail = 36;
  std::string out;
  if (width <= kMaxWidth) {
    for (const std::string& piece : pieces) out += piece;
    return out;
  }
  size_t head = 0;
  for (size_t used = 0; head < pieces.size() && used + pieces[head].size() <= kHead; ++head)
    used += pieces[head].size();
  size_t tail = pieces.size();
  for (size_t used = 0; tail > head && used + pieces[tail - 1].size() <= kTail; --tail)
    used += pieces[tail - 1].size();
  for (size_t i = 0; i < head; ++i) out += pieces[i];
  out += fmt::format("...({} bytes)...", name.size());
  for (size_t i = tail; i < pieces.size(); ++i) out += pieces[i];
  return out;
}

struct TarReader::State {
  std::unique_ptr<Stream> stream;  // its address is libarchive's client data
  ArchivePtr archive;
  std::string memory;  // the bytes of an in-memory archive, kept alive
  std::string head;    // the archive's first bytes, to name what it is
  uint64_t total = 0;
  std::string path;  // the current entry, for errors while reading its data
  uint64_t data_end = 0;  // where the current entry's last data piece ended
  bool started = false;   // a header has been read

  static std::unique_ptr<State> create(std::string name) {
    auto state = std::make_unique<State>();
    state->stream = std::make_unique<Stream>();
    state->stream->name = std::move(name);
    return state;
  }
  const std::string& name() const { return stream->name; }

  // Starts both stages once the decompressor has its input.
  Result<> start(int opened) {
    struct archive* decompressor = stream->decompressor.get();
    archive_entry* raw = nullptr;
    if (opened != ARCHIVE_OK || archive_read_next_header(decompressor, &raw) != ARCHIVE_OK)
      return fail(ErrorKind::kBadInput, "{}: cannot read the archive: {}", name(),
                  archive_message(decompressor));
    KILN_ASSIGN(archive, new_format_reader(name()));
    // libarchive picks the format here, from the first block it reads.
    if (archive_read_open(archive.get(), stream.get(), nullptr, read_stream, nullptr) != ARCHIVE_OK) {
      if (stream->error) return std::unexpected(*stream->error);
      return fail(ErrorKind::kBadInput, "{}",
                  not_an_archive(name(), head, compression_of(decompressor), archive_message(archive.get())));
    }
    return {};
  }
  // The error of a failed libarchive call on the tar/cpio reader.
  Error failure(std::string_view what) const {
    if (stream->error) return *stream->error;
    return {ErrorKind::kBadInput,
            fmt::format("{}: {}: {}", name(), what, archive_message(archive.get())), {}, {}};
  }
};

TarReader::TarReader(std::unique_ptr<State> state) : state_(std::move(state)) {}
TarReader::TarReader(TarReader&&) noexcept = default;
TarReader& TarReader::operator=(TarReader&&) noexcept = default;
TarReader::~TarReader() = default;

// How many first bytes name a compression or format.
constexpr size_t kHeadBytes = 16;

Result<TarReader> TarReader::open(const std::filesystem::path& archive) {
  auto state = State::create(archive.string());
  struct stat st;
  if (::stat(archive.c_str(), &st) != 0) return fail_errno("cannot open archive", state->name(), errno);
  if (S_ISDIR(st.st_mode))
    return fail(ErrorKind::kBadInput, "{}: is a directory, not an archive", state->name());
  state->total = static_cast<uint64_t>(st.st_size);
  std::ifstream file(archive, std::ios::binary);
  state->head.resize(kHeadBytes);
  file.read(state->head.data(), kHeadBytes);
  state->head.resize(static_cast<size_t>(file.gcount()));
  KILN_TRY(check_compression_program(state->name(), state->head));
  KILN_ASSIGN(state->stream->decompressor, new_decompressor(state->name()));
  KILN_TRY(state->start(archive_read_open_filename(state->stream->decompressor.get(),
                                                   archive.c_str(), kReadBlockSize)));
  return TarReader(std::move(state));
}

Result<std::string> compression_of_file(const std::filesystem::path& file) {
  std::string head(kHeadBytes, '\0');
  {
    KILN_ASSIGN(UniqueFd in, open_file(file, O_RDONLY | O_CLOEXEC));
    ssize_t got = ::pread(in.get(), head.data(), head.size(), 0);
    if (got < 0) return fail_errno("cannot read", file.string(), errno);
    head.resize(static_cast<size_t>(got));
  }
  KILN_TRY(check_compression_program(file.string(), head));
  KILN_ASSIGN(ArchivePtr decompressor, new_decompressor(file.string()));
  archive_entry* raw = nullptr;
  int rc = archive_read_open_filename(decompressor.get(), file.c_str(), kReadBlockSize);
  if (rc == ARCHIVE_OK) rc = archive_read_next_header(decompressor.get(), &raw);
  if (rc == ARCHIVE_EOF) return std::string();
  if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
    return fail(ErrorKind::kBadInput, "{}: cannot read it: {}", file.string(), archive_message(decompressor.get()));
  return compression_of(decompressor.get());
}

Result<TarReader> TarReader::open_memory(std::string data, std::string name) {
  auto state = State::create(std::move(name));
  state->memory = std::move(data);
  state->total = state->memory.size();
  state->head = state->memory.substr(0, kHeadBytes);
  KILN_TRY(check_compression_program(state->name(), state->head));
  KILN_ASSIGN(state->stream->decompressor, new_decompressor(state->name()));
  KILN_TRY(state->start(archive_read_open_memory(state->stream->decompressor.get(),
                                                 state->memory.data(), state->memory.size())));
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
    if (!state_->started && !state_->stream->error && archive_format(a) == 0)
      return fail(ErrorKind::kBadInput, "{}",
                  not_an_archive(state_->name(), state_->head,
                                 compression_of(state_->stream->decompressor.get()),
                                 archive_message(a)));
    std::string after = state_->path.empty() ? "" : fmt::format(" after {}", in_quotes(state_->path));
    return std::unexpected(state_->failure(fmt::format("cannot read the entry{}", after)));
  }
  state_->started = true;

  const char* raw_path = archive_entry_pathname(entry);
  if (raw_path == nullptr)
    return fail(ErrorKind::kBadInput, "{}: an entry has no readable path name", state_->name());
  out = TarEntry{};
  KILN_ASSIGN(out.path, normalise(state_->name(), raw_path, "path"));
  state_->path = raw_path;
  state_->data_end = 0;
  KILN_TRY(read_header(state_->name(), entry, raw_path, out));
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
      return std::unexpected(
          state_->failure(fmt::format("cannot read the data of {}", in_quotes(state_->path))));
    if (size == 0) continue;  // a sparse file's final hole
    // A corrupt sparse map can make pieces overlap or go backwards.
    if (offset < 0 || static_cast<uint64_t>(offset) < state_->data_end)
      return fail(ErrorKind::kBadInput, "{}: {} has overlapping data pieces (a corrupt sparse map)",
                  state_->name(), in_quotes(state_->path));
    state_->data_end = static_cast<uint64_t>(offset) + size;
    chunk.data = static_cast<const char*>(buffer);
    chunk.size = size;
    chunk.offset = static_cast<uint64_t>(offset);
    return true;
  }
}

bool TarReader::recognised() const { return state_->started; }

uint64_t TarReader::position() const {
  // A plain file's bytes count when the raw reader moves past them, one
  // block late; what went on to the tar reader is the position then.
  archive* decompressor = state_->stream->decompressor.get();
  if (archive_filter_count(decompressor) <= 1) return std::min(state_->stream->delivered, state_->total);
  la_int64_t done = archive_filter_bytes(decompressor, -1);
  return done > 0 ? static_cast<uint64_t>(done) : 0;
}

uint64_t TarReader::total_size() const { return state_->total; }

const std::string& TarReader::name() const { return state_->name(); }

}  // namespace kiln
