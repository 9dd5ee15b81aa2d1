#include "fetch/uri_fetch.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <mutex>

#include "base/duration.h"
#include "base/files.h"
#include "base/interrupt.h"
#include "base/size.h"

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
  uint64_t max_bytes = 0;  // the whole body's cap, offset included
  bool too_large = false;
  int write_errno = 0;
  const FetchOptions* options = nullptr;
};

size_t on_data(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  size_t bytes = size * count;
  // Checked here and not only on Content-Length: a server may omit it or lie.
  if (transfer->offset + transfer->received + bytes > transfer->max_bytes) {
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

CurlHandle new_handle(const std::string& uri, long connect_timeout, const DownloadLimits& limits) {
  init_curl_once();
  CurlHandle curl(curl_easy_init(), curl_easy_cleanup);
  curl_easy_setopt(curl.get(), CURLOPT_URL, uri.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_PROTOCOLS_STR, "http,https,ftp,file");
  // A remote server never sends kiln to a local file.
  curl_easy_setopt(curl.get(), CURLOPT_REDIR_PROTOCOLS_STR, "http,https,ftp");
  curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, connect_timeout);
  curl_easy_setopt(curl.get(), CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_LIMIT, DownloadLimits::kLowSpeedBytesPerSecond);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_TIME, static_cast<long>(limits.stall.count()));
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, static_cast<long>(limits.deadline.count()));
  curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, "kiln/" KILN_VERSION);
  return curl;
}

// A transfer that ran out of time: past the deadline, or too slow for too long.
std::unexpected<Error> timed_out(const std::string& shown, CURL* curl, const DownloadLimits& limits,
                                 const std::string& detail) {
  curl_off_t connect = 0, total = 0;
  curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connect);
  curl_easy_getinfo(curl, CURLINFO_TOTAL_TIME_T, &total);
  if (total + 500000 >= static_cast<curl_off_t>(limits.deadline.count()) * 1000000)
    return fail(ErrorKind::kFailed,
                "{}: not complete after {}, the deadline of a transfer; stopped (KILN_DOWNLOAD_TIMEOUT or kiln pull "
                "--download-timeout gives more time)",
                shown, format_duration(limits.deadline));
  if (connect == 0) return fail(ErrorKind::kFailed, "{}: {}", shown, detail);
  return fail(ErrorKind::kFailed, "{}: slower than {} bytes/s for {}; stopped (KILN_DOWNLOAD_STALL allows longer)",
              shown, DownloadLimits::kLowSpeedBytesPerSecond, format_duration(limits.stall));
}

std::unexpected<Error> curl_failure(const std::string& uri, CURL* curl, CURLcode code, const char* detail,
                                    const DownloadLimits& limits) {
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  std::string shown = shown_uri(uri);
  if (code == CURLE_ABORTED_BY_CALLBACK && interrupted())
    return fail(ErrorKind::kInterrupted, "{}: interrupted", shown);
  if (code == CURLE_HTTP_RETURNED_ERROR && status > 0)
    return fail(ErrorKind::kFailed, "{}: the server answered HTTP {}{}", shown, status,
                status == 404 ? " (not found)" : "");
  // curl's own words, at most CURL_ERROR_SIZE bytes; Error escapes what they quote.
  std::string text = detail && *detail ? detail : curl_easy_strerror(code);
  if (code == CURLE_OPERATION_TIMEDOUT) return timed_out(shown, curl, limits, text);
  ErrorKind kind = code == CURLE_FILE_COULDNT_READ_FILE || code == CURLE_REMOTE_FILE_NOT_FOUND ||
                           code == CURLE_UNSUPPORTED_PROTOCOL
                       ? ErrorKind::kBadInput
                       : ErrorKind::kFailed;
  return fail(kind, "{}: {}", shown, text);
}

// A body over its cap: untrusted when the source declared the size, else
// over kiln's own cap, which the user may raise.
std::unexpected<Error> too_large(const std::string& uri, const FetchOptions& options, uint64_t cap) {
  if (options.max_bytes)
    return fail(ErrorKind::kUntrusted, "{}: larger than the {} bytes allowed; refusing it", shown_uri(uri), cap);
  return fail(ErrorKind::kFailed,
              "{}: more than {} ({} bytes), the most kiln downloads when the size is not declared; stopped "
              "(KILN_MAX_DOWNLOAD or kiln pull --max-download raises it)",
              shown_uri(uri), format_size(cap), cap);
}

// Runs the transfer from transfer.offset on.
CURLcode perform(CURL* curl, const Transfer& transfer) {
  curl_easy_setopt(curl, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(transfer.offset));
  // curl refuses an announced length over the cap before any byte (0: no check).
  curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(transfer.max_bytes - transfer.offset));
  return curl_easy_perform(curl);
}

// Whether a resumed transfer failed because the server cannot resume it:
// the part on disk is then worthless, and the download starts from zero.
// curl takes a 416 to a resumed GET for "already complete" and returns OK;
// kiln does not, since the part may be longer than the file, or another one.
bool cannot_resume(CURL* curl, CURLcode code, const Transfer& transfer) {
  if (transfer.offset == 0) return false;
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  return code == CURLE_RANGE_ERROR || code == CURLE_BAD_DOWNLOAD_RESUME || status == 416;
}

Result<DownloadLimits> limits_of(const FetchOptions& options) {
  if (options.limits) return *options.limits;
  return download_limits_from_env();
}

}  // namespace

std::string shown_uri(std::string_view uri) {
  constexpr size_t kMax = 200;
  std::string out;
  for (unsigned char c : uri.substr(0, kMax)) {
    if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return uri.size() > kMax ? out + "…" : out;
}

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
  KILN_ASSIGN(DownloadLimits limits, limits_of(options));
  std::filesystem::path part = target;
  part += ".part";
  KILN_ASSIGN(UniqueFd fd, open_file(part, O_WRONLY | O_CREAT | O_APPEND, 0644));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return fail_errno("stat", part.string(), errno);

  Transfer transfer;
  transfer.fd = fd.get();
  transfer.offset = static_cast<uint64_t>(st.st_size);
  transfer.max_bytes = options.max_bytes ? options.max_bytes : limits.max_bytes;
  transfer.options = &options;
  auto restart = [&]() -> Result<> {
    if (::ftruncate(fd.get(), 0) != 0) return fail_errno("truncate", part.string(), errno);
    transfer.offset = transfer.received = 0;
    return {};
  };
  // A part longer than the body may be cannot be its start.
  if (transfer.offset > transfer.max_bytes) KILN_TRY(restart());
  char error_text[CURL_ERROR_SIZE] = "";
  CurlHandle curl = new_handle(uri, options.connect_timeout_seconds, limits);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFODATA, &transfer);
  curl_easy_setopt(curl.get(), CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, error_text);

  CURLcode code = perform(curl.get(), transfer);
  if (cannot_resume(curl.get(), code, transfer)) {
    KILN_TRY(restart());
    code = perform(curl.get(), transfer);
  }
  if (transfer.too_large || code == CURLE_FILESIZE_EXCEEDED) {
    ::unlink(part.c_str());  // nothing to resume: the body is refused whole
    return too_large(uri, options, transfer.max_bytes);
  }
  if (transfer.write_errno) return fail_errno("cannot write", part.string(), transfer.write_errno);
  if (code != CURLE_OK) {
    // A missing file is final; keep a partial body of a broken transfer to resume.
    if (transfer.offset + transfer.received == 0) ::unlink(part.c_str());
    return curl_failure(uri, curl.get(), code, error_text, limits);
  }
  curl_off_t expected = -1;
  curl_easy_getinfo(curl.get(), CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &expected);
  if (expected >= 0 && transfer.received != static_cast<uint64_t>(expected))
    return fail(ErrorKind::kFailed, "{}: truncated transfer: got {} of {} bytes", shown_uri(uri),
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
  KILN_ASSIGN(DownloadLimits limits, download_limits_from_env());
  KILN_ASSIGN(UniqueFd in, open_file(source, O_RDONLY));
  struct stat st;
  if (::fstat(in.get(), &st) != 0) return fail_errno("stat", source.string(), errno);
  FILE* stream = ::fdopen(in.release(), "rb");
  std::unique_ptr<FILE, decltype(&std::fclose)> file(stream, std::fclose);
  char error_text[CURL_ERROR_SIZE] = "";
  CurlHandle curl = new_handle(uri, 30, limits);
  curl_easy_setopt(curl.get(), CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_READDATA, file.get());
  curl_easy_setopt(curl.get(), CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(st.st_size));
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, error_text);
  curl_easy_setopt(curl.get(), CURLOPT_FTP_CREATE_MISSING_DIRS, 1L);
  CURLcode code = curl_easy_perform(curl.get());
  if (code != CURLE_OK) return curl_failure(uri, curl.get(), code, error_text, limits);
  return {};
}

}  // namespace kiln
