// RootfsTree: moves a root filesystem between an archive and a directory
// tree, for the one stage that must run programs inside the image (apt-get,
// locale-gen, `run` commands) and for debootstrap, which only writes trees.
// Everything else in kiln streams archives without unpacking them.
#pragma once

#include <cstdint>
#include <filesystem>

#include "base/error.h"

namespace kiln {

// Unpacks any archive TarReader reads into `dir` (which must exist and be
// empty), keeping owners, modes, times, device nodes, hardlinks, holes and
// xattrs. Paths are never written outside `dir`.
Result<> extract_to_tree(const std::filesystem::path& archive, const std::filesystem::path& dir);

// Packs `dir` into a pax tar at `out`: entries sorted by name, numeric owners
// only, times clamped to `clamp_mtime` (when non-zero), hardlinks as links,
// holes as sparse entries, xattrs kept. Equal trees give equal bytes.
Result<> write_tree_as_tar(const std::filesystem::path& dir, const std::filesystem::path& out,
                           int64_t clamp_mtime);

}  // namespace kiln
