#include "formats/tree/cpio_header_check.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "formats/tree/tar_reader.h"

namespace kiln {
namespace {

// A cpio header in one of libarchive's ASCII forms: where its mode, file
// size and name size fields are, in digits of `base`. libarchive takes a
// spot as a header when its magic matches and every character of the header
// (magic included) is a digit of that base.
struct Layout {
  std::string_view magic;
  size_t size;
  unsigned base;
  size_t mode_at, mode_digits;
  size_t filesize_at, filesize_digits;
  size_t namesize_at, namesize_digits;
};

constexpr Layout kNewc{"070701", 110, 16, 14, 8, 54, 8, 94, 8};
constexpr Layout kNewcCrc{"070702", 110, 16, 14, 8, 54, 8, 94, 8};
constexpr Layout kOdc{"070707", 76, 8, 18, 6, 65, 11, 59, 6};
constexpr Layout kLayouts[] = {kNewc, kNewcCrc, kOdc};
constexpr size_t kLongestHeader = 110;
constexpr std::string_view kCommonMagic = "07070";

int digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return 99;
}

bool all_digits(const char* p, size_t n, unsigned base) {
  return std::all_of(p, p + n, [base](char c) { return digit_value(c) < static_cast<int>(base); });
}

uint64_t number(const char* p, size_t n, unsigned base) {
  uint64_t value = 0;
  for (size_t i = 0; i < n; ++i) value = value * base + static_cast<uint64_t>(digit_value(p[i]));
  return value;
}

// The header at `p` (with `available` bytes from it) if libarchive would
// read one there; nullptr if not, or if it is not all there yet.
const Layout* header_at(const char* p, size_t available) {
  for (const Layout& layout : kLayouts) {
    if (available < layout.size || std::memcmp(p, layout.magic.data(), layout.magic.size()) != 0)
      continue;
    if (all_digits(p, layout.size, layout.base)) return &layout;
  }
  return nullptr;
}

Result<> check_header(const std::string& archive, const Layout& layout, const char* p,
                      unsigned long long offset) {
  uint64_t namesize = number(p + layout.namesize_at, layout.namesize_digits, layout.base);
  // The name size counts the name's terminating NUL.
  if (namesize > kMaxNameBytes + 1)
    return fail(ErrorKind::kBadInput,
                "{}: the cpio header at byte {} of the uncompressed archive declares a name of "
                "{} bytes; kiln reads names of at most {} bytes",
                archive, offset, namesize - 1, kMaxNameBytes);
  uint64_t mode = number(p + layout.mode_at, layout.mode_digits, layout.base);
  uint64_t filesize = number(p + layout.filesize_at, layout.filesize_digits, layout.base);
  constexpr uint64_t kTypeMask = 0170000;
  constexpr uint64_t kSymlink = 0120000;
  if ((mode & kTypeMask) == kSymlink && filesize > kMaxLinkTargetBytes)
    return fail(ErrorKind::kBadInput,
                "{}: the cpio header at byte {} of the uncompressed archive declares a symlink "
                "target of {} bytes; kiln reads targets of at most {} bytes",
                archive, offset, filesize, kMaxLinkTargetBytes);
  return {};
}

}  // namespace

Result<> CpioHeaderCheck::check(const std::string& archive, const char* data, size_t size) {
  if (state_ == State::kNotCpio) return {};
  if (state_ == State::kUndecided) {
    // libarchive picks the cpio reader from the first bytes; keep them
    // until there are enough to tell.
    std::string start = tail_ + std::string(data, std::min(size, kCommonMagic.size()));
    if (start.size() < kCommonMagic.size()) {
      tail_ = std::move(start);
      return {};
    }
    state_ = start.starts_with(kCommonMagic) ? State::kCpio : State::kNotCpio;
    if (state_ == State::kNotCpio) {
      tail_.clear();
      return {};
    }
  }
  // Headers that start in the kept tail and end in this piece.
  if (!tail_.empty()) {
    std::string joined = tail_ + std::string(data, std::min(size, kLongestHeader - 1));
    KILN_TRY(check_headers_at(archive, joined.data(), joined.size(), tail_.size()));
  }
  // Headers that start in this piece (those that end beyond it are checked
  // with the next one, from the tail).
  unsigned long long piece_offset = offset_ + tail_.size();
  offset_ = piece_offset;
  KILN_TRY(check_headers_at(archive, data, size, size));
  std::string kept = size >= kLongestHeader - 1
                         ? std::string(data + size - (kLongestHeader - 1), kLongestHeader - 1)
                         : tail_ + std::string(data, size);
  if (kept.size() > kLongestHeader - 1) kept.erase(0, kept.size() - (kLongestHeader - 1));
  offset_ = piece_offset + size - kept.size();
  tail_ = std::move(kept);
  return {};
}

// Checks each header libarchive could read at a spot before `last_start`.
Result<> CpioHeaderCheck::check_headers_at(const std::string& archive, const char* data,
                                           size_t size, size_t last_start) {
  const char* end = data + size;
  const char* p = data;
  while (p < data + last_start) {
    const void* found = memmem(p, static_cast<size_t>(end - p), kCommonMagic.data(), kCommonMagic.size());
    if (found == nullptr) break;
    p = static_cast<const char*>(found);
    if (p >= data + last_start) break;
    if (const Layout* layout = header_at(p, static_cast<size_t>(end - p)); layout != nullptr)
      KILN_TRY(check_header(archive, *layout, p, offset_ + static_cast<size_t>(p - data)));
    ++p;
  }
  return {};
}

}  // namespace kiln
