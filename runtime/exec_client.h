// ExecClient: `kiln exec`'s side of the exec channel. It connects to the
// instance's exec.sock (served by the supervisor's AgentRelay), waits for
// the guest agent's greeting, starts one command and streams its input and
// output until the command's exit report. `kiln cp` and `kiln run` use it
// too: a copy is a command (cat, tar) whose input or output is the data.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "base/error.h"
#include "formats/image/guest_protocol.h"

namespace kiln {

struct ExecIo {
  int stdin_fd = -1;  // read to its end and forwarded; -1: the command gets no input
  std::function<Result<>(std::string_view)> out;  // the command's stdout (and stderr, on a pty)
  std::function<Result<>(std::string_view)> err;
  // Readable when the terminal's size changed (a signalfd for SIGWINCH);
  // window_size() then gives it as rows and columns.
  int resize_fd = -1;
  std::function<std::pair<uint16_t, uint16_t>()> window_size;
};

// Runs `request` on the instance whose exec socket is `socket`. Waits up to
// `greeting_timeout` for the agent to answer. The result is how the command
// ended; an error means it could not be run or was cut off (the guest
// stopped, the channel broke).
Result<ExecExit> run_in_guest(const std::filesystem::path& socket, const std::string& instance,
                              const ExecRequest& request, const ExecIo& io,
                              std::chrono::milliseconds greeting_timeout);

}  // namespace kiln
