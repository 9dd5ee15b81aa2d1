// TreePatch: kiln's patch format, the difference between two filesystem
// trees as a text file (docs/patch-format.md). Text files change by unified
// diff hunks; new and binary contents travel in base64; deletions, modes,
// owners, directories and symlinks are carried too. `kiln diff`, the
// container expressions [replace] and [copy] make patches; `kiln patch` and
// [patch] apply them to a directory, an ext2/3/4 image (no mount) or an
// archive.
//
//   kiln-patch 1
//   # any comment lines
//
//   diff etc/hostname
//   old file 0644 0:0
//   new file 0644 0:0
//   --- a/etc/hostname
//   +++ b/etc/hostname
//   @@ -1 +1 @@
//   -debian
//   +fido
//
// Every entry names one path (relative to the tree's root; "." is the root)
// and its state before and after: `none`, `file MODE UID:GID`, `directory
// MODE UID:GID` or `symlink TARGET UID:GID`. Then the content:
//   - hunks (`---`/`+++` lines, then `@@` hunks) for a text file;
//   - `sha256 HEX`: the old file's content must hash to this (required when
//     a file is deleted or replaced by something else, or its content is
//     replaced whole);
//   - `base64 SIZE` and the content's base64 lines (76 columns) for a new
//     whole content: binary files, and empty new files.
// A path containing a space, a quote, a backslash or a control character is
// written in double quotes with C escapes (\" \\ \t \n \r \ooo).
//
// Applying never half-applies: every entry is checked against the tree
// first (states, hunks, hashes), and a single mismatch rejects the whole
// patch with a list of every rejected entry and hunk, file and line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "formats/tree/file_tree.h"
#include "formats/tree/line_diff.h"

namespace kiln {

enum class NodeKind { kNone, kFile, kDirectory, kSymlink };

struct NodeState {
  NodeKind kind = NodeKind::kNone;
  uint32_t mode = 0;  // files and directories
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string target;  // symlinks

  // "file 0644 0:0", "none": the patch syntax, also used in messages.
  std::string to_string() const;
  bool operator==(const NodeState&) const = default;
};

struct PatchEntry {
  std::string path;  // relative: "etc/hostname"; "." is the root
  NodeState old_state;
  NodeState new_state;
  std::vector<Hunk> hunks;
  std::optional<std::string> old_sha256;   // lower-case hex
  std::optional<std::string> new_content;  // carried whole (base64 in the file)
  int line = 0;  // where the entry starts in the patch it was read from

  bool operator==(const PatchEntry& other) const {
    return path == other.path && old_state == other.old_state && new_state == other.new_state &&
           hunks == other.hunks && old_sha256 == other.old_sha256 && new_content == other.new_content;
  }
};

struct TreePatch {
  std::vector<std::string> comments;  // without their "# "
  std::vector<PatchEntry> entries;
};

// Reads a patch; `name` is used in FILE:LINE:COL errors.
Result<TreePatch> parse_tree_patch(std::string_view text, std::string_view name);
// The patch in its text form; it parses back to an equal patch.
std::string write_tree_patch(const TreePatch& patch);

// A node as a patch sees it, with a file's content.
struct NodeSnapshot {
  NodeState state;
  std::string content;
  int64_t mtime = 0;  // not compared by diffs; kept to put a node back as it was
};
// The node at `path` (absolute in the tree); devices, fifos and sockets are
// refused, as patches do not carry them.
Result<NodeSnapshot> snapshot_node(FileTree& tree, std::string_view path);
// The entry turning `before` into `after` at `path` (relative), or nullopt
// when they are the same. Text (no NUL byte on either side) becomes hunks;
// anything else travels whole.
std::optional<PatchEntry> diff_nodes(std::string path, const NodeSnapshot& before, const NodeSnapshot& after);

// Everything that differs between two trees, parents created before their
// children and children removed before their parents. The roots' own mode
// and owner are not compared (a scratch directory's would always differ).
// Device nodes, fifos and sockets that are equal on both sides are left
// alone; any other difference in them is an error.
Result<TreePatch> diff_trees(FileTree& old_tree, FileTree& new_tree);

// One entry that does not apply, and why; for hunks, each rejected hunk.
// patch_line is the hunk's "@@" line or the entry's "diff" line in the
// patch text, 0 for a patch made in memory.
struct Rejection {
  std::string path;
  int patch_line = 0;
  std::string reason;
};

// A checked patch: what each entry will do, content included, so that
// applying needs no further reads.
struct PatchPlan {
  struct Step {
    std::string path;  // absolute in the tree
    NodeState old_state;
    NodeState new_state;
    std::optional<std::string> content;  // the file's new content, when it changes
  };
  std::vector<Step> steps;
  uint64_t bytes_written = 0;  // new content, for a space check
  size_t created = 0;
  size_t changed = 0;
  size_t removed = 0;
};

// Checks every entry against the tree without changing it. A patch that
// does not apply is an ErrorKind::kBadInput error listing each rejection
// ("PATCH:LINE: etc/passwd: hunk 2 @@ -20,6 +20,7 @@ does not apply: line 22
// reads ... where the patch expects ...").
Result<PatchPlan> check_tree_patch(FileTree& tree, const TreePatch& patch, std::string_view patch_name);
// Carries out a checked plan; files written get `mtime`. A step that fails
// (a full disk, say) undoes the steps before it, so the tree is left as it
// was.
Result<> apply_patch_plan(FileTree& tree, const PatchPlan& plan, int64_t mtime);

}  // namespace kiln
