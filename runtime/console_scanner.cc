#include "runtime/console_scanner.h"

#include <cctype>
#include <optional>

#include "base/subprocess.h"

namespace kiln {
namespace {

// cryptsetup-initramfs's askpass prompt, as the guest prints it: "Please
// unlock disk cryptroot: " (no line end; it waits on that line).
constexpr std::string_view kUnlockPrompt = "Please unlock disk ";
// The kernel's own lines, as printk starts them (kernel/panic.c,
// kernel/reboot.c). The colon is part of the panic line: the kernel always
// says why.
constexpr std::string_view kPanic = "Kernel panic - not syncing: ";
constexpr std::string_view kPanicEnd = "---[ end Kernel panic - not syncing";
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

// A console line without the carriage returns a serial line puts around it.
std::string_view trimmed(std::string_view line) {
  while (!line.empty() && line.front() == '\r') line.remove_prefix(1);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  return line;
}

// The text after the time stamp printk puts at a line's start
// ("[    3.123456] "), or nothing when the line has none.
std::optional<std::string_view> after_time_stamp(std::string_view line) {
  if (!line.starts_with('[')) return std::nullopt;
  size_t at = 1;
  while (at < line.size() && line[at] == ' ') ++at;
  auto digits = [&] {
    size_t start = at;
    while (at < line.size() && std::isdigit(static_cast<unsigned char>(line[at]))) ++at;
    return at > start;
  };
  if (!digits() || at >= line.size() || line[at] != '.') return std::nullopt;
  ++at;
  if (!digits() || !line.substr(at).starts_with("] ")) return std::nullopt;
  return line.substr(at + 2);
}

// The kernel's words in a line that has the shape of one of its own: from
// the line's start, after the time stamp if there is one.
std::string_view kernel_text(std::string_view line) { return after_time_stamp(line).value_or(line); }

// Without the terminal's escape sequences (colours, cursor moves), which
// an error message would only show escaped.
std::string without_escapes(std::string_view line) {
  std::string out;
  for (size_t at = 0; at < line.size(); ++at) {
    if (line[at] != '\x1b') {
      out += line[at];
      continue;
    }
    if (at + 1 < line.size() && line[at + 1] == '[') {
      at += 2;
      while (at < line.size() && !(line[at] >= 0x40 && line[at] <= 0x7e)) ++at;
    }
  }
  return out;
}

}  // namespace

std::optional<ConsoleEvent> ConsoleScanner::event_in_line(std::string_view line) {
  if (auto ready = parse_ready_line(line)) return ConsoleEvent{ConsoleEvent::Kind::kReady, *ready, {}, {}};
  if (auto disk = unlock_prompt_in(line)) return ConsoleEvent{ConsoleEvent::Kind::kUnlockPrompt, {}, *disk, {}};
  line = trimmed(line);
  auto stamped = after_time_stamp(line);
  if (stamped) kernel_stamps_ = true;
  // A line that only says the words (a shell's echo, a log being read) is
  // not the kernel's: it lacks the stamp the kernel puts on every line.
  if (!stamped && kernel_stamps_) return std::nullopt;
  std::string_view text = stamped.value_or(line);
  if (text.starts_with(kPanic))
    return ConsoleEvent{ConsoleEvent::Kind::kKernelPanic, {}, {}, std::string(text.substr(kPanic.size()))};
  if (text.starts_with(kPanicEnd)) return ConsoleEvent{ConsoleEvent::Kind::kKernelPanicEnd, {}, {}, {}};
  if (text.starts_with(kRestart)) return ConsoleEvent{ConsoleEvent::Kind::kKernelRestart, {}, {}, {}};
  return std::nullopt;
}

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
    events.push_back({ConsoleEvent::Kind::kUnlockPrompt, {}, std::move(*disk), {}});
    pending_.clear();
  }
  if (pending_.size() > kLongestLine) pending_.clear();
  return events;
}

std::string last_kiln_line(std::string_view console) {
  std::string_view last;
  for (size_t at = 0; (at = console.find(kKilnLinePrefix, at)) != std::string_view::npos; at += kKilnLinePrefix.size())
    if (at == 0 || console[at - 1] == '\n') last = console.substr(at + kKilnLinePrefix.size());
  return std::string(trimmed(last.substr(0, last.find('\n'))));
}

bool has_kernel_panic(std::string_view console) {
  for (size_t at = 0; (at = console.find(kPanic, at)) != std::string_view::npos; at += kPanic.size()) {
    size_t start = console.rfind('\n', at);
    std::string_view line = trimmed(console.substr(start == std::string_view::npos ? 0 : start + 1));
    if (kernel_text(line).starts_with(kPanic)) return true;
  }
  return false;
}

std::string crash_excerpt(std::string_view console, size_t lines_before_panic) {
  std::vector<std::string> lines;
  std::optional<size_t> panic;
  while (!console.empty()) {
    size_t newline = console.find('\n');
    std::string line = without_escapes(trimmed(console.substr(0, newline)));
    console.remove_prefix(newline == std::string_view::npos ? console.size() : newline + 1);
    if (line.empty() || line.starts_with(kKilnLinePrefix)) continue;
    if (kernel_text(line).starts_with(kPanic)) panic = lines.size();
    lines.push_back(std::move(line));
  }
  std::string out;
  if (!panic) {
    for (const std::string& line : lines) out += line + "\n";
    return key_lines(out, 6);
  }
  size_t first = *panic > lines_before_panic ? *panic - lines_before_panic : 0;
  for (size_t i = first; i <= *panic; ++i) out += (out.empty() ? "" : "\n") + lines[i];
  return out;
}

}  // namespace kiln
