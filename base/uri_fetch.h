// UriFetch: gets a file by URI (file, http, https, ftp) with libcurl. A
// download goes to a ".part" file beside the target and is renamed into place
// only when complete; a retry resumes the ".part" where it stopped. HTTP
// errors, unreachable hosts and short transfers are errors naming the URI.
//
// It lives in base/ rather than feeds/ because the bake (bootstrap.from), the
// feeds and the container runner all fetch by URI, and base/ is the one layer
// they all may use.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "base/error.h"

namespace kiln {

struct FetchOptions {
  // Called with bytes received so far and the total (0 when unknown).
  std::function<void(uint64_t done, uint64_t total)> progress;
  // Refuse a body larger than this (0: no limit).
  uint64_t max_bytes = 0;
  long connect_timeout_seconds = 30;
};

struct FetchResult {
  uint64_t bytes = 0;
  bool resumed = false;
};

bool is_remote_uri(std::string_view uri);

// "file:///a/b" and "/a/b" name the same local file.
std::optional<std::filesystem::path> local_path_of(std::string_view uri);

// Fetches `uri` to `target` atomically (resuming a partial TARGET.part).
Result<FetchResult> fetch_uri(const std::string& uri, const std::filesystem::path& target,
                              const FetchOptions& options = {});

// Uploads a local file to `uri` (file: copy; http(s): PUT; ftp: STOR).
Result<> put_uri(const std::filesystem::path& source, const std::string& uri);

}  // namespace kiln
