// Error: what failed, on which input, and where. Every library call in kiln
// returns Result<T>; the CLI turns an Error into "kiln: error: ..." and an exit
// code taken from its kind, so the kind is the contract with scripts.
#pragma once

#include <expected>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace kiln {

// The exit codes documented in `kiln --help`. Keep the two in step.
enum class ErrorKind {
  kFailed = 1,       // an operation or an external tool failed
  kBadInput = 2,     // bad usage, recipe, config or file contents
  kMissingTool = 3,  // a program, package or kernel feature is missing here
  kNoSpace = 4,      // the content does not fit, or the host disk is full
  kUntrusted = 5,    // a signature or checksum did not verify
  kInterrupted = 130,
};

// A position inside a text input; line and column count from 1, 0 = unknown.
struct Location {
  std::string file;
  int line = 0;
  int column = 0;

  bool empty() const { return file.empty(); }
  std::string to_string() const;
};

struct Error {
  ErrorKind kind = ErrorKind::kFailed;
  std::string message;
  Location where;
  // Key lines from an external tool's output, shown under the message.
  std::string detail;
  // A kNoSpace error from the host's own disk (a write to a host file),
  // not from a filesystem kiln is filling: the remedies differ.
  bool host_disk_full = false;

  // "FILE:LINE:COL: message" (or "FILE: message"), then the indented detail.
  // Control characters are escaped and very long lines cut, whatever the
  // message was built from.
  std::string to_string() const;
  // to_string() with, for an error at a line of a file, that line of the
  // file and a caret under the column, as compilers show it: for people.
  std::string display() const;
  int exit_code() const { return static_cast<int>(kind); }

  // Prefixes context ("baking web1: ...") while keeping kind and location.
  Error&& with_context(std::string_view context) &&;
};

template <class T = void>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(ErrorKind kind, std::string message) {
  return std::unexpected(Error{kind, std::move(message), {}, {}});
}

template <class... Args>
std::unexpected<Error> fail(ErrorKind kind, fmt::format_string<Args...> format,
                            Args&&... args) {
  return fail(kind, fmt::format(format, std::forward<Args>(args)...));
}

template <class... Args>
std::unexpected<Error> fail_at(Location where, fmt::format_string<Args...> format,
                               Args&&... args) {
  return std::unexpected(Error{ErrorKind::kBadInput,
                               fmt::format(format, std::forward<Args>(args)...),
                               std::move(where), {}});
}

// An outside value (a recipe string, an archive entry's name) as a message
// shows it: in double quotes, control characters escaped ("\x1b") so that
// none reaches a terminal raw, and cut after `max` bytes with a note of how
// much more there was, so a 10 MB value does not flood the screen.
std::string shown_value(std::string_view value, size_t max = 80);

// errno-based failure on a named path: "PATH: what: strerror".
std::unexpected<Error> fail_errno(std::string_view what, std::string_view path,
                                  int err);

}  // namespace kiln

// Propagates an error from an expression yielding a Result; the statement
// form keeps call sites to one line without exceptions.
#define KILN_TRY(expr)                                      \
  do {                                                      \
    if (auto kiln_try_result_ = (expr); !kiln_try_result_)  \
      return std::unexpected(std::move(kiln_try_result_).error()); \
  } while (0)

// Declares `decl` from a Result expression's value, or returns its error:
//   KILN_ASSIGN(auto fs, Ext4Writer::create(path, options));
#define KILN_CONCAT_INNER_(a, b) a##b
#define KILN_CONCAT_(a, b) KILN_CONCAT_INNER_(a, b)
#define KILN_ASSIGN(decl, expr) \
  KILN_ASSIGN_IMPL_(KILN_CONCAT_(kiln_assign_result_, __LINE__), decl, expr)
#define KILN_ASSIGN_IMPL_(tmp, decl, expr)                  \
  auto tmp = (expr);                                         \
  if (!tmp) return std::unexpected(std::move(tmp).error());  \
  decl = std::move(*tmp)
