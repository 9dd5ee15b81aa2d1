#include "crypto/volume_encryption.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "base/files.h"
#include "base/interrupt.h"
#include "crypto/sector_cipher.h"

namespace kiln {
namespace {

constexpr uint64_t kChunk = 4 << 20;
constexpr uint64_t kDirectAlignment = 4096;
constexpr unsigned kMaxThreads = 4;

struct Piece {
  uint64_t offset;
  uint64_t length;
};

}  // namespace

void merge_ranges(std::vector<ByteRange>& ranges, uint64_t sector) {
  for (ByteRange& range : ranges) {
    uint64_t end = (range.offset + range.length + sector - 1) / sector * sector;
    range.offset = range.offset / sector * sector;
    range.length = end - range.offset;
  }
  std::sort(ranges.begin(), ranges.end(), [](const ByteRange& a, const ByteRange& b) { return a.offset < b.offset; });
  std::vector<ByteRange> out;
  for (const ByteRange& range : ranges) {
    if (!out.empty() && range.offset <= out.back().offset + out.back().length) {
      uint64_t end = std::max(out.back().offset + out.back().length, range.offset + range.length);
      out.back().length = end - out.back().offset;
    } else {
      out.push_back(range);
    }
  }
  ranges = std::move(out);
}

namespace {

enum class Direction { kEncrypt, kDecrypt };

bool all_zero(const char* data, size_t size) {
  return size == 0 || (data[0] == 0 && std::memcmp(data, data + 1, size - 1) == 0);
}

Result<uint64_t> run_ranges(const EncryptionJob& job, std::span<const ByteRange> ranges, const Secret& key,
                            Direction direction) {
  const bool encrypting = direction == Direction::kEncrypt;
  std::vector<Piece> pieces;
  uint64_t total = 0;
  for (const ByteRange& range : ranges) {
    if (range.offset % job.sector_size != 0 || range.length % job.sector_size != 0)
      return fail(ErrorKind::kFailed, "internal: {} bytes at {} are not whole {}-byte sectors", range.length,
                  range.offset, job.sector_size);
    for (uint64_t at = 0; at < range.length; at += kChunk)
      pieces.push_back({range.offset + at, std::min(kChunk, range.length - at)});
    total += range.length;
  }
  const std::filesystem::path& from = encrypting ? job.plaintext : job.target;
  const std::filesystem::path& to = encrypting ? job.target : job.plaintext;
  const uint64_t from_offset = encrypting ? job.plaintext_offset : job.target_offset;
  const uint64_t to_offset = encrypting ? job.target_offset : job.plaintext_offset;
  KILN_ASSIGN(UniqueFd source, open_file(from, O_RDONLY | O_CLOEXEC));
  // Written around the page cache when everything is aligned for it: the
  // cost of writing an image is otherwise mostly the kernel filling fresh
  // page-cache pages, which the encrypted data never needs again. In place,
  // the pages are there already, dirty with the plaintext: overwriting them
  // is cheapest, and a direct write would first flush the plaintext out.
  bool in_place = job.plaintext == job.target && job.plaintext_offset == job.target_offset;
  bool aligned = encrypting && !in_place && job.target_offset % kDirectAlignment == 0 &&
                 std::all_of(pieces.begin(), pieces.end(), [](const Piece& piece) {
                   return piece.offset % kDirectAlignment == 0 && piece.length % kDirectAlignment == 0;
                 });
  UniqueFd target(aligned ? ::open(to.c_str(), O_RDWR | O_CLOEXEC | O_DIRECT) : -1);
  if (!target) {
    KILN_ASSIGN(target, open_file(to, O_RDWR | O_CLOEXEC));
  }
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> done{0};
  std::mutex mutex;
  std::optional<Error> failure;
  auto work = [&]() {
    auto fail_with = [&](Error error) {
      std::lock_guard lock(mutex);
      if (!failure) failure = std::move(error);
    };
    // Each thread its own cipher context: OpenSSL's are not shared.
    auto cipher = SectorCipher::create(job.cipher, key, job.sector_size);
    if (!cipher) return fail_with(std::move(cipher).error());
    // Aligned for O_DIRECT.
    std::unique_ptr<char, decltype(&std::free)> memory(
        static_cast<char*>(std::aligned_alloc(kDirectAlignment, kChunk)), &std::free);
    if (!memory) return fail_with(Error{ErrorKind::kFailed, "out of memory for the encryption buffer", {}, {}});
    char* buffer = memory.get();
    for (size_t i = next++; i < pieces.size(); i = next++) {
      if (interrupted()) return;
      {
        std::lock_guard lock(mutex);
        if (failure) return;
      }
      const Piece& piece = pieces[i];
      size_t length = static_cast<size_t>(piece.length);
      ssize_t n = ::pread(source.get(), buffer, length, static_cast<off_t>(from_offset + piece.offset));
      if (n != static_cast<ssize_t>(length))
        return fail_with(fail_errno("cannot read", from.string(), n < 0 ? errno : EIO).error());
      auto done_here = encrypting ? cipher->encrypt(buffer, length, piece.offset)
                                  : cipher->decrypt(buffer, length, piece.offset);
      if (!done_here) return fail_with(std::move(done_here).error());
      // Decrypted zeros stay holes of the fresh plaintext file.
      bool skip = !encrypting && all_zero(buffer, length);
      if (auto written = skip ? Result<>() : pwrite_all(target.get(), buffer, length, to_offset + piece.offset,
                                                        to.string());
          !written)
        return fail_with(std::move(written).error());
      uint64_t so_far = done += length;
      if (job.progress) {
        std::lock_guard lock(mutex);
        job.progress(so_far, total);
      }
    }
  };
  unsigned threads = std::clamp(std::thread::hardware_concurrency(), 1u, kMaxThreads);
  std::vector<std::thread> workers;
  for (unsigned t = 1; t < threads; ++t) workers.emplace_back(work);
  work();
  for (std::thread& worker : workers) worker.join();
  if (failure) return std::unexpected(std::move(*failure));
  KILN_TRY(check_interrupted());
  return total;
}

}  // namespace

Result<uint64_t> encrypt_ranges(const EncryptionJob& job, std::span<const ByteRange> ranges, const Secret& key) {
  return run_ranges(job, ranges, key, Direction::kEncrypt);
}

Result<uint64_t> decrypt_ranges(const EncryptionJob& job, std::span<const ByteRange> ranges, const Secret& key) {
  return run_ranges(job, ranges, key, Direction::kDecrypt);
}

}  // namespace kiln
