#include "builder/foreign_emulation.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

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

}  // namespace

BinfmtHost BinfmtHost::real() {
  BinfmtHost host;
  host.mount = [path = host.binfmt_misc] {
    return ::mount("binfmt_misc", path.c_str(), "binfmt_misc", 0, nullptr) == 0;
  };
  return host;
}

Result<> ensure_foreign_emulation(const Architecture& arch, const BinfmtHost& host, Reporter& reporter) {
  if (arch.binfmt.empty() || arch.dpkg == host_architecture()) return {};
  const fs::path entry = host.binfmt_misc / arch.binfmt;
  if (registered(entry)) return {};
  const fs::path definition = host.definitions / (std::string(arch.binfmt) + ".conf");
  auto text = read_file(definition);
  if (!text)
    return fail(ErrorKind::kMissingTool,
                "{} images run their programs through qemu-user emulation, and {} is missing: install "
                "the Debian package 'qemu-user-static' (scripts/install-deps.sh does)",
                arch.dpkg, definition.string());
  std::string line = registration_line(*text);
  if (line.empty()) return fail(ErrorKind::kBadInput, "{}: no binfmt_misc registration in it", definition.string());
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
