#include "base/uri_fetch.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <mutex>

#include "base/files.h"
#include "base/interrupt.h"

namespace kiln {
namespace {

void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  int fd = -1;
  uint64_t offset = 0;     // bytes already on disk before this transfer
  uint64_t received = 0;   // bytes written by this transfer
  uint64_t max_bytes = 0;
  bool too_large = false;
  int write_errno = 0;
  const FetchOptions* options = nullptr;
};

size_t on_data(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  size_t bytes = size * count;
  if (transfer->max_bytes && transfer->offset + transfer->received + bytes > transfer->max_bytes) {
    transfer->too_large = true;
    return 0;
  }
  if (!write_all(transfer->fd, data, bytes, "download")) {
    transfer->write_errno = errno ? errno : EIO;
    return 0;
  }
  transfer->received += bytes;
  return bytes;
}

int on_progress(void* user, curl_off_t total, curl_off_t done, curl_off_t, curl_off_t) {
  auto* transfer = static_cast<Transfer*>(user);
  if (interrupted()) return 1;
  if (transfer->options->progress)
    transfer->options->progress(transfer->offset + static_cast<uint64_t>(done),
                                total > 0 ? transfer->offset + static_cast<uint64_t>(total) : 0);
  return 0;
}

using CurlHandle = std::unique_ptr<CURL, decltype(&curl_easy_cleanup)>;

CurlHandle new_handle(const std::string& uri, long connect_timeout) {
  init_curl_once();
  CurlHandle curl(curl_easy_init(), curl_easy_cleanup);
  curl_easy_setopt(curl.get(), CURLOPT_URL, uri.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, connect_timeout);
  curl_easy_setopt(curl.get(), CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  // Give up on a stalled transfer: under 1 byte/s for a minute.
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, "kiln/" KILN_VERSION);
  return curl;
}

std::unexpected<Error> curl_failure(const std::string& uri, CURL* curl, CURLcode code,
                                    const char* detail) {
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  if (code == CURLE_ABORTED_BY_CALLBACK && interrupted())
    return fail(ErrorKind::kInterrupted, "{}: interrupted", uri);
  if (code == CURLE_HTTP_RETURNED_ERROR && status > 0)
    return fail(ErrorKind::kFailed, "{}: the server answered HTTP {}{}", uri, status,
                status == 404 ? " (not found)" : "");
  std::string text = detail && *detail ? detail : curl_easy_strerror(code);
  ErrorKind kind = code == CURLE_FILE_COULDNT_READ_FILE || code == CURLE_REMOTE_FILE_NOT_FOUND
                       ? ErrorKind::kBadInput
                       : ErrorKind::kFailed;
  return fail(kind, "{}: {}", uri, text);
}

}  // namespace

bool is_remote_uri(std::string_view uri) {
  return uri.starts_with("http://") || uri.starts_with("https://") || uri.starts_with("ftp://");
}

std::optional<std::filesystem::path> local_path_of(std::string_view uri) {
  if (uri.starts_with("file://")) return std::filesystem::path(uri.substr(7));
  if (uri.find("://") != std::string_view::npos) return std::nullopt;
  return std::filesystem::path(uri);
}

Result<FetchResult> fetch_uri(const std::string& uri, const std::filesystem::path& target,
                              const FetchOptions& options) {
  std::filesystem::path part = target;
  part += ".part";
  KILN_ASSIGN(UniqueFd fd, open_file(part, O_WRONLY | O_CREAT | O_APPEND, 0644));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return fail_errno("stat", part.string(), errno);

  Transfer transfer;
  transfer.fd = fd.get();
  transfer.offset = static_cast<uint64_t>(st.st_size);
  transfer.max_bytes = options.max_bytes;
  transfer.options = &options;
  char error_text[CURL_ERROR_SIZE] = "";
  CurlHandle curl = new_handle(uri, options.connect_timeout_seconds);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFODATA, &transfer);
  curl_easy_setopt(curl.get(), CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, error_text);
  if (transfer.offset > 0)
    curl_easy_setopt(curl.get(), CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(transfer.offset));

  CURLcode code = curl_easy_perform(curl.get());
  if (code == CURLE_RANGE_ERROR || code == CURLE_BAD_DOWNLOAD_RESUME) {
    // The server cannot resume: start again from nothing.
    if (::ftruncate(fd.get(), 0) != 0) return fail_errno("truncate", part.string(), errno);
    transfer.offset = 0;
    transfer.received = 0;
    curl_easy_setopt(curl.get(), CURLOPT_RESUME_FROM_LARGE, curl_off_t{0});
    code = curl_easy_perform(curl.get());
  }
  if (transfer.too_large)
    return fail(ErrorKind::kUntrusted, "{}: larger than the {} bytes allowed; refusing it", uri,
                options.max_bytes);
  if (transfer.write_errno) return fail_errno("cannot write", part.string(), transfer.write_errno);
  if (code != CURLE_OK) {
    // A missing file is final; keep a partial body of a broken transfer to resume.
    if (transfer.offset + transfer.received == 0) ::unlink(part.c_str());
    return curl_failure(uri, curl.get(), code, error_text);
  }
  curl_off_t expected = -1;
  curl_easy_getinfo(curl.get(), CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &expected);
  if (expected >= 0 && transfer.received != static_cast<uint64_t>(expected))
    return fail(ErrorKind::kFailed, "{}: truncated transfer: got {} of {} bytes", uri,
                transfer.received, expected);
  if (::fsync(fd.get()) != 0) return fail_errno("fsync", part.string(), errno);
  if (::rename(part.c_str(), target.c_str()) != 0)
    return fail_errno("cannot rename into place", target.string(), errno);
  return FetchResult{transfer.offset + transfer.received, transfer.offset > 0};
}

Result<> put_uri(const std::filesystem::path& source, const std::string& uri) {
  if (auto local = local_path_of(uri)) {
    std::error_code ec;
    std::filesystem::create_directories(local->parent_path(), ec);
    KILN_ASSIGN(AtomicFile out, AtomicFile::create(*local));
    KILN_ASSIGN(UniqueFd in, open_file(source, O_RDONLY));
    struct stat st;
    if (::fstat(in.get(), &st) != 0) return fail_errno("stat", source.string(), errno);
    KILN_TRY(copy_sparse(in.get(), 0, out.fd(), 0, static_cast<uint64_t>(st.st_size), source.string()));
    if (::ftruncate(out.fd(), st.st_size) != 0) return fail_errno("truncate", local->string(), errno);
    return out.commit();
  }
  KILN_ASSIGN(UniqueFd in, open_file(source, O_RDONLY));
  struct stat st;
  if (::fstat(in.get(), &st) != 0) return fail_errno("stat", source.string(), errno);
  FILE* stream = ::fdopen(in.release(), "rb");
  std::unique_ptr<FILE, decltype(&std::fclose)> file(stream, std::fclose);
  char error_text[CURL_ERROR_SIZE] = "";
  CurlHandle curl = new_handle(uri, 30);
  curl_easy_setopt(curl.get(), CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_READDATA, file.get());
  curl_easy_setopt(curl.get(), CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(st.st_size));
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, error_text);
  curl_easy_setopt(curl.get(), CURLOPT_FTP_CREATE_MISSING_DIRS, 1L);
  CURLcode code = curl_easy_perform(curl.get());
  if (code != CURLE_OK) return curl_failure(uri, curl.get(), code, error_text);
  return {};
}

}  // namespace kiln
