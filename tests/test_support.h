// Shared helpers for kiln's tests: scratch directories, paths into the source
// tree, and running the built `kiln` binary the way a user would.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace kiln::testing {

namespace fs = std::filesystem;

// A fresh directory under the build's temporary area, removed afterwards.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

fs::path source_path(const std::string& relative);
std::string kiln_binary();

struct ProcessResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a program (argv, no shell) and captures its output.
ProcessResult run_program(const std::vector<std::string>& argv,
                          const std::vector<std::string>& env = {});
// Runs build/kiln with the given arguments.
ProcessResult run_kiln(const std::vector<std::string>& args,
                       const std::vector<std::string>& env = {});

std::string read_text(const fs::path& path);
void write_text(const fs::path& path, const std::string& text);

// Names every file under `dir`, relative, sorted: for "nothing left behind".
std::vector<std::string> list_tree(const fs::path& dir);

}  // namespace kiln::testing
