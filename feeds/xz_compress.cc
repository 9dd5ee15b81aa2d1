#include "feeds/xz_compress.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <thread>

#include <archive.h>
#include <archive_entry.h>

#include "base/files.h"
#include "base/interrupt.h"
#include "base/hash.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

struct XzSink {
  int fd = -1;
  std::string path;
  Hasher sha512{HashAlgorithm::kSha512};
  uint64_t written = 0;
  std::optional<Error> error;
};

la_ssize_t write_compressed(archive*, void* user, const void* buffer, size_t length) {
  auto* sink = static_cast<XzSink*>(user);
  if (auto done = write_all(sink->fd, buffer, length, sink->path); !done) {
    sink->error = done.error();
    return -1;
  }
  sink->sha512.update(buffer, length);
  sink->written += length;
  return static_cast<la_ssize_t>(length);
}

struct WriterDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};

}  // namespace

Result<XzResult> xz_compress_file(const fs::path& source, const fs::path& target, const XzOptions& options) {
  if (options.level < 0 || options.level > 9)
    return fail(ErrorKind::kBadInput, "xz level {} is out of range 0..9", options.level);
  KILN_ASSIGN(UniqueFd in, open_file(source, O_RDONLY));
  struct stat st;
  if (::fstat(in.get(), &st) != 0) return fail_errno("stat", source.string(), errno);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  KILN_ASSIGN(AtomicFile out, AtomicFile::create(target));
  XzSink sink;
  sink.fd = out.fd();
  sink.path = out.temp_path().string();
  unsigned threads = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());

  std::unique_ptr<archive, WriterDeleter> a(archive_write_new());
  auto failed = [&](std::string_view what) {
    if (sink.error) return std::unexpected(*sink.error);
    return fail(ErrorKind::kFailed, "{}: xz compression: {}: {}", source.string(), what,
                archive_error_string(a.get()) ? archive_error_string(a.get()) : "libarchive error");
  };
  if (archive_write_set_format_raw(a.get()) != ARCHIVE_OK || archive_write_add_filter_xz(a.get()) != ARCHIVE_OK)
    return failed("setting up");
  archive_write_set_bytes_in_last_block(a.get(), 1);  // no padding after the xz stream
  if (archive_write_set_filter_option(a.get(), "xz", "compression-level", std::to_string(options.level).c_str()) !=
          ARCHIVE_OK ||
      archive_write_set_filter_option(a.get(), "xz", "threads", std::to_string(threads).c_str()) < ARCHIVE_WARN)
    return failed("options");
  if (archive_write_open(a.get(), &sink, nullptr, write_compressed, nullptr) != ARCHIVE_OK) return failed("opening");
  std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(), archive_entry_free);
  archive_entry_set_pathname(entry.get(), source.filename().c_str());
  archive_entry_set_filetype(entry.get(), AE_IFREG);
  archive_entry_set_size(entry.get(), static_cast<la_int64_t>(size));
  if (archive_write_header(a.get(), entry.get()) != ARCHIVE_OK) return failed("starting");

  std::string buffer(1 << 20, '\0');
  for (uint64_t at = 0; at < size;) {
    KILN_TRY(check_interrupted());
    size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), size - at));
    ssize_t n = ::pread(in.get(), buffer.data(), want, static_cast<off_t>(at));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("cannot read", source.string(), errno);
    }
    if (n == 0) return fail(ErrorKind::kFailed, "{}: file shrank while being compressed", source.string());
    if (archive_write_data(a.get(), buffer.data(), static_cast<size_t>(n)) != n) return failed("writing");
    at += static_cast<uint64_t>(n);
    if (options.progress) options.progress(at, size);
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) return failed("finishing");
  KILN_TRY(out.commit());
  return XzResult{sink.written, sink.sha512.hex_digest()};
}

}  // namespace kiln
