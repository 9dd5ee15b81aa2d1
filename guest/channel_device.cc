// Finding and opening the exec channel (see channel_device.h).
#include "guest/channel_device.h"

#include <fcntl.h>
#include <termios.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "formats/image/guest_protocol.h"

namespace kiln::agent {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kVirtioPrefix = "virtio:";
constexpr auto kAppearTimeout = std::chrono::seconds(30);
constexpr auto kAppearPoll = std::chrono::milliseconds(100);

// The device node of the virtio-serial port named `name`, or "" while the
// kernel has not made it. The node is looked up in sysfs rather than at
// udev's /dev/virtio-ports/NAME: the agent starts early, before udev may
// have made that link, while devtmpfs makes /dev/vportNpM at once.
std::string virtio_port(std::string_view name) {
  std::error_code ec;
  for (const auto& port : fs::directory_iterator("/sys/class/virtio-ports", ec)) {
    std::ifstream in(port.path() / "name");
    std::string port_name;
    std::getline(in, port_name);
    if (port_name == name) return (fs::path("/dev") / port.path().filename()).string();
  }
  return "";
}

// UML's serial line is a terminal: without raw mode it would echo, turn
// \n into \r\n and treat ^C, ^S, ^Q and ^D as commands.
void make_raw(int fd) {
  termios mode{};
  if (::tcgetattr(fd, &mode) != 0) return;
  ::cfmakeraw(&mode);
  mode.c_iflag &= ~(IXOFF | IXANY);  // cfmakeraw leaves these: the line would insert ^S/^Q itself
  mode.c_cflag |= CLOCAL;
  ::tcsetattr(fd, TCSANOW, &mode);
  // What reached the line before it was raw was rewritten on the way in.
  ::tcflush(fd, TCIFLUSH);
}

}  // namespace

std::optional<std::string> channel_from_cmdline(std::string_view cmdline) {
  size_t at = 0;
  while (at < cmdline.size()) {
    size_t end = cmdline.find_first_of(" \t\n", at);
    if (end == std::string_view::npos) end = cmdline.size();
    std::string_view word = cmdline.substr(at, end - at);
    if (word.starts_with(kAgentArgument)) return std::string(word.substr(kAgentArgument.size()));
    at = end + 1;
  }
  return std::nullopt;
}

std::expected<Fd, std::string> open_channel(std::string_view where) {
  bool virtio = where.starts_with(kVirtioPrefix);
  std::string_view port_name = where.substr(virtio ? kVirtioPrefix.size() : 0);
  auto deadline = std::chrono::steady_clock::now() + kAppearTimeout;
  std::string why = "it did not appear";
  while (std::chrono::steady_clock::now() < deadline) {
    std::string path = virtio ? virtio_port(port_name) : std::string(where);
    if (!path.empty()) {
      int fd = ::open(path.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
      if (fd >= 0) {
        prepare_channel(fd);
        return Fd(fd);
      }
      why = path + ": " + std::strerror(errno);
    }
    std::this_thread::sleep_for(kAppearPoll);
  }
  return std::unexpected("cannot open the channel " + std::string(where) + " within 30 s: " + why);
}

void prepare_channel(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (::isatty(fd)) make_raw(fd);
}

}  // namespace kiln::agent
