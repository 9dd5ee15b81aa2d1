// Small file helpers the fuzz targets share: whole-file reads and writes,
// a tree's state for "unchanged" checks, and e2fsck as a property.
#pragma once

#include <filesystem>
#include <string>

namespace kiln::fuzzing {

std::string read_file(const std::filesystem::path& path);
void write_file(const std::filesystem::path& path, const std::string& content);

// Every node under `dir` with its type, mode, owner, and content or symlink
// target, as one string: equal strings mean equal trees.
std::string tree_state(const std::filesystem::path& dir);

// Aborts with e2fsck's output unless `e2fsck -fn` finds `image` clean.
void check_fsck_clean(const std::filesystem::path& image, const char* after);

}  // namespace kiln::fuzzing
