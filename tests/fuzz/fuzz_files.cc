#include "tests/fuzz/fuzz_files.h"

#include <sys/stat.h>

#include <fmt/format.h>

#include <fstream>
#include <iterator>

#include "base/subprocess.h"
#include "tests/fuzz/fuzz_invariant.h"
#include "tests/fuzz/fuzz_sandbox.h"

namespace kiln::fuzzing {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const fs::path& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

std::string tree_state(const fs::path& dir) {
  std::string out;
  for (const std::string& name : list_tree(dir)) {
    fs::path path = dir / name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) continue;
    out += fmt::format("{} {:o} {}:{} ", name, st.st_mode, st.st_uid, st.st_gid);
    if (S_ISLNK(st.st_mode)) out += fs::read_symlink(path).string();
    if (S_ISREG(st.st_mode)) out += read_file(path);
    out += '\n';
  }
  return out;
}

void check_fsck_clean(const fs::path& image, const char* after) {
  auto checked = kiln::run(Command{.argv = {"e2fsck", "-fn", image.string()}});
  if (!checked) broken(fmt::format("e2fsck -fn finds the image broken after {}", after).c_str(),
                       checked.error().to_string());
}

}  // namespace kiln::fuzzing
