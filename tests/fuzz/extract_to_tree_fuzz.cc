// Fuzzes unpacking an archive into a directory (kiln::extract_to_tree), in
// the sandbox of fuzz_sandbox.h. Each input is written as an archive file
// into a fresh directory T that also holds T/canary/precious, and is
// extracted into T/root. Whether or not extraction succeeds, the property
// is that nothing outside T/root changed: the canary and the archive are
// byte for byte as they were, T holds nothing new, and nothing appeared
// anywhere else in the sandbox (an absolute symlink's target lands there).
// The same archive's regular files (kiln::extract_regular_files, for
// `kiln import` of a bundle) go into T/files, where nothing but regular
// files and directories may appear.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "formats/tree/rootfs_tree.h"
#include "tests/fuzz/fuzz_files.h"
#include "tests/fuzz/fuzz_invariant.h"
#include "tests/fuzz/fuzz_sandbox.h"

namespace {

namespace fs = std::filesystem;
using kiln::fuzzing::broken;
using kiln::fuzzing::read_file;
using kiln::fuzzing::write_file;

constexpr char kCanary[] = "the canary must outlive every archive\n";

void check_outside_root(const fs::path& t, const std::string& archive) {
  if (fs::is_symlink(t / "canary") || read_file(t / "canary" / "precious") != kCanary)
    broken("extraction changed the canary T/canary/precious", "");
  if (auto canary = kiln::fuzzing::list_tree(t / "canary"); canary != std::vector<std::string>{"precious"})
    broken("extraction created something in T/canary:", canary.empty() ? "(nothing left)" : canary.back());
  if (read_file(t / "archive") != archive) broken("extraction changed the archive T/archive", "");
  std::vector<std::string> top;
  for (const auto& entry : fs::directory_iterator(t)) top.push_back(entry.path().filename().string());
  std::sort(top.begin(), top.end());
  if (top != std::vector<std::string>{"archive", "canary", "files", "root"} || fs::is_symlink(t / "root") ||
      fs::is_symlink(t / "files"))
    broken("extraction created something in T beside T/root", fmt::format("{}", fmt::join(top, " ")));
  for (const auto& entry : fs::recursive_directory_iterator(t / "files"))
    if (fs::file_type type = entry.symlink_status().type();
        type != fs::file_type::regular && type != fs::file_type::directory)
      broken("extract_regular_files left something other than a file or directory:",
             entry.path().lexically_relative(t).string());
  kiln::fuzzing::check_nothing_written_outside_work();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kiln::fuzzing::enter_sandbox(*argc, *argv);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fs::path t = kiln::fuzzing::fresh_work_directory();
  std::string archive(reinterpret_cast<const char*>(data), size);
  write_file(t / "archive", archive);
  fs::create_directory(t / "canary");
  write_file(t / "canary" / "precious", kCanary);
  fs::create_directory(t / "root");
  fs::create_directory(t / "files");
  (void)kiln::extract_to_tree(t / "archive", t / "root");
  (void)kiln::extract_regular_files(t / "archive", t / "files");
  check_outside_root(t, archive);
  return 0;
}
