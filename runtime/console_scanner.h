// ConsoleScanner: what kiln reads in a guest's console output, as events.
// The supervisor feeds it the bytes as the hypervisor writes them, in
// whatever pieces they come; tests feed it canned console text. It finds
// the guest agent's readiness report, the initramfs asking for a disk's
// passphrase (a prompt that ends no line: the guest waits on it), and the
// kernel's own lines when it panics or restarts: all UML says of either,
// and all a qemu guest says of a panic that comes before its pvpanic
// driver is loaded (init failing, no root filesystem).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/image/guest_protocol.h"

namespace kiln {

struct ConsoleEvent {
  enum class Kind { kReady, kUnlockPrompt, kKernelPanic, kKernelPanicEnd, kKernelRestart };
  Kind kind;
  ReadyLine ready;   // kReady: the report
  std::string disk;  // kUnlockPrompt: the disk the prompt names ("cryptroot")
  // kKernelPanic: why, as the kernel put it after "not syncing: "
  // ("Attempted to kill init! exitcode=0x00000100").
  std::string panic;
  bool operator==(const ConsoleEvent&) const = default;
};

class ConsoleScanner {
 public:
  // The events in `data`, the console's next bytes, in the order the guest
  // wrote them.
  std::vector<ConsoleEvent> feed(std::string_view data);

 private:
  // The event a whole line makes, if any. It may hold a prompt not yet
  // heard: one whose line end came in the same read.
  std::optional<ConsoleEvent> event_in_line(std::string_view line);

  // The line not yet ended. A line longer than kLongestLine is dropped:
  // nothing kiln looks for is that long, and a guest writing without line
  // ends must not grow the supervisor.
  static constexpr size_t kLongestLine = 4096;
  std::string pending_;
  // The kernel has stamped a line with its time: from then on a kernel line
  // without a stamp is someone else's text.
  bool kernel_stamps_ = false;
};

// Kiln's own lines in a console log (the supervisor's: what it did and
// why the instance stopped) start so.
inline constexpr std::string_view kKilnLinePrefix = "[kiln] ";

// What kiln said last in a console log, without the prefix: why the
// instance stopped, once it has.
std::string last_kiln_line(std::string_view console);

// Whether the kernel's panic line is in a console log.
bool has_kernel_panic(std::string_view console);

// The console's lines that tell what went wrong, for an error message: the
// kernel's last panic line and the few lines before it, or, without a
// panic, its key lines (see key_lines). Kiln's own "[kiln]" lines are left
// out, as the error says what they say; lines end without '\r'.
std::string crash_excerpt(std::string_view console, size_t lines_before_panic = 5);

}  // namespace kiln
