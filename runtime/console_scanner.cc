#include "runtime/console_scanner.h"

#include <optional>

namespace kiln {
namespace {

// cryptsetup-initramfs's askpass prompt, as the guest prints it: "Please
// unlock disk cryptroot: " (no line end; it waits on that line).
constexpr std::string_view kUnlockPrompt = "Please unlock disk ";
constexpr std::string_view kPanic = "Kernel panic - not syncing";
constexpr std::string_view kRestart = "reboot: Restarting system";

// The disk a prompt in the line names, once its colon has come.
std::optional<std::string> unlock_prompt_in(std::string_view line) {
  auto prompt = line.find(kUnlockPrompt);
  if (prompt == std::string_view::npos) return std::nullopt;
  std::string_view rest = line.substr(prompt + kUnlockPrompt.size());
  auto colon = rest.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  return std::string(rest.substr(0, colon));
}

// A whole line. It may hold a prompt not yet heard: one whose line end came
// in the same read.
std::optional<ConsoleEvent> event_in_line(std::string_view line) {
  if (auto ready = parse_ready_line(line)) return ConsoleEvent{ConsoleEvent::Kind::kReady, *ready, {}};
  if (auto disk = unlock_prompt_in(line)) return ConsoleEvent{ConsoleEvent::Kind::kUnlockPrompt, {}, *disk};
  if (line.find(kPanic) != std::string_view::npos) return ConsoleEvent{ConsoleEvent::Kind::kKernelPanic, {}, {}};
  if (line.find(kRestart) != std::string_view::npos) return ConsoleEvent{ConsoleEvent::Kind::kKernelRestart, {}, {}};
  return std::nullopt;
}

}  // namespace

std::vector<ConsoleEvent> ConsoleScanner::feed(std::string_view data) {
  std::vector<ConsoleEvent> events;
  pending_.append(data);
  size_t start = 0;
  for (size_t newline; (newline = pending_.find('\n', start)) != std::string::npos; start = newline + 1)
    if (auto event = event_in_line(std::string_view(pending_).substr(start, newline - start)))
      events.push_back(std::move(*event));
  pending_.erase(0, start);
  // A prompt is heard before its line ends, and then not again: the line
  // is dropped.
  if (auto disk = unlock_prompt_in(pending_)) {
    events.push_back({ConsoleEvent::Kind::kUnlockPrompt, {}, std::move(*disk)});
    pending_.clear();
  }
  if (pending_.size() > kLongestLine) pending_.clear();
  return events;
}

}  // namespace kiln
