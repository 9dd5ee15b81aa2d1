#include "formats/image/guest_protocol.h"

#include <fmt/format.h>

namespace kiln {
namespace {

// The report's fields after the id, by the name each has on the line.
struct ReadyField {
  std::string_view name;
  std::string ReadyLine::*value;
};

constexpr ReadyField kReadyFields[] = {
    {"hostname", &ReadyLine::hostname},
    {"machine-id", &ReadyLine::machine_id},
    {"mac", &ReadyLine::mac},
    {"ssh-host-keys", &ReadyLine::ssh_host_keys},
    {"exec", &ReadyLine::exec},
};

// Words end at a space, and at a carriage return: a console's line ending
// is "\r\n".
constexpr std::string_view kWordEnds = " \r";

std::string_view next_word(std::string_view& rest) {
  size_t end = rest.find_first_of(kWordEnds);
  std::string_view word = rest.substr(0, end);
  rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
  return word;
}

// The report that starts at the keyword at `rest`'s beginning.
std::optional<ReadyLine> parse_from_keyword(std::string_view rest) {
  rest.remove_prefix(kReadyKeyword.size());
  if (!rest.starts_with(' ')) return std::nullopt;
  rest.remove_prefix(1);
  ReadyLine ready;
  ready.id = next_word(rest);
  if (ready.id.empty() || ready.id.find('=') != std::string::npos) return std::nullopt;
  while (!rest.empty()) {
    std::string_view word = next_word(rest);
    size_t equals = word.find('=');
    if (equals == std::string_view::npos) continue;
    for (const ReadyField& field : kReadyFields)
      if (word.substr(0, equals) == field.name) ready.*field.value = word.substr(equals + 1);
  }
  return ready;
}

}  // namespace

std::string format_ready_line(const ReadyLine& ready) {
  std::string line = fmt::format("{} {}", kReadyKeyword, ready.id);
  for (const ReadyField& field : kReadyFields) line += fmt::format(" {}={}", field.name, ready.*field.value);
  return line;
}

std::optional<ReadyLine> parse_ready_line(std::string_view line) {
  for (size_t at = line.find(kReadyKeyword); at != std::string_view::npos; at = line.find(kReadyKeyword, at + 1))
    if (auto ready = parse_from_keyword(line.substr(at))) return ready;
  return std::nullopt;
}

}  // namespace kiln
