// The exec agent's loop (see agent.h).
#include "guest/agent.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>

#include <nlohmann/json.hpp>

#include "guest/command_start.h"

namespace kiln::agent {
namespace {

// Past this much output waiting for the channel, commands' output is left
// in their pipes: a command that writes faster than the host reads then
// waits, instead of the agent's memory growing.
constexpr size_t kCongested = 4u << 20;
// How long after a command exits its output is still read, when a process
// it left in the background holds its stdout (`nohup daemon &`).
constexpr auto kDrainAfterExit = std::chrono::milliseconds(250);
// How often an unconnected channel is tried again: a virtio port reads 0
// and polls as hung up until the host opens its end.
constexpr auto kRetry = std::chrono::milliseconds(200);
// Reads taken from a command's streams after it is done: bounded, because
// a process left in the background may write without end.
constexpr int kFinalReads = 64;

void log(const std::string& message) { std::fprintf(stderr, "kiln-exec-agent: %s\n", message.c_str()); }

std::string error_json(const std::string& message) {
  return nlohmann::json{{"message", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// An integer field of a host's JSON payload, or nothing when there is none:
// a bad frame from the host is ignored, it does not end the agent.
std::optional<int64_t> integer_field(std::string_view payload, const char* key) {
  auto json = nlohmann::json::parse(payload, nullptr, false);
  if (!json.is_object() || !json.contains(key) || !json[key].is_number_integer()) return std::nullopt;
  return json[key].get<int64_t>();
}

Fd child_signals() {
  sigset_t child;
  sigemptyset(&child);
  sigaddset(&child, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &child, nullptr);
  return Fd(::signalfd(-1, &child, SFD_NONBLOCK | SFD_CLOEXEC));
}

ExecExit exit_of(int status, bool timed_out) {
  ExecExit exit;
  if (WIFEXITED(status)) exit.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) exit.signal = WTERMSIG(status);
  exit.timed_out = timed_out;
  return exit;
}

// What ends the input on a pty: the terminal's EOF character, twice when
// the input so far does not end a line, since a first ^D then only hands
// over the partial line.
std::string end_of_input(int pty, bool at_line_start) {
  termios mode{};
  char eof = ::tcgetattr(pty, &mode) == 0 ? static_cast<char>(mode.c_cc[VEOF]) : '\x04';
  bool canonical = (mode.c_lflag & ICANON) != 0;
  return std::string(canonical && !at_line_start ? 2 : 1, eof);
}

// 16 hex digits, fresh each time the agent starts.
std::string new_run_id() {
  uint64_t bits = 0;
  if (::getrandom(&bits, sizeof bits, 0) != sizeof bits) bits = static_cast<uint64_t>(::getpid()) ^ ::time(nullptr);
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(bits));
  return text;
}

}  // namespace

Agent::Agent(Fd channel)
    : channel_(std::move(channel)), signals_(child_signals()), run_id_(new_run_id()), buffer_(kMaxFramePayload, '\0') {}

int Agent::run() {
  if (!signals_) {
    log(std::string("signalfd: ") + std::strerror(errno));
    return 1;
  }
  say_hello();
  while (true) {
    std::vector<pollfd> fds;
    std::vector<Watch> watches;
    watch(fds, watches);
    if (::poll(fds.data(), fds.size(), poll_timeout(Clock::now())) < 0 && errno != EINTR) {
      log(std::string("poll: ") + std::strerror(errno));
      kill_all();
      return 1;
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents != 0 && !serve(watches[i], fds[i].revents)) {
        kill_all();
        return 1;
      }
    }
    if (!connected_ && Clock::now() >= retry_at_ && !read_channel()) {
      kill_all();
      return 1;
    }
    check_sessions(Clock::now());
    flush_channel();
  }
}

void Agent::watch(std::vector<pollfd>& fds, std::vector<Watch>& watches) {
  auto add = [&](int fd, short events, Source source, uint32_t session) {
    fds.push_back({fd, events, 0});
    watches.push_back({source, session});
  };
  add(signals_.get(), POLLIN, Source::kSignals, 0);
  if (connected_) add(channel_.get(), static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), Source::kChannel, 0);
  bool full = congested();
  for (const auto& [id, session] : sessions_) {
    if (session.input && !session.pending_input.empty()) add(session.input.get(), POLLOUT, Source::kInput, id);
    if (full) continue;
    if (session.output) add(session.output.get(), POLLIN, Source::kOutput, id);
    if (session.errors) add(session.errors.get(), POLLIN, Source::kErrors, id);
  }
}

int Agent::poll_timeout(Clock::time_point now) const {
  std::optional<Clock::time_point> next;
  auto consider = [&](Clock::time_point at) {
    if (!next || at < *next) next = at;
  };
  if (!connected_) consider(retry_at_);
  for (const auto& [id, session] : sessions_) {
    if (session.status) consider(session.drain_until);
    else if (session.timeout_at) consider(*session.timeout_at);
  }
  if (!next) return -1;
  auto wait = std::chrono::ceil<std::chrono::milliseconds>(*next - now).count();
  return static_cast<int>(std::max<decltype(wait)>(wait, 0));
}

// Acts on one ready descriptor; false when the channel's stream is broken.
bool Agent::serve(const Watch& watch, short revents) {
  if (watch.source == Source::kSignals) {
    reap();
    return true;
  }
  if (watch.source == Source::kChannel) {
    if (revents & POLLOUT) flush_channel();
    return (revents & (POLLIN | POLLHUP | POLLERR)) ? read_channel() : true;
  }
  // The session may have ended on an earlier descriptor of this round.
  auto it = sessions_.find(watch.session);
  if (it == sessions_.end()) return true;
  if (watch.source == Source::kInput) write_input(it->second);
  else read_output(it->first, it->second, watch.source == Source::kErrors);
  return true;
}

// ---- The channel ----

// A virtio port hands over one page per read(). The reads are taken until
// the port is empty and acknowledged together: every frame toward the host
// is a notification qemu handles, and one per page held host-to-guest
// copies under TCG to about 4 MB/s.
bool Agent::read_channel() {
  size_t got = 0;
  bool lost = false;
  while (got < buffer_.size()) {
    ssize_t n = ::read(channel_.get(), buffer_.data() + got, buffer_.size() - got);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      // 0: a virtio port whose host end is not open; EIO: a line hung up.
      lost = n == 0 || errno != EAGAIN;
      break;
    }
  }
  if (got == 0 && lost) {
    lose_channel();
    return true;
  }
  if (!connected_) {
    connected_ = true;
    say_hello();  // the host end may be a new one, that has not heard it
  }
  if (got == 0) return true;
  out_ += encode_ack(static_cast<uint32_t>(got));
  decoder_.feed(std::string_view(buffer_.data(), got));
  while (true) {
    auto frame = decoder_.next();
    if (!frame) {
      log("a malformed frame from the host, the stream cannot be followed further: " + frame.error());
      return false;
    }
    if (!*frame) break;
    handle(**frame);
  }
  if (lost) lose_channel();
  return true;
}

// The host end went away. What it had half sent and what it had not taken
// yet are dropped: the next host end starts a stream of its own, on a frame
// boundary. The commands keep running.
void Agent::lose_channel() {
  connected_ = false;
  retry_at_ = Clock::now() + kRetry;
  out_.clear();
  decoder_ = FrameDecoder();
}

void Agent::flush_channel() {
  while (connected_ && !out_.empty()) {
    ssize_t n = ::write(channel_.get(), out_.data(), out_.size());
    if (n > 0) {
      out_.erase(0, n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      if (n < 0 && errno != EAGAIN) lose_channel();
      return;
    }
  }
}

void Agent::send(uint32_t session, FrameType type, std::string_view payload) {
  out_ += encode_frame(session, type, payload);
}

void Agent::say_hello(bool reply) {
  nlohmann::json hello{{"version", kExecProtocolVersion}, {"run", run_id_}};
  if (reply) hello["reply"] = true;
  send(0, FrameType::kHello, hello.dump());
}

bool Agent::congested() const { return out_.size() > kCongested; }

// ---- Frames from the host ----

void Agent::handle(const Frame& frame) {
  if (frame.session == 0) {
    if (frame.type == FrameType::kHello) say_hello(/*reply=*/true);
    return;
  }
  if (frame.type == FrameType::kOpen) return open_session(frame.session, frame.payload);
  auto it = sessions_.find(frame.session);
  if (it == sessions_.end()) return;  // ended already, or never opened: nothing to do
  Session& session = it->second;
  switch (frame.type) {
    case FrameType::kStdin: return take_input(session, frame.payload);
    case FrameType::kResize: return resize(session, frame.payload);
    case FrameType::kSignal: return send_signal(session, frame.payload);
    case FrameType::kClose: return close_session(frame.session);
    default: return;  // the agent's own kinds of frame mean nothing coming from the host
  }
}

void Agent::open_session(uint32_t id, std::string_view payload) {
  if (sessions_.contains(id))
    return send(id, FrameType::kError, error_json("session " + std::to_string(id) + " is already open"));
  auto request = decode_exec_request(payload);
  if (!request) return send(id, FrameType::kError, error_json(request.error()));
  auto started = start_command(*request);
  if (!started) return send(id, FrameType::kError, error_json(started.error()));
  Session& session = sessions_[id];
  session.pid = started->pid;
  session.tty = request->tty;
  session.input = std::move(started->input);
  session.output = std::move(started->output);
  session.errors = std::move(started->errors);
  if (request->timeout_seconds > 0) session.timeout_at = Clock::now() + std::chrono::seconds(request->timeout_seconds);
}

// An empty payload ends the input: a pipe is closed once what came before
// is written; a pty, which stays open for the output, gets its EOF
// character instead.
void Agent::take_input(Session& session, std::string_view bytes) {
  if (!session.input || session.input_ends) return;
  if (bytes.empty()) {
    session.input_ends = true;
    if (session.tty) session.pending_input += end_of_input(session.input.get(), session.at_line_start);
  } else {
    session.pending_input += bytes;
    session.at_line_start = bytes.back() == '\n';
  }
  write_input(session);
}

void Agent::resize(Session& session, std::string_view payload) {
  std::optional<int64_t> rows = integer_field(payload, "rows"), cols = integer_field(payload, "cols");
  if (!session.tty || !session.output || !rows || !cols || *rows < 0 || *rows > UINT16_MAX || *cols < 0 ||
      *cols > UINT16_MAX)
    return;
  winsize size{};
  size.ws_row = static_cast<unsigned short>(*rows);
  size.ws_col = static_cast<unsigned short>(*cols);
  ::ioctl(session.output.get(), TIOCSWINSZ, &size);  // the kernel sends the command SIGWINCH
}

void Agent::send_signal(Session& session, std::string_view payload) {
  std::optional<int64_t> number = integer_field(payload, "signal");
  // Once reaped, the command's pid may be another process's.
  if (number && *number > 0 && *number < NSIG && !session.status)
    signal_command(session.pid, static_cast<int>(*number));
}

// The client is gone: nobody reads what the command would say. Its child
// is still reaped, by reap(), which waits for any.
void Agent::close_session(uint32_t id) {
  Session& session = sessions_.at(id);
  if (!session.status) signal_command(session.pid, SIGKILL);
  sessions_.erase(id);
}

// ---- Commands ----

void Agent::write_input(Session& session) {
  while (!session.pending_input.empty()) {
    ssize_t n = ::write(session.input.get(), session.pending_input.data(), session.pending_input.size());
    if (n > 0) {
      session.pending_input.erase(0, n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    // EPIPE: the command closed its input; the rest has no reader.
    session.pending_input.clear();
    session.input.reset();
    return;
  }
  if (session.input_ends) session.input.reset();
}

bool Agent::read_output(uint32_t id, Session& session, bool errors) {
  Fd& fd = errors ? session.errors : session.output;
  ssize_t n = ::read(fd.get(), buffer_.data(), buffer_.size());
  if (n > 0) {
    send(id, errors ? FrameType::kStderr : FrameType::kStdout, std::string_view(buffer_.data(), n));
    return true;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
  // End of file; EIO on a pty: every holder of its slave closed it. The
  // descriptor is kept until the session ends: closing a pty's master hangs
  // the terminal up, which would kill with SIGHUP a command that closed its
  // streams but has not exited yet.
  session.spent.push_back(std::move(fd));
  return false;
}

void Agent::reap() {
  signalfd_siginfo info;
  while (::read(signals_.get(), &info, sizeof info) == sizeof info) {
  }
  int status = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    for (auto& [id, session] : sessions_) {
      if (session.pid != pid) continue;
      session.status = status;
      session.drain_until = Clock::now() + kDrainAfterExit;
      session.pending_input.clear();
      session.input.reset();
    }
  }
}

void Agent::check_sessions(Clock::time_point now) {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    Session& session = it->second;
    if (!session.status && session.timeout_at && now >= *session.timeout_at) {
      signal_command(session.pid, SIGKILL);
      session.timed_out = true;
      session.timeout_at.reset();
    }
    bool drained = !session.output && !session.errors;
    if (session.status && (drained || now >= session.drain_until)) {
      finish(it->first, session);
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
}

// Sends what output is left, then how the command ended.
void Agent::finish(uint32_t id, Session& session) {
  for (bool errors : {false, true}) {
    const Fd& fd = errors ? session.errors : session.output;
    for (int i = 0; i < kFinalReads && fd && read_output(id, session, errors); ++i) {
    }
  }
  send(id, FrameType::kExit, encode_exec_exit(exit_of(*session.status, session.timed_out)));
}

// The agent is about to exit: the host can no longer hear of its commands.
void Agent::kill_all() {
  for (const auto& [id, session] : sessions_)
    if (!session.status) signal_command(session.pid, SIGKILL);
}

}  // namespace kiln::agent
