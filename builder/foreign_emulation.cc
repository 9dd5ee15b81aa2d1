#include "builder/foreign_emulation.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>

#include "base/files.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

bool registered(const fs::path& entry) {
  auto text = read_file(entry);
  return text && text->starts_with("enabled");
}

// The registration line of a binfmt.d file: its first line that is neither
// blank nor a comment.
std::string registration_line(std::string_view text) {
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    if (!line.empty() && line.front() != '#' && line.front() != ';') return std::string(line);
  }
  return {};
}

Result<> write_registration(const fs::path& register_file, const std::string& line) {
  int fd = ::open(register_file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fail_errno("cannot open", register_file.string(), errno);
  ssize_t written = ::write(fd, line.data(), line.size());
  int saved = errno;
  ::close(fd);
  if (written != static_cast<ssize_t>(line.size())) return fail_errno("cannot register with", register_file.string(), saved);
  return {};
}

// The interpreter a registration line names (its sixth field).
std::string interpreter_of(std::string_view line) {
  for (int field = 0; field < 6; ++field) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return {};
    line.remove_prefix(colon + 1);
  }
  return std::string(line.substr(0, line.find(':')));
}

// The smallest i386 program: an ELF header, one loadable segment, and
// exit(0) through int 0x80.
constexpr std::array<unsigned char, 93> kI386ExitZero = {
    0x7f, 'E', 'L', 'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 32-bit, little-endian
    2, 0, 3, 0, 1, 0, 0, 0,                                   // executable, i386, version 1
    0x54, 0x80, 0x04, 0x08,                                   // entry: 0x08048054, the code below
    52, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                      // program headers at 52, no sections
    52, 0, 32, 0, 1, 0, 0, 0, 0, 0, 0, 0,                     // header sizes, one program header
    1, 0, 0, 0, 0, 0, 0, 0,                                   // PT_LOAD from offset 0
    0x00, 0x80, 0x04, 0x08, 0x00, 0x80, 0x04, 0x08,           // at 0x08048000
    93, 0, 0, 0, 93, 0, 0, 0, 5, 0, 0, 0, 0, 0x10, 0, 0,      // 93 bytes, read and execute
    0xb8, 1, 0, 0, 0,                                         // mov eax, 1 (exit)
    0x31, 0xdb,                                               // xor ebx, ebx
    0xcd, 0x80,                                               // int 0x80
};

}  // namespace

bool kernel_runs_i386() {
  // Not close-on-exec: binfmt_misc refuses a program whose path the
  // interpreter could not open once the exec closed it.
  int fd = ::memfd_create("kiln-i386-probe", 0);
  if (fd < 0) return false;
  bool written = ::write(fd, kI386ExitZero.data(), kI386ExitZero.size()) == static_cast<ssize_t>(kI386ExitZero.size());
  pid_t child = written ? ::fork() : -1;
  if (child == 0) {
    char* const argv[] = {const_cast<char*>("kiln-i386-probe"), nullptr};
    char* const envp[] = {nullptr};
    ::fexecve(fd, argv, envp);
    ::_exit(127);
  }
  ::close(fd);
  if (child < 0) return false;
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

BinfmtHost BinfmtHost::real() {
  BinfmtHost host;
  host.mount = [path = host.binfmt_misc] {
    return ::mount("binfmt_misc", path.c_str(), "binfmt_misc", 0, nullptr) == 0;
  };
  host.runs_natively = [](const Architecture& arch) { return arch.dpkg == "i386" && kernel_runs_i386(); };
  return host;
}

Result<> ensure_foreign_emulation(const Architecture& arch, const BinfmtHost& host, Reporter& reporter) {
  if (arch.binfmt.empty() || arch.dpkg == host_architecture()) return {};
  if (arch.native_on == host_architecture() && host.runs_natively && host.runs_natively(arch)) return {};
  const fs::path entry = host.binfmt_misc / arch.binfmt;
  if (registered(entry)) return {};
  const fs::path definition = host.definitions / (std::string(arch.binfmt) + ".conf");
  auto text = read_file(definition);
  std::string line;
  if (text) {
    line = registration_line(*text);
    if (line.empty()) return fail(ErrorKind::kBadInput, "{}: no binfmt_misc registration in it", definition.string());
  } else if (!arch.binfmt_line.empty()) {
    line = arch.binfmt_line;
    // Registered with qemu's "F" flag, the kernel opens it at once.
    const fs::path interpreter = host.interpreters / fs::path(interpreter_of(line)).relative_path();
    if (!fs::exists(interpreter))
      return fail(ErrorKind::kMissingTool,
                  "this host's kernel does not run {} programs itself, and {} is missing to emulate them: install "
                  "the Debian package 'qemu-user-static' (scripts/install-deps.sh does)",
                  arch.dpkg, interpreter.string());
  } else {
    return fail(ErrorKind::kMissingTool,
                "{} images run their programs through qemu-user emulation, and {} is missing: install "
                "the Debian package 'qemu-user-static' (scripts/install-deps.sh does)",
                arch.dpkg, definition.string());
  }
  std::error_code ec;
  const fs::path register_file = host.binfmt_misc / "register";
  if (!fs::exists(register_file, ec) && !(host.mount && host.mount()))
    return fail(ErrorKind::kMissingTool,
                "{} images need the kernel's binfmt_misc, which is not mounted at {} and could not be "
                "mounted here (as root: mount -t binfmt_misc binfmt_misc {})",
                arch.dpkg, host.binfmt_misc.string(), host.binfmt_misc.string());
  // Another bake may have registered it since the first look.
  if (registered(entry)) return {};
  auto done = write_registration(register_file, line);
  if (!done && !registered(entry)) return std::unexpected(std::move(done).error().with_context(
                                         fmt::format("registering {}'s qemu-user emulation", arch.dpkg)));
  reporter.note(fmt::format("registered {} with binfmt_misc, from {}", arch.binfmt, definition.string()));
  return {};
}

}  // namespace kiln
