// CommandStart: starting one exec session's command the way a login would,
// as the requested user, in a session and process group of its own, on
// pipes or on a pseudo-terminal.
#pragma once

#include <sys/types.h>

#include <expected>
#include <string>

#include "formats/image/guest_protocol.h"
#include "guest/fd.h"

namespace kiln::agent {

// A running command and the agent's ends of its standard streams, all
// non-blocking. On a pty, `input` and `output` are both the master (two
// descriptors, so that ending the input leaves the output open) and there
// is no `errors`.
struct StartedCommand {
  pid_t pid = -1;  // also its process group's id: the command leads its own session
  Fd input;
  Fd output;
  Fd errors;
};

// Starts the command, or says why it cannot (an unknown user, a missing
// working directory, no pty). That exec fails is not such a reason: the
// command then writes why on its stderr and exits 127 or 126, as a shell's
// would.
std::expected<StartedCommand, std::string> start_command(const ExecRequest& request);

// Sends `signal` to the command's process group; also to the process
// itself, should it not have made its group yet.
void signal_command(pid_t pid, int signal);

}  // namespace kiln::agent
