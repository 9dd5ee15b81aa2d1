#include "base/error.h"

#include <cstring>
#include <fstream>

namespace kiln {

std::string Location::to_string() const {
  if (line <= 0) return file;
  if (column <= 0) return fmt::format("{}:{}", file, line);
  return fmt::format("{}:{}:{}", file, line, column);
}

namespace {

// A line of a message longer than this is cut: no message needs more, and
// one that has it echoes some input whole.
constexpr size_t kMaxLine = 2000;

void append_escaped(std::string& out, std::string_view text) {
  for (unsigned char c : text) {
    if (c == '\t') out += '\t';
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
}

std::string safe_line(std::string_view line) {
  std::string out;
  append_escaped(out, line.substr(0, kMaxLine));
  if (line.size() > kMaxLine) out += fmt::format("... ({} more bytes)", line.size() - kMaxLine);
  return out;
}

// Each line made safe, joined by `separator`.
std::string safe_lines(std::string_view text, std::string_view separator) {
  std::string out;
  while (true) {
    auto newline = text.find('\n');
    out += safe_line(text.substr(0, newline));
    if (newline == std::string_view::npos) break;
    out += separator;
    text.remove_prefix(newline + 1);
  }
  return out;
}

}  // namespace

std::string shown_value(std::string_view value, size_t max) {
  std::string out = "\"";
  std::string_view head = value.substr(0, max);
  for (unsigned char c : head) {
    if (c == '"' || c == '\\') out += fmt::format("\\{}", static_cast<char>(c));
    else if (c == '\n') out += "\\n";
    else append_escaped(out, std::string_view(reinterpret_cast<const char*>(&c), 1));
  }
  out += '"';
  if (value.size() > max) out += fmt::format(" (cut; {} bytes in all)", value.size());
  return out;
}

namespace {

// How much of a long source line the excerpt shows around the column.
constexpr size_t kExcerptWidth = 100;

// "   7 | size = \"2Q\"\n     |        ^": the line `where` points at, read
// back from its file; "" when the file or line cannot be read.
std::string source_excerpt(const Location& where) {
  if (where.line <= 0 || where.file.empty()) return {};
  std::ifstream in(where.file);
  std::string line;
  for (int n = 0; n < where.line; ++n)
    if (!std::getline(in, line)) return {};
  size_t column = where.column > 0 ? static_cast<size_t>(where.column - 1) : 0;
  size_t start = column > kExcerptWidth / 2 ? column - kExcerptWidth / 2 : 0;
  std::string_view shown = std::string_view(line).substr(std::min(start, line.size()), kExcerptWidth);
  std::string number = std::to_string(where.line);
  std::string out = fmt::format("\n {} | {}{}", number, start > 0 ? "..." : "", safe_line(shown));
  if (where.column <= 0) return out;
  std::string pad(start > 0 ? 3 : 0, ' ');
  // Tabs stay tabs under the line, so the caret lines up however they show.
  for (size_t i = start; i < column && i < line.size(); ++i) pad += line[i] == '\t' ? '\t' : ' ';
  return out + fmt::format("\n {} | {}^", std::string(number.size(), ' '), pad);
}

}  // namespace

std::string Error::display() const {
  std::string out = safe_lines(where.empty() ? message : where.to_string() + ": " + message, "\n");
  out += source_excerpt(where);
  if (!detail.empty()) out += "\n  " + safe_lines(detail, "\n  ");
  return out;
}

std::string Error::to_string() const {
  std::string out = safe_lines(where.empty() ? message : where.to_string() + ": " + message, "\n");
  if (!detail.empty()) out += "\n  " + safe_lines(detail, "\n  ");
  return out;
}

Error&& Error::with_context(std::string_view context) && {
  message = fmt::format("{}: {}", context, message);
  return std::move(*this);
}

std::unexpected<Error> fail_errno(std::string_view what, std::string_view path,
                                  int err) {
  ErrorKind kind = (err == ENOSPC || err == EDQUOT) ? ErrorKind::kNoSpace
                   : err == EINTR                   ? ErrorKind::kInterrupted
                                                    : ErrorKind::kFailed;
  auto error = fail(kind, "{}: {}: {}", path, what, std::strerror(err));
  error.error().host_disk_full = kind == ErrorKind::kNoSpace;
  return error;
}

}  // namespace kiln
