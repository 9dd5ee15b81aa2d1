// Fuzzes applying a kiln patch (parse_tree_patch, then apply_patch_to,
// which checks the plan and applies it) to a small directory tree and to a
// small ext4 image, in the sandbox of fuzz_sandbox.h. The property is all
// or nothing: a patch that does not apply leaves the tree and the image as
// they were (the image byte for byte), a patch that applies leaves an image
// that `e2fsck -fn` finds clean, and neither writes anywhere else (the tree
// holds symlinks out of itself, to bait a write through them).
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "container/tree_patching.h"
#include "formats/ext4/ext4_image.h"
#include "formats/tree/rootfs_tree.h"
#include "formats/tree/tree_patch.h"
#include "tests/fuzz/fuzz_files.h"
#include "tests/fuzz/fuzz_invariant.h"
#include "tests/fuzz/fuzz_sandbox.h"

namespace {

namespace fs = std::filesystem;
using kiln::fuzzing::broken;

constexpr int64_t kMtime = 1700000000;
// Made once; each input patches a copy.
fs::path g_template;

// The tree both targets start from: text files, a binary file, a
// directory, a symlink inside and symlinks out (one absolute).
void make_tree(const fs::path& root) {
  fs::create_directories(root / "etc" / "ssh");
  fs::create_directories(root / "bin");
  kiln::fuzzing::write_file(root / "etc" / "hostname", "debian\n");
  kiln::fuzzing::write_file(root / "etc" / "passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n");
  kiln::fuzzing::write_file(root / "etc" / "ssh" / "sshd_config", "PermitRootLogin no\n");
  kiln::fuzzing::write_file(root / "bin" / "tool", std::string("\x7f" "ELF\0\0\x01", 7));
  fs::create_symlink("etc", root / "config");
  fs::create_symlink("/outside", root / "escape");
  fs::create_symlink("../canary", root / "up");
}

template <typename T>
T must(kiln::Result<T> result, const char* what) {
  if (!result) broken(what, result.error().to_string());
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

// The tree as an image, the way kiln bakes one: packed as a tar, streamed
// into a filesystem kiln formats.
fs::path make_template_image(const fs::path& dir) {
  fs::path tree = dir / "template-tree";
  make_tree(tree);
  fs::path tar = dir / "template.tar";
  fs::path image = dir / "template.img";
  kiln::Ext4Options options;
  options.size_bytes = 8 << 20;
  options.uuid = kiln::Uuid::from_name("fuzz/template");
  options.hash_seed = kiln::Uuid::from_name("fuzz/template/hash-seed");
  options.timestamp = kMtime;
  must(kiln::write_tree_as_tar(tree, tar, kMtime), "cannot pack the template tree");
  auto ext4 = must(kiln::Ext4Image::format(image, options), "cannot format the template image");
  auto reader = must(kiln::TarReader::open(tar), "cannot read the template tar");
  must(ext4.import(reader), "cannot import the template tar");
  must(ext4.close(), "cannot close the template image");
  kiln::fuzzing::check_fsck_clean(image, "making the template");
  fs::remove_all(tree);
  fs::remove(tar);
  return image;
}

void patch_tree(const kiln::TreePatch& patch, const fs::path& work) {
  fs::path tree = work / "tree";
  make_tree(tree);
  fs::create_directory(work / "canary");
  kiln::fuzzing::write_file(work / "canary" / "precious", "canary\n");
  std::string before = kiln::fuzzing::tree_state(tree);
  const std::string canary_before = kiln::fuzzing::tree_state(work / "canary");
  kiln::PatchRequest request{.target = tree, .output = {}, .scratch = work / "scratch", .mtime = kMtime};
  auto applied = kiln::apply_patch_to(patch, "fuzz.patch", request);
  if (!applied && kiln::fuzzing::tree_state(tree) != before)
    broken("a patch that failed changed the tree:", applied.error().to_string());
  if (std::string canary = kiln::fuzzing::tree_state(work / "canary"); canary != canary_before)
    broken("patching the tree changed the canary beside it:", canary);
}

void patch_image(const kiln::TreePatch& patch, const fs::path& work) {
  fs::path image = work / "root.img";
  fs::copy_file(g_template, image);
  kiln::PatchRequest request{.target = image, .output = {}, .scratch = work / "scratch", .mtime = kMtime};
  auto applied = kiln::apply_patch_to(patch, "fuzz.patch", request);
  if (applied) {
    kiln::fuzzing::check_fsck_clean(image, "a patch applied");
  } else if (kiln::fuzzing::read_file(image) != kiln::fuzzing::read_file(g_template)) {
    broken("a patch that failed changed the image:", applied.error().to_string());
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kiln::fuzzing::enter_sandbox(*argc, *argv);
  g_template = make_template_image(kiln::fuzzing::keep_directory());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto patch = kiln::parse_tree_patch(text, "fuzz.patch");
  if (!patch) return 0;
  fs::path work = kiln::fuzzing::fresh_work_directory();
  patch_tree(*patch, work);
  patch_image(*patch, work);
  kiln::fuzzing::check_nothing_written_outside_work();
  return 0;
}
