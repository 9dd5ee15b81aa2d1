// TarReader: reads a rootfs archive entry by entry through libarchive, so
// nothing is ever unpacked to disk. Handles tar (GNU, ustar and pax, with pax
// xattrs, POSIX ACLs and sparse maps) and cpio (newc, odc, binary), plain or
// compressed with gzip, xz, zstd, bzip2, lzma, lz4, lzip, compress (.Z) or
// lzop (through the lzop program, which must be installed). Entry paths are
// normalised and checked: an absolute path, a ".." component or an empty
// name is an error, never a write outside the image.
//
// Hostile archives get bounded work. libarchive reads an entry's name, a
// symlink's target and tar's special headers whole into memory, sized by a
// header field. The decompressed stream therefore reaches libarchive's
// format reader through kiln's own read callback, which checks every cpio
// header (newc and odc carry sizes wide enough to ask for gigabytes) before
// libarchive sees it:
//   - an entry name is at most kMaxNameBytes bytes;
//   - a symlink's target is at most kMaxLinkTargetBytes bytes;
//   - tar's pax, GNU long-name and long-link headers stop at libarchive's own
//     limit of 1 MiB each, and the name and link target they give must then
//     still fit the two limits above;
//   - tar's Mac OS metadata entries ("._NAME", read whole by libarchive) are
//     not interpreted: such an entry is an ordinary file of a Linux rootfs.
// Names in error messages go through printable_name().
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"

namespace kiln {

// Linux's PATH_MAX: a name or symlink target longer than this cannot be
// used on the system the image boots (the target excludes its NUL).
inline constexpr size_t kMaxNameBytes = 4096;
inline constexpr size_t kMaxLinkTargetBytes = 4095;

// An entry name as error messages show it: control characters, invalid
// UTF-8 and C1 controls as \xHH (so ESC or BEL never reach a terminal raw),
// a backslash as \\, and a name longer than a line cut in its middle.
std::string printable_name(std::string_view name);

enum class EntryType { kFile, kDirectory, kSymlink, kHardlink, kCharDevice, kBlockDevice, kFifo, kSocket };

// A stretch of a sparse file that holds data.
struct DataRegion {
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct TarEntry {
  // Relative, without "./", a leading "/" or a trailing "/"; "" is the root.
  std::string path;
  EntryType type = EntryType::kFile;
  // Permission bits with setuid, setgid and sticky (07777). With an ACL
  // that has a mask, the group bits are the mask's, as stat() shows them.
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  uint64_t size = 0;  // a regular file's logical size, holes included
  // A symlink's target as stored; for a hardlink, the normalised path of the
  // earlier entry it links to.
  std::string link_target;
  uint32_t rdev_major = 0;
  uint32_t rdev_minor = 0;
  // name, value, names unique. POSIX ACLs (GNU tar --acls, star, Solaris
  // tar) come as system.posix_acl_access and system.posix_acl_default in the
  // Linux xattr format; NFSv4 ACLs have no Linux form and are refused.
  std::vector<std::pair<std::string, std::string>> xattrs;
  // A sparse file's map, known from the header alone (so sizing reads no
  // data): its data regions in order; everything between them is a hole.
  // For a file stored whole, sparse is false and the map is empty.
  bool sparse = false;
  std::vector<DataRegion> data_regions;
};

// A piece of a regular file's data; the gaps between pieces are holes.
struct DataChunk {
  const char* data = nullptr;
  size_t size = 0;
  uint64_t offset = 0;
};

// The compression TarReader::open would undo for `file`, as libarchive
// names it ("gzip", "bzip2", "gzip, then xz"), or "" when the file is in
// none kiln reads: a plain tar or cpio, or no archive at all. Reads the
// first bytes only; for telling an archive from a disk image by content.
Result<std::string> compression_of_file(const std::filesystem::path& file);

class TarReader {
 public:
  // Opens an archive file; the format and compression are detected.
  static Result<TarReader> open(const std::filesystem::path& archive);
  // Reads an archive held in memory (fuzzing, tests); `name` is used in errors.
  static Result<TarReader> open_memory(std::string data, std::string name);
  TarReader(TarReader&&) noexcept;
  TarReader& operator=(TarReader&&) noexcept;
  ~TarReader();

  // Reads the next entry's header; false at the end of the archive.
  Result<bool> next(TarEntry& entry);
  // Returns the current entry's data piece by piece, in increasing offsets;
  // false when done. Regular files have data, and so may a hardlink (cpio
  // stores a hardlinked file's data with its last name). Unread data is
  // skipped by the following next().
  Result<bool> read_data(DataChunk& chunk);

  // True once an entry's header has been read, even if what it said was
  // then refused: the file is an archive kiln reads, whatever failed.
  bool recognised() const;

  // Position in the (compressed) archive and its size, for progress bars.
  uint64_t position() const;
  uint64_t total_size() const;
  const std::string& name() const;

 private:
  struct State;
  explicit TarReader(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace kiln
