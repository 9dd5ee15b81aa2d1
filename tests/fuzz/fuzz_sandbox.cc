#include "tests/fuzz/fuzz_sandbox.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_invariant.h"

namespace kiln::fuzzing {
namespace {

namespace fs = std::filesystem;

struct Sandbox {
  fs::path work;
  fs::path keep;
  bool chrooted = false;
  std::vector<std::string> top_level;  // of the chroot, after setting it up
  // What /tmp holds after setting it up: the build directory's path when the
  // checkout is under /tmp, nothing otherwise.
  std::vector<std::string> tmp;
};
std::optional<Sandbox> g_sandbox;

void must(bool ok, const std::string& what) {
  if (!ok) broken("the fuzz sandbox cannot be set up", what + ": " + std::strerror(errno));
}

std::vector<std::string> list_directory(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code error;
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error))
    out.push_back(it->path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// A host path held open, so that it can still be bound into the sandbox
// once the sandbox's tmpfs hides it (a checkout under /tmp).
struct HeldPath {
  fs::path path;
  int fd;
  bool directory;
};

HeldPath hold(const fs::path& path) {
  int fd = ::open(path.c_str(), O_PATH | O_CLOEXEC);
  must(fd >= 0, "open " + path.string());
  struct stat status{};
  must(::fstat(fd, &status) == 0, "stat " + path.string());
  return {path, fd, S_ISDIR(status.st_mode)};
}

// Binds a held host path into the sandbox at the same absolute path.
void bind_in(const fs::path& root, const HeldPath& host, bool read_only) {
  fs::path inside = root / host.path.relative_path();
  std::error_code ignored;
  if (host.directory) {
    fs::create_directories(inside, ignored);
  } else {
    fs::create_directories(inside.parent_path(), ignored);
    if (FILE* file = std::fopen(inside.c_str(), "a")) std::fclose(file);
  }
  const std::string source = "/proc/self/fd/" + std::to_string(host.fd);
  must(::mount(source.c_str(), inside.c_str(), nullptr, MS_BIND | MS_REC, nullptr) == 0,
       "bind " + host.path.string());
  if (read_only)
    must(::mount(nullptr, inside.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0,
         "read-only " + host.path.string());
}

// The paths libFuzzer (or the corpus replay) reads and writes: every
// argument that is not a flag, and -artifact_prefix's directory.
std::vector<fs::path> paths_in(int argc, char** argv) {
  std::vector<fs::path> paths;
  constexpr std::string_view kArtifacts = "-artifact_prefix=";
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.starts_with(kArtifacts)) {
      fs::path prefix(arg.substr(kArtifacts.size()));
      fs::path dir = arg.ends_with('/') ? prefix : prefix.parent_path();
      paths.push_back(fs::absolute(dir.empty() ? fs::path(".") : dir));
    } else if (!arg.starts_with('-') && fs::exists(arg)) {
      paths.push_back(fs::canonical(arg));
    }
  }
  return paths;
}

// The sandbox's root is a tmpfs mounted over /tmp inside the private mount
// namespace, so the host sees no trace of it, not even an empty mount point.
Sandbox make_sandbox(int argc, char** argv) {
  if (::unshare(CLONE_NEWNS) != 0) {
    char pattern[] = "/tmp/kiln-fuzz-sandbox.XXXXXX";
    must(::mkdtemp(pattern) != nullptr, "mkdtemp");
    fs::path root = pattern;
    std::fprintf(stderr, "fuzz sandbox: no private mount namespace (%s); working in %s on the host\n",
                 std::strerror(errno), root.c_str());
    return {root / "work", root / "keep", false, {}};
  }
  must(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0, "make / private");
  // Read-only: a write through a symlink to /proc/sys or /dev fails
  // instead of reaching the host.
  std::vector<HeldPath> read_only, writable;
  for (const char* dir : {"/usr", "/proc", "/dev"}) read_only.push_back(hold(dir));
  for (const fs::path& path : paths_in(argc, argv)) writable.push_back(hold(path));
  const fs::path root = "/tmp";
  // nodev: a device node an archive creates cannot be opened.
  must(::mount("tmpfs", root.c_str(), "tmpfs", MS_NODEV | MS_NOSUID, "size=512m,mode=0755") == 0, "tmpfs");
  for (const HeldPath& path : read_only) bind_in(root, path, true);
  for (const char* link : {"bin", "sbin", "lib", "lib64"}) fs::create_symlink(fs::path("usr") / link, root / link);
  for (const HeldPath& path : writable) bind_in(root, path, false);
  fs::path cwd = fs::current_path();
  fs::create_directories(root / cwd.relative_path());
  fs::create_directories(root / "tmp");
  fs::create_directories(root / "fuzz-work");
  fs::create_directories(root / "fuzz-keep");
  must(::chroot(root.c_str()) == 0, "chroot");
  must(::chdir(cwd.c_str()) == 0, "chdir");
  for (const std::vector<HeldPath>* held : {&read_only, &writable})
    for (const HeldPath& path : *held) ::close(path.fd);
  return {"/fuzz-work", "/fuzz-keep", true, list_directory("/"), list_tree("/tmp")};
}

}  // namespace

void enter_sandbox(int argc, char** argv) {
  if (!g_sandbox) g_sandbox = make_sandbox(argc, argv);
}

fs::path fresh_work_directory() {
  if (!g_sandbox) broken("fuzz sandbox", "fresh_work_directory() before enter_sandbox()");
  std::error_code ignored;
  fs::remove_all(g_sandbox->work, ignored);
  fs::create_directories(g_sandbox->work);
  return g_sandbox->work;
}

fs::path keep_directory() {
  if (!g_sandbox) broken("fuzz sandbox", "keep_directory() before enter_sandbox()");
  fs::create_directories(g_sandbox->keep);
  return g_sandbox->keep;
}

void check_nothing_written_outside_work() {
  if (!g_sandbox || !g_sandbox->chrooted) return;
  if (std::vector<std::string> now = list_directory("/"); now != g_sandbox->top_level) {
    std::string names;
    for (const std::string& name : now) names += " /" + name;
    broken("something was created outside the work directory; / now holds:", names);
  }
  std::vector<std::string> tmp = list_tree("/tmp");
  for (const std::string& name : tmp)
    if (std::find(g_sandbox->tmp.begin(), g_sandbox->tmp.end(), name) == g_sandbox->tmp.end())
      broken("something was created outside the work directory, in /tmp:", name);
}

std::vector<std::string> list_tree(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code error;
  for (fs::recursive_directory_iterator it(dir, error), end; !error && it != end; it.increment(error))
    out.push_back(it->path().lexically_relative(dir).string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace kiln::fuzzing
