#include "runtime/console_relay.h"

#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "base/files.h"
#include "base/interrupt.h"

namespace kiln {

void relay_console(int console, const std::string& name, bool interactive) {
  bool tty = interactive && ::isatty(STDIN_FILENO);
  termios saved{};
  if (tty) {
    ::tcgetattr(STDIN_FILENO, &saved);
    termios raw = saved;
    ::cfmakeraw(&raw);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    fmt::print(stderr, "Connected to {} (Ctrl-] to detach)\r\n", name);
  }
  bool stdin_open = interactive;
  while (true) {
    pollfd fds[2] = {{console, POLLIN, 0}, {STDIN_FILENO, static_cast<short>(stdin_open ? POLLIN : 0), 0}};
    if (::poll(fds, 2, 200) < 0 && errno != EINTR) break;
    if (interrupted()) break;
    if (fds[0].revents) {
      char buffer[4096];
      ssize_t n = ::read(console, buffer, sizeof buffer);
      if (n <= 0) break;
      (void)write_all(STDOUT_FILENO, buffer, static_cast<size_t>(n), "stdout");
    }
    if (fds[1].revents) {
      char buffer[4096];
      ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
      if (n <= 0) {
        stdin_open = false;
        continue;
      }
      auto detach = std::find(buffer, buffer + n, '\x1d');
      (void)write_all(console, buffer, static_cast<size_t>(detach - buffer), "console");
      if (detach != buffer + n) break;
    }
  }
  if (tty) {
    ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    fmt::print(stderr, "\nDetached from {}\n", name);
  }
}

}  // namespace kiln
