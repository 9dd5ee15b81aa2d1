// Reporter: the one channel for progress. On a terminal it shows named steps
// with elapsed times and a progress bar for long work; with --json it emits
// one JSON object per line on stdout; otherwise it stays quiet. Warnings
// always reach stderr.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kiln {

class Reporter {
 public:
  enum class Mode { kQuiet, kTerminal, kJson };

  // kJson when asked, kTerminal when stderr is a terminal, else kQuiet.
  static Mode detect(bool json);

  explicit Reporter(Mode mode);
  Mode mode() const { return mode_; }

  // Starts a named step (a pipeline stage as the user knows it).
  void step(std::string_view stage, std::string_view message);
  // Ends the current step; the summary follows the elapsed time.
  void done(std::string_view summary = {});
  // Progress inside the current step, throttled; `unit` "bytes" shows sizes.
  void progress(uint64_t done, uint64_t total, std::string_view unit = "bytes");
  void note(std::string_view message);
  void warn(std::string_view message);
  // Emits an arbitrary event object in JSON mode (adds "event": name).
  void event(std::string_view name, nlohmann::json fields);

  // A reporter that says nothing but warnings, for library callers and tests.
  static Reporter& quiet();

 private:
  using Clock = std::chrono::steady_clock;
  void clear_bar();
  double seconds_since(Clock::time_point start) const;

  Mode mode_;
  std::mutex mutex_;
  std::string stage_;
  Clock::time_point started_ = Clock::now();
  Clock::time_point step_started_ = Clock::now();
  Clock::time_point last_progress_{};
  bool bar_shown_ = false;
};

}  // namespace kiln
