// Gzip for the images inside an xvm archive, both ways, with zlib.
//
// gzip_parallel compresses on every core, in the manner of pigz: the input is
// cut into blocks that are deflated independently, each primed with the
// 32 KiB of input before it, and ended on a byte boundary, so that joined in
// order they form one ordinary deflate stream inside a single gzip member
// (header, stream, CRC-32, length). gunzip, zcat and any zlib reader take it
// as they would gzip's own output. Blocks of zeros (the holes of a disk
// image) are deflated once and reused.
//
// GzipExpander decompresses one or more concatenated members and refuses to
// produce a byte more than its limit: an archive declares each image's size,
// and a "gzip bomb" that would expand past it is stopped right there.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln {

// Receives bytes in order; an error stops the work and is returned as is.
using ByteSink = std::function<Result<>(std::string_view)>;

struct GzipOptions {
  int level = 6;          // zlib's 0..9, as gzip -1..-9
  unsigned threads = 0;   // 0: one per core
  size_t block_size = 1 << 20;
  // Called on the calling thread with the input bytes compressed so far.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

struct GzipStats {
  uint64_t input_bytes = 0;
  uint64_t output_bytes = 0;
  uint32_t crc32 = 0;  // of the input, as in the gzip trailer
};

// Compresses the first `size` bytes of `in_fd` (read with pread, at any
// position) into one gzip member handed to `sink` piece by piece, on the
// calling thread. `name` names the input in errors. The output depends only
// on the input, the level and the block size: no time stamp, no file name.
Result<GzipStats> gzip_parallel(int in_fd, uint64_t size, const ByteSink& sink, const GzipOptions& options,
                                std::string_view name);

// Expands gzip data fed in pieces, member after member.
class GzipExpander {
 public:
  // `limit`: the most plain bytes this data may expand to.
  GzipExpander(uint64_t limit, std::string name);
  GzipExpander(GzipExpander&&) noexcept;
  ~GzipExpander();

  // Expands `compressed`; the plain bytes go to `sink` as they come out.
  // Fails on corrupt data (a bad CRC or length included) and as soon as the
  // output would pass the limit.
  Result<> update(std::string_view compressed, const ByteSink& sink);
  // Checks that the data ended at the end of a member; returns the plain size.
  Result<uint64_t> finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace kiln
