// TreePath: where a path inside a filesystem tree leads, by the rule every
// kiln tree follows (the kernel's RESOLVE_IN_ROOT, which TreeRoot uses for
// host directories, and libext2fs's namei inside images): symlinks on the
// way are followed inside the tree, an absolute target starts again at the
// tree's root and ".." stops there.
//
// The patch checker needs this rule over a tree that exists only on paper
// (the tree as it will be once earlier entries are applied), so the rule
// runs over a lookup function rather than over a real tree. The checker
// then hands canonical paths (no symlink anywhere on the way) to the apply
// phase, so both phases act on exactly the same nodes.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln {

// A symlink's target when the node at `canonical` (an absolute path with no
// symlink on the way) is a symlink; nullopt for anything else or nothing.
using SymlinkLookup = std::function<Result<std::optional<std::string>>(const std::string& canonical)>;

// The canonical absolute path that `path` (absolute) names; the last
// component is followed too when `follow_final`. Missing components stay as
// they are named, so the path of something still to be created resolves.
// `tree` names the tree in the error for a symlink loop.
Result<std::string> resolve_tree_path(std::string_view path, bool follow_final, const SymlinkLookup& symlink_at,
                                      std::string_view tree);

// "/a/b/c" -> "/a/b"; "/a" -> "/".
std::string parent_path_of(const std::string& canonical);

}  // namespace kiln
