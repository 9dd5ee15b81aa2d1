// Subprocess: the one way kiln runs external programs. Always an argv, never a
// shell string; with a timeout; interruptible by Ctrl-C; and a failure carries
// the program's own key lines so the user sees why, not just "exit 1".
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <sys/types.h>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln {

struct Command {
  std::vector<std::string> argv;
  // "NAME=VALUE" entries added to (or replacing in) the inherited environment.
  std::vector<std::string> env;
  // Start from an empty environment instead (programs run inside an image).
  bool clear_env = false;
  std::string cwd;
  std::chrono::milliseconds timeout{0};  // zero: no limit
  // Descriptors for the child's stdin and stdout; -1 means /dev/null for stdin
  // and "capture" for stdout.
  int stdin_fd = -1;
  int stdout_fd = -1;
  // Text fed to stdin instead of stdin_fd (small inputs only).
  std::optional<std::string> stdin_text;
  // Called with each complete stderr line as it arrives (progress parsing).
  std::function<void(std::string_view)> on_stderr_line;
  // Called with each complete line of captured stdout; returning false
  // stops the program there (Completed::stopped_early), e.g. once it has
  // printed what the caller waited for.
  std::function<bool(std::string_view)> on_stdout_line;
  // Runs in the child between fork and exec (namespaces, chroot); it must only
  // make async-signal-safe calls and returns false to abort the exec.
  std::function<bool()> in_child;
  // Look argv[0] up on the child's PATH after in_child ran (a chroot), not
  // on the host's.
  bool resolve_in_child = false;
  // Exit codes that count as success besides 0.
  std::vector<int> ok_exit_codes;
};

struct Completed {
  int exit_code = 0;
  bool stopped_early = false;  // on_stdout_line asked to stop
  std::string out;  // captured stdout (empty when stdout_fd was given)
  std::string err;  // captured stderr
};

// Runs the command to completion. A non-zero exit, a signal, a timeout or an
// interrupt is an error; its detail holds the program's key stderr lines.
Result<Completed> run(const Command& command);

// A program left running, its stdin and merged stdout+stderr on pipes: a
// hypervisor whose console the caller relays. It runs in its own process
// group; the caller waits for it. Of the command, spawn uses argv, env,
// clear_env, cwd and in_child.
struct Spawned {
  pid_t pid = -1;
  int in = -1;   // the child's stdin (write end), owned by the caller
  int out = -1;  // the child's stdout and stderr (read end), owned by the caller
};
Result<Spawned> spawn(const Command& command);

// Shorthand for run({argv}).
Result<Completed> run(std::vector<std::string> argv);

// The seam between what kiln decides to run and running it, as ninja's
// CommandRunner is: code that runs programs to do its work takes a
// CommandRunner&, system_runner() in kiln, a fake in tests that records
// each Command and answers it, so that the argv, the environment and what
// is made of a failure are tested without root, a mirror or the tools.
class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  virtual Result<Completed> run(const Command& command) = 0;
};

// Runs commands for real, with run() above.
CommandRunner& system_runner();

// The lines of a program's output worth showing in an error: lines that say
// "E:", "error" or "fatal", then the last few lines, without repeats.
std::string key_lines(std::string_view output, size_t max_lines = 12);

// `word` quoted for a POSIX shell, for the places where a program takes a
// command line rather than an argv (a command ssh sends, an mmdebstrap hook).
std::string shell_quoted(const std::string& word);

// The running executable (/proc/self/exe), for what lives beside it and for
// tools that call kiln back.
Result<std::string> this_program();

// Finds a program on PATH (and the sbin directories). A missing program is an
// ErrorKind::kMissingTool error naming the Debian package that provides it.
Result<std::string> find_program(std::string_view name);

// Who program `name` is, without running it: its path, inode, size and
// modification time, which change whenever it is replaced (an upgrade).
// For caches keyed by a program's version, where running `--version` on
// every use would cost tens of milliseconds.
Result<std::string> program_identity(std::string_view name);

// The Debian package that ships a program kiln uses, or "" if unknown.
std::string_view debian_package_for(std::string_view program);

}  // namespace kiln
