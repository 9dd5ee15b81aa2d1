#include "tests/test_support.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "base/subprocess.h"

namespace kiln::testing {

ScratchDir::ScratchDir() {
  const char* base = std::getenv("KILN_TEST_TMPDIR");
  fs::path parent = base ? base : fs::temp_directory_path();
  std::string pattern = (parent / "kiln-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

fs::path source_path(const std::string& relative) { return fs::path(KILN_SOURCE_DIR) / relative; }

std::string kiln_binary() { return KILN_BINARY; }

ProcessResult run_program(const std::vector<std::string>& argv,
                          const std::vector<std::string>& env) {
  Command command;
  command.argv = argv;
  command.env = env;
  // Any exit code is an answer here; the test decides what it means.
  for (int code = 1; code < 256; ++code) command.ok_exit_codes.push_back(code);
  auto done = run(command);
  if (!done) return {-1, "", done.error().to_string()};
  return {done->exit_code, done->out, done->err};
}

ProcessResult run_kiln(const std::vector<std::string>& args,
                       const std::vector<std::string>& env) {
  std::vector<std::string> argv = {kiln_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_program(argv, env);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::vector<std::string> list_tree(const fs::path& dir) {
  std::vector<std::string> names;
  if (!fs::exists(dir)) return names;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    names.push_back(fs::relative(entry.path(), dir).string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace kiln::testing
