// CpioHeaderCheck: looks at a decompressed archive stream before libarchive
// does and refuses cpio headers whose sizes would make libarchive read (and
// allocate) an absurd amount at once: a newc header may declare a 4 GiB
// name, and libarchive reads the whole name in one piece. See tar_reader.h
// for the limits and why this sits in front of libarchive.
//
// Only a stream that starts as cpio is checked (libarchive picks the cpio
// reader from the first bytes alone). Every spot in it that libarchive would
// take as a newc or odc header is checked, not only where the previous entry
// says the next one starts, because libarchive skips junk to find a header.
#pragma once

#include <cstddef>
#include <string>

#include "base/error.h"

namespace kiln {

class CpioHeaderCheck {
 public:
  // Checks the next piece of the stream; pieces come in order, and a header
  // may straddle two pieces. The error names `archive`.
  Result<> check(const std::string& archive, const char* data, size_t size);

 private:
  Result<> check_headers_at(const std::string& archive, const char* data, size_t size,
                            size_t last_start);

  enum class State { kUndecided, kCpio, kNotCpio };
  State state_ = State::kUndecided;
  // The stream's last bytes, for a header that starts in one piece and ends
  // in the next (at most a header's length minus one).
  std::string tail_;
  unsigned long long offset_ = 0;  // of the start of tail_ in the stream
};

}  // namespace kiln
