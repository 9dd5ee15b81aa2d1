// TreePatching: kiln's patches (formats/tree/tree_patch.h) between and onto the
// things a user has at hand: directories, ext2/3/4 image files and
// archives. `kiln diff`, `kiln patch` and the container runner's [patch]
// all come through here, so each kind of target behaves the same way
// whoever asks.
//
// Applying is all or nothing. The patch is checked against the target
// first (an image opened read-only, so not even its "clean" flag changes);
// a rejection leaves the target exactly as it was. An image, in place or
// forked, is then patched through libext2fs on a copy (a reflink where the
// filesystem has them) beside its final name, renamed into place only when
// every step is in. A directory is patched in place, each step undone if a
// later one fails. An archive is expanded into scratch space, patched there
// and written back (or to the fork) in its own format and compression.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "base/error.h"
#include "formats/tree/file_tree.h"
#include "formats/tree/tree_patch.h"

namespace kiln {

enum class TargetKind { kDirectory, kImage, kArchive };
std::string_view target_kind_name(TargetKind kind);

// What a path holds: a directory, an ext2/3/4 image, else an archive.
Result<TargetKind> target_kind_of(const std::filesystem::path& path);

// A directory, image or archive opened as a FileTree for reading. An
// archive is expanded under `scratch` (removed when this is dropped).
class OpenedTree {
 public:
  static Result<OpenedTree> open(const std::filesystem::path& path, const std::filesystem::path& scratch);
  OpenedTree(OpenedTree&&) noexcept;
  OpenedTree& operator=(OpenedTree&&) noexcept;
  ~OpenedTree();

  FileTree& tree();
  TargetKind kind() const;

 private:
  struct State;
  explicit OpenedTree(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// The patch from `old_path` to `new_path`, each a directory, image or archive.
Result<TreePatch> diff_paths(const std::filesystem::path& old_path, const std::filesystem::path& new_path,
                             const std::filesystem::path& scratch);

struct PatchRequest {
  std::filesystem::path target;
  // Where the patched copy goes; empty: the target itself. A directory is
  // only patched in place.
  std::filesystem::path output;
  std::filesystem::path scratch;  // room for an expanded archive
  int64_t mtime = 0;              // for the files the patch writes
};

struct PatchOutcome {
  TargetKind kind = TargetKind::kDirectory;
  size_t created = 0;
  size_t changed = 0;
  size_t removed = 0;
};

Result<PatchOutcome> apply_patch_to(const TreePatch& patch, std::string_view patch_name, const PatchRequest& request);

// Applies to a directory tree in place, all or nothing as above.
Result<PatchOutcome> apply_patch_to_tree(FileTree& tree, const TreePatch& patch, std::string_view patch_name,
                                         int64_t mtime);

}  // namespace kiln
