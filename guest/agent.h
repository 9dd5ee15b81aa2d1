// Agent: the exec agent's one loop. It reads frames from the channel,
// starts a command per session (guest/command_start.h), relays each
// command's input and output, and reports how it ended; one poll() serves
// the channel and every session, so that no command waits on another.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/image/guest_protocol.h"
#include "guest/fd.h"

namespace kiln::agent {

class Agent {
 public:
  // `channel` is non-blocking.
  explicit Agent(Fd channel);
  // Serves until the host sends a stream that cannot be read; then the
  // exit code (non-zero) for main to return.
  int run();

 private:
  using Clock = std::chrono::steady_clock;

  struct Session {
    pid_t pid = -1;
    bool tty = false;
    Fd input, output, errors;  // empty once done with
    std::vector<Fd> spent;  // output descriptors at their end, closed with the session
    std::string pending_input;  // not yet taken by the command
    bool input_ends = false;  // close the input once pending_input is written
    bool at_line_start = true;  // whether the input so far ends a line (for ^D on a pty)
    std::optional<Clock::time_point> timeout_at;
    bool timed_out = false;
    std::optional<int> status;  // the wait status, once reaped
    Clock::time_point drain_until;  // once reaped: how long its output is still read
  };

  // What one pollfd stands for.
  enum class Source { kSignals, kChannel, kInput, kOutput, kErrors };
  struct Watch {
    Source source;
    uint32_t session = 0;
  };

  void watch(std::vector<pollfd>& fds, std::vector<Watch>& watches);
  int poll_timeout(Clock::time_point now) const;
  bool serve(const Watch& watch, short revents);

  bool read_channel();
  void lose_channel();
  void flush_channel();
  void send(uint32_t session, FrameType type, std::string_view payload);
  // `reply`: to the host's kHello, which a relay that asked for it takes
  // as no restart (the agent may have greeted it on its own meanwhile).
  void say_hello(bool reply = false);
  bool congested() const;

  void handle(const Frame& frame);
  void open_session(uint32_t id, std::string_view request);
  void take_input(Session& session, std::string_view bytes);
  void resize(Session& session, std::string_view payload);
  void send_signal(Session& session, std::string_view payload);
  void close_session(uint32_t id);

  void write_input(Session& session);
  bool read_output(uint32_t id, Session& session, bool errors);  // whether it read any
  void reap();
  void check_sessions(Clock::time_point now);
  void finish(uint32_t id, Session& session);
  void kill_all();

  Fd channel_;
  Fd signals_;  // a signalfd for SIGCHLD
  FrameDecoder decoder_;
  std::string out_;  // frames not yet written to the channel
  bool connected_ = true;
  std::string run_id_;  // this run of the agent, in its kHello
  Clock::time_point retry_at_;  // while not connected: when to read again
  std::map<uint32_t, Session> sessions_;
  std::string buffer_;  // what one wakeup reads from the channel, reused
};

}  // namespace kiln::agent
