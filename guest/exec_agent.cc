// kiln-exec-agent: kiln's exec agent, a static binary baked into the image
// and started early in boot as root. It runs `kiln exec` commands for the
// host over one byte stream, the exec channel (a virtio-serial port under
// qemu, a serial line under UML), speaking the frames of
// formats/image/guest_protocol.h; guest/agent.h has its loop.
//
//   kiln-exec-agent [--channel PATH | --fd N]
//
// --channel PATH opens PATH, or with "virtio:NAME" the virtio-serial port of
// that name; --fd N uses a descriptor already open (tests pass a socket).
// With neither, the kernel command line's kiln.agent=PATH names it (or,
// booted through firmware, an SMBIOS OEM string of the same words), and a
// boot with neither (one kiln did not start) ends the agent at once.
//
// It is linked statically, against the standard library, POSIX and
// nlohmann/json only: the guest's glibc may be older than the host's.
#include <fcntl.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

#include "guest/agent.h"
#include "guest/channel_device.h"

namespace {

using kiln::agent::Fd;

constexpr int kUsageError = 2;

[[noreturn]] void fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "kiln-exec-agent: %s\n", message.c_str());
  std::exit(code);
}

// Descriptors 0 to 2 open (on /dev/null if need be), so that no pipe made
// for a command gets one of those numbers and is lost when the command's
// own streams are put there.
void keep_standard_descriptors() {
  for (int fd = 0; fd < 3; ++fd)
    if (::fcntl(fd, F_GETFD) < 0 && ::open("/dev/null", O_RDWR) < 0) fail("cannot open /dev/null");
}

std::optional<int> descriptor(std::string_view text) {
  try {
    size_t used = 0;
    int fd = std::stoi(std::string(text), &used);
    if (used == text.size() && fd >= 0 && ::fcntl(fd, F_GETFD) >= 0) return fd;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

// The channel the arguments or the kernel command line name; nothing when
// this boot has none.
std::optional<Fd> channel(int argc, char** argv) {
  const char* usage = "usage: kiln-exec-agent [--channel PATH | --fd N]";
  if (argc == 3 && std::string_view(argv[1]) == "--fd") {
    std::optional<int> fd = descriptor(argv[2]);
    if (!fd) fail(std::string("--fd ") + argv[2] + ": not an open descriptor", kUsageError);
    kiln::agent::prepare_channel(*fd);
    return Fd(*fd);
  }
  std::optional<std::string> where;
  if (argc == 3 && std::string_view(argv[1]) == "--channel") {
    where = argv[2];
  } else if (argc == 1) {
    std::ifstream in("/proc/cmdline");
    where = kiln::agent::channel_from_cmdline(std::string(std::istreambuf_iterator<char>(in), {}));
    if (!where) {
      std::ifstream dmi(std::string(kiln::kDmiTablePath), std::ios::binary);
      where = kiln::agent_channel_from_dmi(std::string(std::istreambuf_iterator<char>(dmi), {}));
    }
    if (!where) return std::nullopt;
  } else {
    fail(usage, kUsageError);
  }
  auto opened = kiln::agent::open_channel(*where);
  if (!opened) fail(opened.error());
  return std::move(*opened);
}

}  // namespace

int main(int argc, char** argv) {
  // A command or a host that goes away must not end the agent.
  ::signal(SIGPIPE, SIG_IGN);
  keep_standard_descriptors();
  std::optional<Fd> fd = channel(argc, argv);
  if (!fd) return 0;
  return kiln::agent::Agent(std::move(*fd)).run();
}
