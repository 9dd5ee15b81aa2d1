#include "base/reporter.h"

#include <unistd.h>

#include <fmt/format.h>

#include "base/size.h"

namespace kiln {

Reporter::Mode Reporter::detect(bool json) {
  if (json) return Mode::kJson;
  return ::isatty(STDERR_FILENO) ? Mode::kTerminal : Mode::kQuiet;
}

Reporter::Reporter(Mode mode) : mode_(mode) {}

Reporter& Reporter::quiet() {
  static Reporter reporter(Mode::kQuiet);
  return reporter;
}

double Reporter::seconds_since(Clock::time_point start) const {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void Reporter::clear_bar() {
  if (!bar_shown_) return;
  fmt::print(stderr, "\r\033[K");
  bar_shown_ = false;
}

void Reporter::step(std::string_view stage, std::string_view message) {
  std::lock_guard lock(mutex_);
  stage_ = stage;
  step_started_ = Clock::now();
  if (mode_ == Mode::kTerminal) {
    clear_bar();
    fmt::print(stderr, "\033[1m==> {:<10}\033[0m {}\n", stage, message);
  } else if (mode_ == Mode::kJson) {
    nlohmann::json line = {{"event", "step"}, {"stage", stage}, {"message", message},
                           {"elapsed", seconds_since(started_)}};
    fmt::print("{}\n", line.dump());
    std::fflush(stdout);
  }
}

void Reporter::done(std::string_view summary) {
  std::lock_guard lock(mutex_);
  double seconds = seconds_since(step_started_);
  if (mode_ == Mode::kTerminal) {
    clear_bar();
    fmt::print(stderr, "    done in {:.1f} s{}{}\n", seconds, summary.empty() ? "" : ": ",
               summary);
  } else if (mode_ == Mode::kJson) {
    nlohmann::json line = {{"event", "done"}, {"stage", stage_}, {"seconds", seconds},
                           {"summary", summary}};
    fmt::print("{}\n", line.dump());
    std::fflush(stdout);
  }
}

void Reporter::progress(uint64_t done, uint64_t total, std::string_view unit) {
  if (mode_ == Mode::kQuiet) return;
  std::lock_guard lock(mutex_);
  auto now = Clock::now();
  bool finished = total > 0 && done >= total;
  if (!finished && now - last_progress_ < std::chrono::milliseconds(mode_ == Mode::kJson ? 1000 : 100))
    return;
  last_progress_ = now;
  if (mode_ == Mode::kJson) {
    nlohmann::json line = {{"event", "progress"}, {"stage", stage_}, {"done", done},
                           {"total", total}, {"unit", unit}};
    fmt::print("{}\n", line.dump());
    std::fflush(stdout);
    return;
  }
  bool bytes = unit == "bytes";
  std::string amount = bytes ? fmt::format("{} / {}", format_size(done), format_size(total))
                             : fmt::format("{} / {} {}", done, total, unit);
  if (total == 0) {
    fmt::print(stderr, "\r\033[K    {}", bytes ? format_size(done) : fmt::format("{} {}", done, unit));
  } else {
    constexpr int kWidth = 30;
    double fraction = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
    int filled = static_cast<int>(fraction * kWidth);
    fmt::print(stderr, "\r\033[K    [{}{}] {:3.0f}%  {}", std::string(filled, '#'),
               std::string(kWidth - filled, '.'), fraction * 100, amount);
  }
  bar_shown_ = true;
}

void Reporter::note(std::string_view message) {
  std::lock_guard lock(mutex_);
  if (mode_ == Mode::kTerminal) {
    clear_bar();
    fmt::print(stderr, "    {}\n", message);
  } else if (mode_ == Mode::kJson) {
    nlohmann::json line = {{"event", "note"}, {"stage", stage_}, {"message", message}};
    fmt::print("{}\n", line.dump());
    std::fflush(stdout);
  }
}

void Reporter::warn(std::string_view message) {
  std::lock_guard lock(mutex_);
  clear_bar();
  fmt::print(stderr, "kiln: warning: {}\n", message);
  if (mode_ == Mode::kJson) {
    nlohmann::json line = {{"event", "warning"}, {"message", message}};
    fmt::print("{}\n", line.dump());
    std::fflush(stdout);
  }
}

void Reporter::event(std::string_view name, nlohmann::json fields) {
  if (mode_ != Mode::kJson) return;
  std::lock_guard lock(mutex_);
  fields["event"] = name;
  fmt::print("{}\n", fields.dump());
  std::fflush(stdout);
}

}  // namespace kiln
