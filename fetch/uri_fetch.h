// UriFetch: gets a file by URI (file, http, https, ftp) with libcurl. A
// download goes to a ".part" file beside the target and is renamed into place
// only when complete; a retry resumes the ".part" where it stopped, unless
// the server cannot resume it (it answers 416, or ignores the range), and
// then the download starts again from zero. HTTP errors, unreachable hosts
// and short transfers are errors naming the URI.
//
// Every transfer is bounded (fetch/download_limits.h): a size cap, enforced
// both on the announced length and on the bytes as they arrive (a server
// may omit Content-Length or lie about it), a low-speed limit and an
// overall deadline. A body over its cap is discarded, not kept to resume.
//
// It is a library of its own (fetch/, the one folder that links libcurl),
// below formats/, builder/ and feeds/, because the bake (bootstrap.from), the
// feeds and the domain-container tool all fetch by URI.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "fetch/download_limits.h"
#include "base/error.h"

namespace kiln {

struct FetchOptions {
  // Called with bytes received so far and the total (0 when unknown).
  std::function<void(uint64_t done, uint64_t total)> progress;
  // The size the source declares (a signed length): a larger body is refused
  // as untrusted. 0: none declared, and limits->max_bytes caps the body.
  uint64_t max_bytes = 0;
  // Empty: download_limits_from_env().
  std::optional<DownloadLimits> limits;
  long connect_timeout_seconds = 30;
};

struct FetchResult {
  uint64_t bytes = 0;
  bool resumed = false;
};

bool is_remote_uri(std::string_view uri);

// A URI as messages and progress lines show it: control characters escaped
// (\xHH), cut after 200 bytes with "…". URIs come from feeds and servers.
std::string shown_uri(std::string_view uri);

// "file:///a/b" and "/a/b" name the same local file.
std::optional<std::filesystem::path> local_path_of(std::string_view uri);

// Fetches `uri` to `target` atomically (resuming a partial TARGET.part).
Result<FetchResult> fetch_uri(const std::string& uri, const std::filesystem::path& target,
                              const FetchOptions& options = {});

// Uploads a local file to `uri` (file: copy; http(s): PUT; ftp: STOR),
// under the low-speed limit and deadline of download_limits_from_env().
Result<> put_uri(const std::filesystem::path& source, const std::string& uri);

}  // namespace kiln
