#include "formats/tree/archive_data.h"

#include <archive.h>

#include <algorithm>
#include <vector>

namespace kiln {
namespace {

constexpr size_t kBuffer = 1 << 20;

Result<> write_piece(archive* out, const char* data, size_t size, const std::string& what) {
  if (archive_write_data(out, data, size) < 0)
    return fail(ErrorKind::kFailed, "{}: cannot write the archive data: {}", what, archive_error_string(out));
  return {};
}

Result<> write_zeros(archive* out, uint64_t length, const std::string& what) {
  static const std::vector<char> zeros(kBuffer);
  for (uint64_t done = 0; done < length;) {
    size_t piece = static_cast<size_t>(std::min<uint64_t>(zeros.size(), length - done));
    KILN_TRY(write_piece(out, zeros.data(), piece, what));
    done += piece;
  }
  return {};
}

}  // namespace

Result<uint64_t> write_archive_data(archive* out, uint64_t size, std::span<const std::pair<uint64_t, uint64_t>> runs,
                                    const ArchiveDataSource& read, const std::string& what) {
  std::vector<char> buffer(kBuffer);
  uint64_t at = 0, read_bytes = 0;
  for (const auto& [offset, length] : runs) {
    if (offset < at || offset + length > size)
      return fail(ErrorKind::kFailed, "internal: {}: data runs out of order or past its size", what);
    KILN_TRY(write_zeros(out, offset - at, what));
    for (uint64_t done = 0; done < length;) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), length - done));
      KILN_ASSIGN(size_t got, read(offset + done, buffer.data(), want));
      if (got == 0) return fail(ErrorKind::kBadInput, "{}: ends before its size says", what);
      KILN_TRY(write_piece(out, buffer.data(), got, what));
      done += got;
    }
    read_bytes += length;
    at = offset + length;
  }
  KILN_TRY(write_zeros(out, size - at, what));
  return read_bytes;
}

}  // namespace kiln
