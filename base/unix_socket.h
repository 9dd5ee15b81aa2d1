// Unix stream sockets by path: the instance's control, console, exec and
// QMP sockets, and the exec channel under qemu.
#pragma once

#include <filesystem>

#include "base/error.h"
#include "base/files.h"

namespace kiln {

// Listens on `path` (replacing a stale socket there), readable by its owner
// only; the descriptor is non-blocking, as a poll loop wants it.
Result<UniqueFd> listen_unix(const std::filesystem::path& path);

// Connects to `path`; a blocking descriptor.
Result<UniqueFd> connect_unix(const std::filesystem::path& path);

}  // namespace kiln
