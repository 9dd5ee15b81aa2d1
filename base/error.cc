#include "base/error.h"

#include <cstring>

namespace kiln {

std::string Location::to_string() const {
  if (line <= 0) return file;
  if (column <= 0) return fmt::format("{}:{}", file, line);
  return fmt::format("{}:{}:{}", file, line, column);
}

std::string Error::to_string() const {
  std::string out = where.empty() ? message : where.to_string() + ": " + message;
  if (!detail.empty()) {
    std::string_view rest = detail;
    while (!rest.empty()) {
      auto newline = rest.find('\n');
      out += "\n  ";
      out += rest.substr(0, newline);
      if (newline == std::string_view::npos) break;
      rest.remove_prefix(newline + 1);
    }
  }
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
  return fail(kind, "{}: {}: {}", path, what, std::strerror(err));
}

}  // namespace kiln
