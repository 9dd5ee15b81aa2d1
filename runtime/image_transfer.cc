#include "runtime/image_transfer.h"

#include <endian.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "base/files.h"
#include "base/hash.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

constexpr size_t kChunk = 1 << 20;

// Reads exactly `size` bytes, or says the stream ended first.
Result<bool> read_exactly(int fd, void* data, size_t size) {
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::read(fd, static_cast<char*>(data) + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("read", "the image stream", errno);
    if (n == 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Result<> send_image_file(const fs::path& file, int fd, const std::function<void(uint64_t sent)>& progress) {
  KILN_ASSIGN(UniqueFd in, open_file(file, O_RDONLY));
  struct stat st;
  if (::fstat(in.get(), &st) != 0) return fail_errno("stat", file.string(), errno);
  std::vector<char> buffer(kChunk);
  uint64_t sent = 0;
  return for_each_run(
      in.get(), 0, static_cast<uint64_t>(st.st_size), file.string(),
      [&](uint64_t at, uint64_t size) -> Result<> {
        uint64_t header[2] = {htole64(at), htole64(size)};
        KILN_TRY(write_all(fd, header, sizeof header, "the image stream"));
        for (uint64_t done = 0; done < size;) {
          size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, size - done));
          ssize_t n = ::pread(in.get(), buffer.data(), want, static_cast<off_t>(at + done));
          if (n <= 0) return fail_errno("read", file.string(), n < 0 ? errno : EIO);
          KILN_TRY(write_all(fd, buffer.data(), static_cast<size_t>(n), "the image stream"));
          done += static_cast<uint64_t>(n);
          sent += static_cast<uint64_t>(n);
          progress(sent);
        }
        return {};
      },
      [](uint64_t) {});
}

Result<> receive_image_file(int fd, const fs::path& dir, const std::string& sha256, uint64_t size) {
  if (!is_sha256_hex(sha256)) return fail(ErrorKind::kBadInput, "\"{}\" is not a SHA-256", sha256);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail_errno("cannot create", dir.string(), ec.value());
  KILN_ASSIGN(TempDir temp, TempDir::create(dir, "incoming"));
  fs::path partial = temp.path() / sha256;
  KILN_ASSIGN(UniqueFd out, open_file(partial, O_WRONLY | O_CREAT | O_EXCL, 0644));
  if (::ftruncate(out.get(), static_cast<off_t>(size)) != 0) return fail_errno("cannot size", partial.string(), errno);
  std::vector<char> buffer(kChunk);
  while (true) {
    uint64_t header[2];
    KILN_ASSIGN(bool more, read_exactly(fd, header, sizeof header));
    if (!more) break;
    uint64_t at = le64toh(header[0]), length = le64toh(header[1]);
    if (at > size || length > size - at)
      return fail(ErrorKind::kBadInput, "the image stream for {} writes past its {} bytes", sha256, size);
    for (uint64_t done = 0; done < length;) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, length - done));
      KILN_ASSIGN(bool whole, read_exactly(fd, buffer.data(), want));
      if (!whole) return fail(ErrorKind::kFailed, "the image stream for {} ended in the middle of a run", sha256);
      KILN_TRY(pwrite_all(out.get(), buffer.data(), want, at + done, partial.string()));
      done += want;
    }
  }
  if (::fsync(out.get()) != 0) return fail_errno("fsync", partial.string(), errno);
  KILN_ASSIGN(std::string digest, file_digest_hex(partial));
  if (digest != sha256)
    return fail(ErrorKind::kBadInput, "the image file received as {} has SHA-256 {}: not kept", sha256, digest);
  if (::rename(partial.c_str(), (dir / sha256).c_str()) != 0) return fail_errno("rename", partial.string(), errno);
  return fsync_directory(dir);
}

Result<uint64_t> allocated_bytes(const fs::path& file) {
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) return fail_errno("stat", file.string(), errno);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

}  // namespace kiln
