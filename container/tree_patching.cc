#include "container/tree_patching.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>

#include "base/files.h"
#include "base/size.h"
#include "formats/ext4/ext4_image.h"
#include "formats/tree/rootfs_tree.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// Blocks a plan may need beyond its data: an extent block or directory
// block per step, rounded up generously.
uint64_t blocks_needed(const PatchPlan& plan, uint64_t block_size) {
  return plan.bytes_written / block_size + 2 * plan.steps.size() + 16;
}

Result<> check_space(Ext4Image& image, const PatchPlan& plan, const fs::path& path) {
  Ext4Usage usage = image.usage();
  uint64_t needed = blocks_needed(plan, usage.block_size);
  if (needed > usage.blocks_free || plan.created > usage.inodes_free)
    return fail(ErrorKind::kNoSpace,
                "{}: the patch writes {} in {} entries; the image has {} and {} inodes free. Grow the image "
                "(resize2fs) and try again; nothing was changed",
                path.string(), format_size(plan.bytes_written), plan.steps.size(),
                format_size(usage.blocks_free * usage.block_size), usage.inodes_free);
  return {};
}

PatchOutcome outcome_of(TargetKind kind, const PatchPlan& plan) {
  return {kind, plan.created, plan.changed, plan.removed};
}

// The image is changed on a copy that replaces it (or becomes the fork)
// only once the whole patch is in, so a failure half-way, a full disk or a
// kill leaves the image as it was.
Result<PatchOutcome> patch_image(const TreePatch& patch, std::string_view patch_name, const PatchRequest& request) {
  PatchPlan plan;
  {
    KILN_ASSIGN(Ext4Image image, Ext4Image::open(request.target, 0, false));
    auto tree = ext4_tree(image, request.target.string());
    KILN_ASSIGN(plan, check_tree_patch(*tree, patch, patch_name));
    KILN_TRY(check_space(image, plan, request.target));
    KILN_TRY(image.close());
  }
  const fs::path& output = request.output.empty() ? request.target : request.output;
  KILN_TRY(change_on_copy(request.target, output, [&](const fs::path& copy) -> Result<> {
    KILN_ASSIGN(Ext4Image image, Ext4Image::open(copy, 0, true));
    auto tree = ext4_tree(image, output.string());
    KILN_TRY(apply_patch_plan(*tree, plan, request.mtime));
    return image.close();
  }));
  return outcome_of(TargetKind::kImage, plan);
}

Result<PatchOutcome> patch_archive(const TreePatch& patch, std::string_view patch_name, const PatchRequest& request) {
  KILN_ASSIGN(ArchiveForm form, archive_form_of(request.target));
  KILN_ASSIGN(TempDir scratch, TempDir::create(request.scratch, "kiln-patch"));
  KILN_TRY(extract_to_tree(request.target, scratch.path()));
  KILN_ASSIGN(auto tree, open_directory_tree(scratch.path()));
  KILN_ASSIGN(PatchOutcome outcome, apply_patch_to_tree(*tree, patch, patch_name, request.mtime));
  outcome.kind = TargetKind::kArchive;
  KILN_TRY(write_tree_as_archive(scratch.path(), request.output.empty() ? request.target : request.output, form, 0));
  return outcome;
}

}  // namespace

std::string_view target_kind_name(TargetKind kind) {
  switch (kind) {
    case TargetKind::kDirectory: return "directory";
    case TargetKind::kImage: return "image";
    case TargetKind::kArchive: return "archive";
  }
  return "archive";
}

Result<TargetKind> target_kind_of(const fs::path& path) {
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) return fail(ErrorKind::kBadInput, "{}: no such file or directory", path.string());
  if (fs::is_directory(status)) return TargetKind::kDirectory;
  KILN_ASSIGN(bool image, is_ext_image(path));
  return image ? TargetKind::kImage : TargetKind::kArchive;
}

struct OpenedTree::State {
  TargetKind kind = TargetKind::kDirectory;
  std::optional<TempDir> scratch;
  std::optional<Ext4Image> image;
  std::unique_ptr<FileTree> tree;
};

OpenedTree::OpenedTree(std::unique_ptr<State> state) : state_(std::move(state)) {}
OpenedTree::OpenedTree(OpenedTree&&) noexcept = default;
OpenedTree& OpenedTree::operator=(OpenedTree&&) noexcept = default;
OpenedTree::~OpenedTree() = default;
FileTree& OpenedTree::tree() { return *state_->tree; }
TargetKind OpenedTree::kind() const { return state_->kind; }

Result<OpenedTree> OpenedTree::open(const fs::path& path, const fs::path& scratch) {
  auto state = std::make_unique<State>();
  KILN_ASSIGN(state->kind, target_kind_of(path));
  switch (state->kind) {
    case TargetKind::kDirectory: {
      KILN_ASSIGN(state->tree, open_directory_tree(path));
      break;
    }
    case TargetKind::kImage: {
      KILN_ASSIGN(Ext4Image image, Ext4Image::open(path, 0, false));
      state->image.emplace(std::move(image));
      state->tree = ext4_tree(*state->image, path.string());
      break;
    }
    case TargetKind::kArchive: {
      KILN_ASSIGN(TempDir dir, TempDir::create(scratch, "kiln-tree"));
      // The reader's errors name the archive and the entry.
      KILN_TRY(extract_to_tree(path, dir.path()));
      state->scratch.emplace(std::move(dir));
      KILN_ASSIGN(state->tree, open_directory_tree(state->scratch->path()));
      break;
    }
  }
  return OpenedTree(std::move(state));
}

Result<TreePatch> diff_paths(const fs::path& old_path, const fs::path& new_path, const fs::path& scratch) {
  KILN_ASSIGN(OpenedTree old_tree, OpenedTree::open(old_path, scratch));
  KILN_ASSIGN(OpenedTree new_tree, OpenedTree::open(new_path, scratch));
  KILN_ASSIGN(TreePatch patch, diff_trees(old_tree.tree(), new_tree.tree()));
  patch.comments.push_back(fmt::format("kiln diff {} {}", old_path.string(), new_path.string()));
  return patch;
}

Result<PatchOutcome> apply_patch_to_tree(FileTree& tree, const TreePatch& patch, std::string_view patch_name,
                                         int64_t mtime) {
  KILN_ASSIGN(PatchPlan plan, check_tree_patch(tree, patch, patch_name));
  KILN_TRY(apply_patch_plan(tree, plan, mtime));
  return outcome_of(TargetKind::kDirectory, plan);
}

Result<PatchOutcome> apply_patch_to(const TreePatch& patch, std::string_view patch_name, const PatchRequest& request) {
  KILN_ASSIGN(TargetKind kind, target_kind_of(request.target));
  switch (kind) {
    case TargetKind::kImage: return patch_image(patch, patch_name, request);
    case TargetKind::kArchive: return patch_archive(patch, patch_name, request);
    case TargetKind::kDirectory: {
      if (!request.output.empty())
        return fail(ErrorKind::kBadInput, "{}: a directory is patched in place; -o is for images and archives",
                    request.target.string());
      KILN_ASSIGN(auto tree, open_directory_tree(request.target));
      return apply_patch_to_tree(*tree, patch, patch_name, request.mtime);
    }
  }
  return fail(ErrorKind::kBadInput, "{}: nothing kiln can patch", request.target.string());
}

}  // namespace kiln
