// ConsoleScanner: what kiln reads in a guest's console output, as events.
// The supervisor feeds it the bytes as the hypervisor writes them, in
// whatever pieces they come; tests feed it canned console text. It finds
// the guest agent's readiness report, the initramfs asking for a disk's
// passphrase (a prompt that ends no line: the guest waits on it), and the
// words of a kernel that panics or restarts, which are all UML says of
// either (qemu reports them over QMP).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "formats/image/guest_protocol.h"

namespace kiln {

struct ConsoleEvent {
  enum class Kind { kReady, kUnlockPrompt, kKernelPanic, kKernelRestart };
  Kind kind;
  ReadyLine ready;   // kReady: the report
  std::string disk;  // kUnlockPrompt: the disk the prompt names ("cryptroot")
  bool operator==(const ConsoleEvent&) const = default;
};

class ConsoleScanner {
 public:
  // The events in `data`, the console's next bytes, in the order the guest
  // wrote them.
  std::vector<ConsoleEvent> feed(std::string_view data);

 private:
  // The line not yet ended. A line longer than kLongestLine is dropped:
  // nothing kiln looks for is that long, and a guest writing without line
  // ends must not grow the supervisor.
  static constexpr size_t kLongestLine = 4096;
  std::string pending_;
};

}  // namespace kiln
