// XvmArchive: the container of a vmcast package, an uncompressed tar, read
// and written through libarchive.
//
// Reading indexes the members once (names, sizes and where each one's bytes
// lie in the file) and refuses, naming the member, anything but plain files
// with safe names: no "../", no absolute path, no links, no devices, no
// sparse entries, no name given twice (two xvm.xml could show a verifier one
// and an unpacker the other). The bytes are then read with pread, so several
// members can be checked or expanded at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "feeds/gzip.h"

namespace kiln {

struct XvmMember {
  std::string name;     // as stored, without a leading "./"
  uint64_t offset = 0;  // of its first byte in the archive file
  uint64_t size = 0;
};

class XvmArchive {
 public:
  // `name` stands for the archive in errors (a download is better known by
  // its URL's file name than by its place in a cache); empty: the path.
  static Result<XvmArchive> open(const std::filesystem::path& path, std::string name = {});

  const std::filesystem::path& path() const { return path_; }
  const std::string& name() const { return name_; }
  const std::vector<XvmMember>& members() const { return members_; }
  const XvmMember* find(std::string_view name) const;

  // A small member whole; more than `max_size` bytes is an error.
  Result<std::string> read(const XvmMember& member, uint64_t max_size) const;
  // A member's bytes in order, in pieces of up to 1 MiB.
  Result<> stream(const XvmMember& member, const ByteSink& sink) const;

 private:
  std::filesystem::path path_;
  std::string name_;
  std::vector<XvmMember> members_;
};

// One file to put in an archive.
struct TarInput {
  std::string name;
  std::filesystem::path source;
};

struct TarWritten {
  uint64_t size = 0;
  std::string sha256;  // of the archive file
};

// Writes `members` in order as an uncompressed tar at `target` (atomically):
// plain files owned by root, mode 0644, all stamped `mtime`, so the same
// inputs give the same bytes.
Result<TarWritten> write_tar(const std::filesystem::path& target, const std::vector<TarInput>& members, int64_t mtime,
                           const std::function<void(uint64_t done, uint64_t total)>& progress = {});

}  // namespace kiln
