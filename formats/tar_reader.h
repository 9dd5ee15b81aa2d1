// TarReader: reads a rootfs archive entry by entry through libarchive, so
// nothing is ever unpacked to disk. Handles tar (plain, gzip, xz, zstd; GNU,
// ustar and pax, with pax xattrs and sparse maps) and cpio (newc, odc; plain
// or gzip). Entry paths are normalised and checked: an absolute path or a
// ".." component is an error, never a write outside the image.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"

namespace kiln {

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
  uint32_t mode = 0;  // permission bits with setuid, setgid and sticky (07777)
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
  std::vector<std::pair<std::string, std::string>> xattrs;  // name, value, names unique
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
